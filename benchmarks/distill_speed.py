"""Training a student: images/s of the kd step with per-image PIL augmentation against augmentation on the device.

    .venv/bin/python benchmarks/distill_speed.py [--profile cpu] [--student resnet10t] [--repeats 2]

Distils an untrained tiny QCS teacher (its logits cached once, as by default) into ``--student`` for one epoch of the
profile's data and recipe, once per setting and repeat, the settings taking turns in this process: ``per image``
(``SeededImages``: PIL augmentation of every image in the loader) and ``on device`` (``augment_on_device``:
``CachedImages`` batches from the decoded cache, ``BatchAugment``). Reports the best training images/s of each
(``metrics.csv``'s ``samples_per_s``, which leaves out the teacher cache and the evaluation) and their ratio. Writes
reports/bench/distill_speed.json.
"""
import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from machine import machine_line, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import QCSNet, save_checkpoint
from qcslib.data import generate, load_split
from qcslib.train import distill, load_profile

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--student", default="resnet10t")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_profile(args.profile, [f"runs_dir={tmp}", "epochs=1"])
        root = generate(ROOT / config.data_root, config.synthfer)
        config = config.replace(data_root=str(root))
        torch.manual_seed(0)
        teacher = Path(tmp) / "teacher.pt"
        save_checkpoint(teacher, QCSNet(config.model).eval(),
                        classes=list(load_split(config.dataset, root, config.train_split).classes))
        rates = {"per image": [], "on device": []}
        for repeat in range(args.repeats):
            for name, on_device in (("per image", False), ("on device", True)):
                run = distill(config.replace(name=f"r{repeat}-{on_device}", augment_on_device=on_device), teacher,
                              args.student, progress=False)
                rates[name].append(float(pd.read_csv(run.dir / "metrics.csv")["samples_per_s"].iloc[0]))
                print(name, round(rates[name][-1], 1), "images/s", flush=True)
    best = {name: max(r) for name, r in rates.items()}
    machine = machine_line()
    print(f"\n{machine} · profile {args.profile} · {args.student} at {config.model.image_size} px, batch "
          f"{config.batch_size} · best of {args.repeats}\n")
    print("| augmentation | training images/s | × per image |\n|---|---|---|")
    for name, r in best.items():
        print(f"| {name} | {r:.1f} | {r / best['per image']:.2f} |")
    write_json("distill_speed", {"machine": machine, "profile": args.profile, "student": args.student,
                                 "images_per_s": rates})


if __name__ == "__main__":
    main()
