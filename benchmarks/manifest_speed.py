"""Manifest hashing speed: images per second with 1 worker against 2, on SynthFER as the cpu profile generates it.

    .venv/bin/python benchmarks/manifest_speed.py [--root DIR] [--dir data] [--repeats 3] [--cold]

Without --root, generates SynthFER with the cpu profile's settings (its ``synthfer:``, i.e. the generator's
defaults: 5,000 images at 112², PNG) into a temporary directory inside --dir (default: the system's; deleted
afterwards). Then hashes every image of train, val and test as ``data-report --manifest`` does
(`qcslib.data.manifest.hash_splits`), with 1 worker (in this process) and 2 (a process pool), taking turns
``--repeats`` times, and prints the machine, the date and each rate. By default the files were just written or
read, so they are in the page cache: the cost of opening and hashing them. ``--cold`` evicts this dataset's files
from the page cache before every pass (``posix_fadvise(DONTNEED)``, these files only): the cost with disk reads.
"""
import argparse
import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path

from machine import cpu_name, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib.data.manifest import hash_splits
from qcslib.data.sources import available_splits, load_split
from qcslib.data.synthfer import generate
from qcslib.train import load_profile


def evict(splits) -> None:
    """Drop the splits' files from the page cache (clean pages only; other files are left alone)."""
    for path in (p for s in splits for p in s.paths):
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def rate(splits, workers: int, cold: bool) -> float:
    """Images hashed per second (wall clock) over every split, from a cold page cache if ``cold``."""
    if cold:
        evict(splits)
    start = time.perf_counter()
    n = sum(len(digests) for digests in hash_splits(splits, workers))
    return n / (time.perf_counter() - start)


def measure(root: Path, repeats: int, cold: bool) -> dict:
    splits = [load_split("synthfer", root, s) for s in available_splits("synthfer", root)]
    images = sum(len(s) for s in splits)
    megabytes = sum(p.stat().st_size for s in splits for p in s.paths) / 1e6
    rate(splits, 1, cold=False)  # a first pass puts every file in the page cache
    rates = {1: [], 2: []}
    for _ in range(repeats):
        for workers in rates:
            rates[workers].append(rate(splits, workers, cold))
    return {"images": images, "mb": megabytes, "rates": rates}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="an existing SynthFER root (default: generate the cpu profile's)")
    parser.add_argument("--dir", default=None, help="where to make the temporary directory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="evict the files from the page cache before each pass")
    args = parser.parse_args()
    if args.root:
        result, where = measure(Path(args.root), args.repeats, args.cold), Path(args.root).resolve()
    else:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            generate(Path(tmp) / "synthfer", load_profile("cpu").synthfer)
            result, where = measure(Path(tmp) / "synthfer", args.repeats, args.cold), Path(tmp).parent.resolve()
    print(f"{datetime.date.today()} · {cpu_name()} · {os.cpu_count()} cores · {result['images']} SynthFER images"
          f" ({result['mb']:.0f} MB, cpu profile) · in {where} · page cache {'cold' if args.cold else 'warm'}")
    for workers, rates in result["rates"].items():
        print(f"{workers} worker{'s' if workers > 1 else ''}: " + ", ".join(f"{r:.0f}" for r in rates)
              + f" images/s (median {statistics.median(rates):.0f})")
    write_json("manifest_speed" + ("_cold" if args.cold else ""),
               {"date": str(datetime.date.today()), "cpu": cpu_name(), "images": result["images"], "mb": result["mb"],
                "page_cache": "cold" if args.cold else "warm", "images_per_s": result["rates"]})


if __name__ == "__main__":
    main()
