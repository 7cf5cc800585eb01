"""Training throughput of one SAM quadruplet step, the official way against the optimised ones, in one process.

    .venv/bin/python benchmarks/train_speed.py [--sizes tiny paper] [--batches 16,32,64 2,4] [--steps 3] [--compile]
    .venv/bin/python benchmarks/train_speed.py --recipe cpu [--threads 1 2] [--steps 20]

``--recipe PROFILE`` times that profile's own step instead (its model, batch, optimizer, SAM or not, channels_last),
fp32 against bf16 autocast, on each ``--threads``; states its achieved GFLOP/s as a fraction of this machine's
measured matmul peak at that many threads and in that dtype (``machine.peak``: the MFU), and lists the operators
where the fp32 step spends its time (torch.profiler, self CPU time).

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

from machine import machine_line, peak, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import QCSConfig, QCSNet
from qcslib.train import load_profile
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


def make_step(size, batch, device, channels_last, concat, bf16, compile_model=False, sam=True, config=None):
    torch.manual_seed(0)
    model = QCSNet(config or QCSConfig.sized(size, concat_branches=concat)).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = SAM(model.parameters(), torch.optim.Adam, lr=1e-5) if sam else torch.optim.Adam(model.parameters(), 1e-5)
    step_model = torch.compile(TrainForward(model)) if compile_model else TrainForward(model)
    s = model.config.image_size
    images, labels = [torch.randn(batch, 3, s, s) for _ in range(4)], torch.randint(0, 7, (batch,))
    dtype = torch.bfloat16 if bf16 else None
    return lambda: train_step(step_model, optimizer, None, [to_device(x, device, channels_last) for x in images],
                              (labels.to(device), labels.to(device)), quadruplet_objective, dtype, sam, World())


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


def recipe(profile: str, threads: list[int], steps: int, compile_model: bool = False) -> None:
    """``--recipe``: the profile's step, fp32 and bf16 (and fp32 under torch.compile with ``--compile``, its compile
    time printed apart), on each thread count: rate, MFU and where the time goes."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    config = load_profile(profile)
    device = torch.device("cpu")
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        step = {name: make_step(None, config.batch_size, device, config.channels_last, False, bf16, sam=config.sam,
                                config=config.model) for name, bf16 in (("fp32", False), ("bf16", True))}
        with FlopCounterMode(display=False) as counter:
            step["fp32"]()
        flops = counter.get_total_flops()
        for f in step.values():
            f()  # warm-up
        if compile_model:
            start = time.perf_counter()
            step["fp32 compiled"] = make_step(None, config.batch_size, device, config.channels_last, False, False,
                                              compile_model=True, sam=config.sam, config=config.model)
            step["fp32 compiled"]()
            print(f"torch.compile on {n} thread(s): {time.perf_counter() - start:.1f} s to the first step", flush=True)
        seconds = interleaved(step, device, steps)
        for name, sec in seconds.items():
            achieved = flops / sec / 1e9
            dtype = "bf16" if name == "bf16" else "fp32"
            rows.append(dict(threads=n, dtype=name, quadruplets_per_s=round(config.batch_size / sec, 1),
                             gflops=round(achieved, 1), peak_gflops=peak(dtype, n),
                             mfu=round(achieved / peak(dtype, n), 3)))
            print(rows[-1], flush=True)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step["fp32"]()
        top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        print(f"\nwhere an fp32 step's time goes on {n} thread(s) (3 steps):\n{top}")
    machine = machine_line()
    print(f"\n{machine} · profile {profile}: {config.model.image_size} px model (dim {config.model.dim}), batch "
          f"{config.batch_size}, {'SAM' if config.sam else 'no SAM'}, channels_last {config.channels_last}; "
          f"{flops / 1e9:.2f} GFLOP a step\n")
    print("| threads | dtype | quadruplets/s | achieved GFLOP/s | matmul peak GFLOP/s | MFU |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['dtype']} | {r['quadruplets_per_s']} | {r['gflops']} | {r['peak_gflops']} "
              f"| {100 * r['mfu']:.0f} % |")
    write_json("train_speed_recipe", {"machine": machine, "profile": profile, "gflop_per_step": flops / 1e9,
                                      "rows": rows})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", help="time this profile's step instead (see the module docstring)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="with --recipe")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--batches", nargs="+", default=["16,32,64", "2,4"], help="per size, comma-separated")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compile time included)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for MFU")
    args = parser.parse_args()
    if args.recipe:
        return recipe(args.recipe, args.threads, args.steps, args.compile)
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
