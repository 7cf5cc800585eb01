"""Model cost: parameters (inference and training), FLOPs per image, and CPU latency of the base branch.

    .venv/bin/python benchmarks/model_cost.py [--sizes paper tiny] [--batch 1] [--seconds 3]

Prints a markdown table with the machine and date; benchmarks/RESULTS.md keeps the latest run.
"""
import argparse
import datetime

import torch
from torch.utils.benchmark import Timer

from machine import cpu_name, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import QCSConfig, QCSNet, count_parameters, inference_flops



def measure(size: str, batch: int, seconds: float) -> dict:
    model = QCSNet(QCSConfig.sized(size)).eval()
    counts = count_parameters(model)
    images = torch.randn(batch, 3, model.config.image_size, model.config.image_size)
    with torch.inference_mode():
        model(images)  # warm-up
        timing = Timer("model(images)", globals={"model": model, "images": images}).blocked_autorange(
            min_run_time=seconds)
    return {"size": size, "image": model.config.image_size, **counts, "gflops": inference_flops(model) / 1e9,
            "median_ms": timing.median * 1e3, "iqr_ms": timing.iqr * 1e3}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["paper", "tiny"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed run per size")
    args = parser.parse_args()
    rows = [measure(size, args.batch, args.seconds) for size in args.sizes]
    print(f"{datetime.date.today()} · {cpu_name()} · {torch.get_num_threads()} threads · torch {torch.__version__}"
          f" · batch {args.batch} · fp32 eager, inference_mode\n")
    print("| size | image | params, inference | params, training | GFLOPs / image | CPU latency, median (IQR) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['image']}² | {r['inference'] / 1e6:.2f} M | {r['training'] / 1e6:.2f} M "
              f"| {r['gflops']:.2f} | {r['median_ms']:.1f} ms ({r['iqr_ms']:.1f}) |")
    write_json("model_cost", {"date": str(datetime.date.today()), "cpu": cpu_name(), "batch": args.batch, "rows": rows})


if __name__ == "__main__":
    main()
