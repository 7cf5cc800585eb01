"""Training throughput of one SAM quadruplet step, the official way against the optimised ones, in one process.

    .venv/bin/python benchmarks/train_speed.py [--sizes tiny paper] [--batches 16,32,64 2,4] [--steps 3] [--compile]

Each setting runs ``qcslib.train.loop.train_step`` (2 forward and 2 backward passes of 4 branches: 8 images per
quadruplet) on synthetic inputs: one warm-up step, then the median of ``--steps`` timed ones, the settings
taking turns (round robin). ``official`` is the way the authors'
code computes: fp32, eager, one backbone call per branch, contiguous tensors. The other rows switch on
channels_last, one concatenated batch for the branches (``concat_branches``; BatchNorm statistics then span the
branches), and bf16 autocast. All run in this one process, taking turns step by step, so the ratios hold on a
noisy machine. Achieved FLOP/s counts the step's FLOPs with ``torch.utils.flop_counter``; MFU divides by
``--peak-tflops`` when given (e.g. 989 for an H100 SXM's dense bf16 datasheet figure). Writes
reports/bench/train_speed.json.
"""
import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from machine import machine_line, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import QCSConfig, QCSNet
from qcslib.train.distributed import World
from qcslib.train.loop import train_step
from qcslib.train.runtime import to_device
from qcslib.train.tasks import TrainForward, quadruplet_objective
from qcslib.train.sam import SAM

SETTINGS = {  # name: (channels_last, concat_branches, bf16)
    "official": (False, False, False),
    "channels_last": (True, False, False),
    "concat": (False, True, False),
    "bf16": (False, False, True),
    "all": (True, True, True),
}


def make_step(size, batch, device, channels_last, concat, bf16, compile_model=False):
    torch.manual_seed(0)
    model = QCSNet(QCSConfig.sized(size, concat_branches=concat)).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = SAM(model.parameters(), torch.optim.Adam, lr=1e-5)
    step_model = torch.compile(TrainForward(model)) if compile_model else TrainForward(model)
    s = model.config.image_size
    images, labels = [torch.randn(batch, 3, s, s) for _ in range(4)], torch.randint(0, 7, (batch,))
    dtype = torch.bfloat16 if bf16 else None
    return lambda: train_step(step_model, optimizer, None, [to_device(x, device, channels_last) for x in images],
                              (labels.to(device), labels.to(device)), quadruplet_objective, dtype, True, World())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step, device) -> float:
    sync(device)
    t = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - t


def interleaved(steps: dict, device, repeats: int) -> dict:
    """Median seconds per step of each setting, timing the settings in turn ``repeats`` times (round robin)."""
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(timed(step, device))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--batches", nargs="+", default=["16,32,64", "2,4"], help="per size, comma-separated")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compile time included)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for MFU")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for size, batches in zip(args.sizes, args.batches):
            for batch in map(int, batches.split(",")):
                steps = {name: make_step(size, batch, device, *flags) for name, flags in SETTINGS.items()}
                with FlopCounterMode(display=False) as counter:
                    steps["official"]()
                flops = counter.get_total_flops()
                for step in steps.values():
                    step()  # warm-up
                if args.compile:
                    t = time.perf_counter()
                    steps["compile"] = make_step(size, batch, device, False, False, False, compile_model=True)
                    steps["compile"]()
                    compile_s = time.perf_counter() - t
                seconds = interleaved(steps, device, args.steps)
                for name, sec in seconds.items():
                    rows.append(dict(device=device.type, size=size, batch=batch, setting=name,
                                     quadruplets_per_s=round(batch / sec, 3), images_per_s=round(8 * batch / sec, 2),
                                     ratio=round(seconds["official"] / sec, 3), tflops=round(flops / sec / 1e12, 4),
                                     mfu=round(flops / sec / 1e12 / args.peak_tflops, 4) if args.peak_tflops else None,
                                     compile_seconds=round(compile_s, 1) if name == "compile" else None))
                    print(rows[-1], flush=True)
    machine = machine_line()
    print(f"\n{machine}\n\n| device | size | batch | setting | quadruplets/s | images/s | × official | achieved TFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['size']} | {r['batch']} | {r['setting']} | {r['quadruplets_per_s']:.2f} "
              f"| {r['images_per_s']:.1f} | {r['ratio']:.2f} | {r['tflops']:.4f} |")
    write_json("train_speed", {"machine": machine, "rows": rows})


if __name__ == "__main__":
    main()
