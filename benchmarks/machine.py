"""The machine a benchmark ran on, and its measured matmul peak: the denominator of every MFU here.

    .venv/bin/python benchmarks/machine.py [--size 2048] [--seconds 3]

measures the best GFLOP/s of an n × n matmul (2n³ FLOPs) in fp32 and bf16, on one thread and on all of them, and
writes it to reports/bench/machine.json, where ``peak`` reads it back (measuring it there and then if it is absent).
"""
import argparse
import datetime
import json
from pathlib import Path

import torch

from qcslib.train.runtime import cpu_name, matmul_gflops

OUT = Path(__file__).resolve().parents[1] / "reports" / "bench"


def machine_line() -> str:
    """Date, CPU, torch threads, torch version and GPU (or "no GPU"): the first line of a benchmark's table."""
    gpu = f" · {torch.cuda.get_device_name()}" if torch.cuda.is_available() else " · no GPU"
    return (f"{datetime.date.today()} · {cpu_name()} · {torch.get_num_threads()} threads · torch {torch.__version__}"
            + gpu)


def write_json(name: str, payload: dict) -> None:
    """Write ``payload`` to ``reports/bench/<name>.json`` (git-ignored), where every benchmark leaves its numbers."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(payload, indent=1))


def measure(size: int = 2048, seconds: float = 3.0) -> dict:
    """``{"fp32": {threads: GFLOP/s}, "bf16": {...}}`` for 1 thread and all of them, with the machine."""
    threads = sorted({1, torch.get_num_threads()})
    peaks = {name: {str(t): round(matmul_gflops(dtype, t, size, seconds), 1) for t in threads}
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    return {"machine": machine_line(), "size": size, "gflops": peaks}


def peak(dtype: str = "fp32", threads: int | None = None) -> float:
    """This machine's measured matmul peak in GFLOP/s (reports/bench/machine.json, measured first if absent)."""
    path = OUT / "machine.json"
    if not path.exists():
        write_json("machine", measure())
    return json.loads(path.read_text())["gflops"][dtype][str(threads or torch.get_num_threads())]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    result = measure(args.size, args.seconds)
    write_json("machine", result)
    print(f"{result['machine']} · {args.size}² matmul, best of {args.seconds:g} s\n")
    print("| dtype | " + " | ".join(f"{t} thread(s), GFLOP/s" for t in result["gflops"]["fp32"]) + " |")
    print("|---|" + "---|" * len(result["gflops"]["fp32"]))
    for name, row in result["gflops"].items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")


if __name__ == "__main__":
    main()
