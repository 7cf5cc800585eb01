"""SynthFER generation speed: images per second, masks and PNG writing included.

    .venv/bin/python benchmarks/synthfer_speed.py [--images 2000] [--workers N] [--size 112] [--dir data]

Generates into a temporary directory inside --dir (default: the system's; deleted afterwards) and prints the
machine, the date, the wall-clock rate and the CPU time per image (all processes). Creating 2 files per image
is a real part of the cost and depends on the file system: measure where datasets will live.
"""
import argparse
import datetime
import os
import resource
import tempfile
import time
from pathlib import Path

from machine import cpu_name, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib.data.synthfer import SynthFERSettings, generate



def cpu_seconds() -> float:
    """User + system time of this process and of its finished children (the worker pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="about this many (a multiple of 50)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--dir", default=None, help="where to make the temporary directory")
    args = parser.parse_args()
    per = 50
    identities = max(2, round(args.images / per))
    test = max(1, identities // 5)  # as the defaults: 60 train, 20 val, 20 test identities
    settings = SynthFERSettings(size=args.size, train_identities=max(1, identities - 2 * test), val_identities=test,
                                test_identities=test, images_per_identity=per)
    count = (settings.train_identities + 2 * test) * per
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        cpu, wall = cpu_seconds(), time.perf_counter()
        generate(Path(tmp) / "synthfer", settings, workers=args.workers)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "synthfer").rglob("*") if p.is_file()) / 1e6
    print(f"{datetime.date.today()} · {cpu_name()} · {os.cpu_count()} cores · {args.workers} workers"
          f" · {count} images of {args.size}² with masks · in {Path(tmp).parent.resolve()}")
    print(f"{count / wall:.0f} images/s (wall {wall:.1f} s) · {1e3 * cpu / count:.2f} ms CPU per image"
          f" · {size_mb:.0f} MB written")
    write_json("synthfer_speed", {"date": str(datetime.date.today()), "cpu": cpu_name(), "workers": args.workers,
                                  "images": count, "size": args.size, "images_per_s": count / wall,
                                  "cpu_ms_per_image": 1e3 * cpu / count, "mb_written": size_mb})


if __name__ == "__main__":
    main()
