"""``python -m qcslib COMMAND``: one command line for the project.

- ``synthfer --out DIR [--seed S] [--size N] ...``: generate SynthFER (cached: same settings, no work)
- ``data-report --dataset NAME --root DIR [--split train|val|test]``: open every image of a split
  and print one JSON object with the class counts and what was excluded or skipped, and why
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .data.sources import DATASETS, DataError, load_split, verify_images
from .data.report import data_report
from .data.synthfer import SynthFERSettings, generate


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(SynthFERSettings):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=f"default {f.default}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qcslib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synthfer", help="generate the SynthFER dataset")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    _settings_flags(synth)
    report = commands.add_parser("data-report", help="check a dataset split and print its JSON report")
    report.add_argument("--dataset", required=True, choices=DATASETS)
    report.add_argument("--root", required=True)
    report.add_argument("--split", default="train", choices=("train", "val", "test"))
    args = parser.parse_args(argv)
    try:
        if args.command == "synthfer":
            values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthFERSettings)}
            print(generate(args.out, SynthFERSettings(**values), workers=args.workers))
        else:
            split = verify_images(load_split(args.dataset, args.root, args.split))
            print(json.dumps(data_report(split), indent=1))
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"python -m qcslib {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
