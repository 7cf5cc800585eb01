"""A screen of the levers that might bring a distilled student within 3 points of its QCS teacher (issue 26): each
lever trained on the same data against the same teacher, scored on test overall and on SynthFER's bias-aligned
and bias-conflicting test images.

    .venv/bin/python benchmarks/student_levers.py --teacher runs/study/qcs-s4/best.pt [--profile study]
        [--seeds 0] [--levers kd hue ...]

Levers (``LEVERS``): ``kd`` (notebook 10's default student: α 0.9, T 4, the teacher's logits on un-augmented
images, cached), ``online`` (the teacher scores every augmented batch: its targets see the student's colours),
``hue`` (colour jitter over the whole hue circle, ``hue=0.5``, against the background-hue shortcut), ``online+hue``,
``hue0.25`` and ``online+hue0.25`` (half the circle), ``online+hue0.25 patient`` (the same with patience 6 and a
30-epoch limit) and ``labels+hue`` (α 0: no teacher, the same augmentation). Each run: the profile's recipe, the
default student (``DEFAULT_STUDENT``) at the teacher's image size, best.pt chosen on val; runs go to
``<profile run_dir>/levers/<lever>-s<seed>`` (spaces as underscores). A screen, not a result: few seeds, for
choosing what notebook 10 should train. Writes reports/bench/student_levers.json.
"""
import argparse
import json
from pathlib import Path

import pandas as pd

from machine import machine_line, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib.ablation import bias_accuracy
from qcslib.data.sources import load_split
from qcslib.models.student import DEFAULT_STUDENT
from qcslib.models.weights import load_checkpoint
from qcslib.train import fit, load_profile
from qcslib.train.distillation import load_teacher
from qcslib.train.loop import distill_config
from qcslib.train.runtime import select_device

LEVERS = {  # name → (α, teacher online, overrides)
    "kd": (0.9, False, {}),
    "online": (0.9, True, {}),
    "hue": (0.9, False, {"hue": 0.5}),
    "hue0.25": (0.9, False, {"hue": 0.25}),
    "online+hue": (0.9, True, {"hue": 0.5}),
    "online+hue0.25": (0.9, True, {"hue": 0.25}),
    "online+hue0.25 patient": (0.9, True, {"hue": 0.25, "patience": 6, "epochs": 30}),
    "labels+hue": (0.0, False, {"hue": 0.5}),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="a QCS checkpoint (the profile's best, chosen on val)")
    parser.add_argument("--profile", default="study")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--levers", nargs="+", choices=tuple(LEVERS), default=list(LEVERS))
    args = parser.parse_args()
    profile = load_profile(args.profile)
    teacher, _ = load_teacher(args.teacher)
    device = select_device(profile.device)
    test = load_split("synthfer", profile.data_root, profile.test_split)
    meta = Path(profile.data_root) / "meta.csv"
    size = teacher.config.image_size

    def scored(checkpoint) -> dict:
        model, _ = load_checkpoint(checkpoint)
        return bias_accuracy(model.to(device), test, meta, size, profile.transform, device=device, progress=False)

    rows = [{"lever": "teacher", "seed": None, **scored(args.teacher)}]
    print(rows[-1], flush=True)
    for lever in args.levers:
        alpha, online, overrides = LEVERS[lever]
        for seed in args.seeds:
            base = profile.replace(seed=seed, name=f"{lever.replace(' ', '_')}-s{seed}",
                                   runs_dir=str(Path(profile.run_dir) / "levers"), **overrides)
            config = distill_config(base, args.teacher, teacher.config, DEFAULT_STUDENT, alpha=alpha,
                                    teacher_online=online)
            run = fit(config, overwrite=True, progress=False)
            summary = run.summary
            rows.append({"lever": lever, "seed": seed, "converged": summary["converged"],
                         "epoch": summary["chosen_epoch"], "val_accuracy": summary["best"]["val_accuracy"],
                         "train_seconds": summary["train_seconds"], **scored(run.dir / "best.pt")})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    machine = machine_line()
    print(f"\n{machine}\nprofile {args.profile}, teacher {args.teacher}, student {DEFAULT_STUDENT} at {size} px, "
          f"seeds {args.seeds}\n")
    print(table.round(4).to_string(index=False))
    write_json("student_levers", {"machine": machine, "profile": args.profile, "teacher": args.teacher,
                                  "rows": json.loads(table.to_json(orient="records"))})


if __name__ == "__main__":
    main()
