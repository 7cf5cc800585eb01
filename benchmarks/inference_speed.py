"""Inference speed of the base branch: images/s and p50 / p95 latency per batch, at batch 1 and 64.

    .venv/bin/python benchmarks/inference_speed.py [--sizes paper tiny] [--batches 1 64] [--repeats 20] [--seconds 20]

``torch.inference_mode``, eval mode, base branch only (what ``qcslib.train.predict`` runs), fp32 contiguous against
channels_last, and bf16 autocast on CUDA. Each (size, batch, setting) runs ``--repeats`` times after a warm-up, or
fewer when ``--seconds`` runs out. Writes reports/bench/inference_speed.json.
"""
import argparse
import time

import numpy as np
import torch

from machine import machine_line, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import QCSConfig, QCSNet


def latencies(model, images, device, dtype, repeats, budget) -> list[float]:
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        model(images)
        start = time.perf_counter()
        while len(out) < repeats and (time.perf_counter() - start < budget or len(out) < 3):
            t = time.perf_counter()
            model(images)
            if device.type == "cuda":
                torch.cuda.synchronize()
            out.append(time.perf_counter() - t)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["paper", "tiny"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget per setting")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        settings = [("fp32", False, None), ("fp32 channels_last", True, None)]
        if device.type == "cuda":
            settings.append(("bf16 channels_last", True, torch.bfloat16))
        for size in args.sizes:
            for name, channels_last, dtype in settings:
                model = QCSNet(QCSConfig.sized(size)).base.eval().to(device)
                if channels_last:
                    model.to(memory_format=torch.channels_last)
                for batch in args.batches:
                    s = QCSConfig.sized(size).image_size
                    images = torch.randn(batch, 3, s, s, device=device)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    t = np.array(latencies(model, images, device, dtype, args.repeats, args.seconds))
                    rows.append(dict(device=device.type, size=size, setting=name, batch=batch, runs=len(t),
                                     images_per_s=round(batch / np.median(t), 2),
                                     p50_ms=round(1e3 * np.percentile(t, 50), 2),
                                     p95_ms=round(1e3 * np.percentile(t, 95), 2)))
                    print(rows[-1], flush=True)
    machine = machine_line()
    print(f"\n{machine}\n\n| device | size | setting | batch | images/s | p50 ms | p95 ms | runs |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['size']} | {r['setting']} | {r['batch']} | {r['images_per_s']:.1f} "
              f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['runs']} |")
    write_json("inference_speed", {"machine": machine, "rows": rows})


if __name__ == "__main__":
    main()
