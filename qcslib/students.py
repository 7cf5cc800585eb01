"""Notebook 10's study: a QCS teacher distilled into a light student, with and without KD, and what each costs.

The teacher is the QCS run of notebook 02 (one per seed) with the best *val* accuracy (``pick_teacher``), or a
checkpoint given. Every student variant (``VARIANTS``) is the same timm network trained with the same recipe
(the profile's, with ``distill_overrides``) over the same seeds; only the loss differs (``train.losses.
distillation_loss``): labels only (α = 0), Hinton KD (α, T), and KD plus the feature term (β). A seed gives
every variant the same initialisation and data order, so the variants are compared pairwise over seeds
(``comparisons``, ``analysis.stats``). Each run is a ``kd`` config (``train.loop.distill_config``) trained by
``fit``; runs land in ``<run_dir>/students/<student>-<variant>-s<seed>`` and a finished one of the same config
(teacher and loss weights included) is reused (``ablation.finished``).

``bias_check`` scores the teacher and every student on SynthFER's bias-aligned and bias-conflicting test images
(``ablation.bias_accuracy``) and ``bias_comparisons`` pairs their gaps over seeds.

``int8_students`` quantises each KD student's best.pt (``export.export_int8``); ``cost_table`` gives parameters,
GFLOPs, batch-1 CPU latency (``latency``) and test accuracy of the paper-size QCS (untrained: latency only), the
teacher, each student in fp32 and the int8 student.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from .ablation import (bias_accuracy, finished, format_mean_std, read_run, run_all, run_table, stale, summarize,
                       train_variants)
from .analysis.stats import compare, verdict, with_holm
from .confidence import Calibration, calibration, ours
from .data.sources import load_split
from .export import export, export_int8
from .latency import onnx_latency, torch_latency
from .models.qcs import QCSConfig, QCSNet, count_parameters, inference_flops
from .models.student import StudentConfig, StudentNet
from .models.weights import load_checkpoint
from .train.config import ConfigError, TrainConfig, apply_overrides, parse_overrides
from .train.distillation import load_teacher
from .train.loop import distill_config, fit, prepare_data
from .train.runtime import select_device

VARIANTS = {  # name → (what it is, its loss weights given the notebook's α and β)
    "labels": ("labels only: cross-entropy, no teacher (α = 0)", lambda alpha, beta: (0.0, 0.0)),
    "kd": ("Hinton KD on the teacher's logits (α, T)", lambda alpha, beta: (alpha, 0.0)),
    "kd_feature": ("KD plus the feature term (α, T, β)", lambda alpha, beta: (alpha, beta)),
}
COMPARISONS = [  # (variant, reference, the question the paired difference answers)
    ("kd", "labels", "does KD help the student (the same recipe, labels only)?"),
    ("kd_feature", "kd", "does the feature term add to KD?"),
    ("kd", "teacher", "how far is the distilled student from its teacher?"),
]


def parse_distill_overrides(overrides: list[str]) -> dict:
    """``key=value`` overrides of the student runs' recipe, parsed; one of the model, the data, the objective or
    the distillation options is a one-line ConfigError (the student's network is ``student``, its data the
    teacher's, its loss the parameters' temperature, alpha and beta)."""
    try:
        changes = parse_overrides(overrides)
    except ConfigError as e:
        raise ConfigError(f"distill_overrides: {e}") from None
    mine = ("model", "dataset", "data_root", "synthfer", "objective", "distill")
    if refused := [k for k in changes if k.partition(".")[0] in mine]:
        raise ConfigError(f"distill_overrides: {refused[0]} is not the students' to change (their network is the "
                          f"`student` parameter, their data the teacher's, their loss temperature, alpha and beta)")
    return changes


def teacher_candidates(config: TrainConfig, seeds: list[int], force: bool = False, jobs: int = 1,
                       reuse_stale: bool = False) -> pd.DataFrame:
    """Notebook 02's QCS run of each seed (trained here unless finished) → ``train_variants``' rows."""
    return train_variants(config, {"qcs": seeds}, force, jobs, progress_bars=False, reuse_stale=reuse_stale)


def pick_teacher(candidates: pd.DataFrame, checkpoint: str = "") -> dict:
    """``checkpoint``, or (empty) the best.pt of the candidate with the highest val accuracy (the first on a
    tie): ``{checkpoint, chosen_by, seed, val_accuracy, test_accuracy, candidates}``. Test plays no part."""
    if checkpoint:
        return {"checkpoint": Path(checkpoint), "chosen_by": "given", "seed": None, "val_accuracy": np.nan,
                "test_accuracy": np.nan, "candidates": 0}
    best = candidates.loc[candidates["best_val_accuracy"].idxmax()]
    return {"checkpoint": Path(best["run_dir"]) / "best.pt", "chosen_by": "val", "seed": int(best["seed"]),
            "val_accuracy": float(best["best_val_accuracy"]), "test_accuracy": float(best["best_test_accuracy"]),
            "candidates": len(candidates)}


def student_config(config: TrainConfig, teacher: str | Path, teacher_model: QCSConfig, student: str, variant: str,
                   seed: int, overrides: list[str], temperature: float, alpha: float, beta: float) -> TrainConfig:
    """The ``kd`` config of one student run: ``config`` with ``overrides`` and ``seed``, named
    ``<student>-<variant>-s<seed>`` under ``<run_dir>/students``, with the variant's α and β (``VARIANTS``)."""
    changes = {**parse_distill_overrides(overrides), "seed": seed}
    base = TrainConfig.from_dict(apply_overrides(config.to_dict(), changes), where="distill_overrides")
    base = base.replace(runs_dir=str(Path(config.run_dir) / "students"), name=f"{student}-{variant}-s{seed}")
    return distill_config(base, teacher, teacher_model, student, temperature, *VARIANTS[variant][1](alpha, beta))


def distill_variants(config: TrainConfig, teacher: str | Path, student: str, seeds: list[int],
                     overrides: list[str], temperature: float, alpha: float, beta: float, force: bool = False,
                     jobs: int = 1, reuse_stale: bool = False) -> pd.DataFrame:
    """Distil (or reuse) every variant × seed, ``jobs`` at a time (``ablation.run_all``) → one row per run:
    ``read_run``'s columns plus variant, seed, reused, other_code, run_dir and the teacher's test accuracy."""
    teacher_model = load_teacher(teacher)[0].config
    planned = [(v, s, student_config(config, teacher, teacher_model, student, v, s, overrides, temperature, alpha,
                                     beta)) for v in VARIANTS for s in seeds]
    todo = [c for _, _, c in planned if force or not finished(c, reuse_stale)]
    for c in todo:
        prepare_data(c)
    run_all([partial(_fit, c, len(todo) == 1 or jobs == 1) for c in todo], jobs)
    rows = []
    for variant, seed, c in planned:
        summary = json.loads((c.run_dir / "summary.json").read_text())
        rows.append({"variant": variant, "seed": seed, **read_run(summary), "reused": c not in todo,
                     "other_code": stale(c, todo, reuse_stale), "run_dir": str(c.run_dir),
                     "teacher_test_accuracy": summary["teacher_test_accuracy"]})
    return pd.DataFrame(rows)


def _fit(config: TrainConfig, progress: bool) -> None:
    fit(config, overwrite=True, progress=progress)


def run_view(runs: pd.DataFrame) -> pd.DataFrame:
    """``ablation.run_table`` of the student runs, its "backbone images" column named for what a student sees."""
    return run_table(runs).rename(columns={"backbone images (M)": "images seen (M)"})


def variant_table(runs: pd.DataFrame, teacher: dict) -> pd.DataFrame:
    """Per variant: what it is, "mean ± std" (%) over seeds of the chosen checkpoint's test and val accuracy, the
    number of seeds and how many runs converged; and the teacher's row (one checkpoint)."""
    table = format_mean_std(summarize(runs))
    rows = pd.DataFrame({"loss": [VARIANTS[v][0] for v in table.index],
                         "test acc %": table["best_test_accuracy"], "val acc %": table["best_val_accuracy"],
                         "seeds": runs.groupby("variant", sort=False).size(),
                         "converged": [f"{int(c.sum())}/{len(c)}" for _, c in
                                       runs.groupby("variant", sort=False)["converged"]]}, index=table.index)
    own = runs["teacher_test_accuracy"].iloc[0]
    rows.loc["teacher"] = [f"the QCS teacher ({_teacher_words(teacher)})", f"{100 * own:.2f}",
                           "" if np.isnan(teacher["val_accuracy"]) else f"{100 * teacher['val_accuracy']:.2f}", 1,
                           ""]
    rows.index.name = "variant"
    return rows


def _teacher_words(teacher: dict) -> str:
    if teacher["chosen_by"] == "given":
        return f"given: {teacher['checkpoint']}"
    return f"seed {teacher['seed']}, the best on val of {teacher['candidates']} runs"


def comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """``COMPARISONS``, each a paired difference of test accuracy over seeds with its 95 % interval, the
    Holm-adjusted p over the three (one family: ``with_holm``) and the verdict. The teacher is one checkpoint, so
    ``kd − teacher``'s interval is over the student's seeds alone."""
    teacher = runs[runs["variant"] == "kd"].assign(variant="teacher", best_test_accuracy=runs["teacher_test_accuracy"])
    both = pd.concat([runs, teacher], ignore_index=True)
    compared = with_holm([compare(both, variant, reference) for variant, reference, _ in COMPARISONS])
    return pd.DataFrame([{"comparison": f"{c['variant']} − {c['reference']}", "question": question, **c,
                          "verdict": verdict(c)} for (_, _, question), c in zip(COMPARISONS, compared)])


# (variant, reference, question) on the bias gap, aligned − conflicting test accuracy (SynthFER)
GAP_COMPARISONS = [
    ("labels", "teacher", "does the labels-only student lean more on the background hue than its teacher?"),
    ("kd", "teacher", "does the KD student lean more on the background hue than its teacher?"),
    ("kd", "labels", "does KD change how much the student leans on the background hue?"),
]


def bias_check(config: TrainConfig, teacher: dict, runs: pd.DataFrame) -> pd.DataFrame | None:
    """``ablation.bias_accuracy`` of the teacher's checkpoint and of every student run's best.pt on the config's
    test split, where there is a spurious attribute to check (SynthFER with ``bias_strength > 0``: in train and
    val the background hue goes with the class, in test it does not) → one row per model: variant ("teacher" or
    the student's), seed (the teacher's run's; NaN for a given checkpoint), accuracy, aligned, conflicting,
    n_aligned, n_conflicting. None elsewhere."""
    if config.dataset != "synthfer" or config.synthfer.bias_strength == 0:
        return None
    test = load_split("synthfer", config.data_root, config.test_split)
    device, meta = select_device(config.device), Path(config.data_root) / "meta.csv"
    models = [("teacher", teacher["seed"], Path(teacher["checkpoint"]))]
    models += [(r.variant, r.seed, Path(r.run_dir) / "best.pt") for r in runs.itertuples()]
    rows = []
    for variant, seed, checkpoint in models:
        model, _ = load_checkpoint(checkpoint)
        rows.append({"variant": variant, "seed": seed, **bias_accuracy(
            model.to(device), test, meta, model.config.image_size, config.transform, device=device, progress=False)})
    return pd.DataFrame(rows)


def bias_comparisons(bias: pd.DataFrame | None) -> pd.DataFrame | None:
    """``GAP_COMPARISONS`` on ``bias_check``'s rows: per seed, the difference of two models' gaps (aligned −
    conflicting accuracy), paired over the students' seeds (the teacher is one checkpoint, held fixed), with
    Holm's correction over the three (one family). None gives None."""
    if bias is None:
        return None
    gaps = bias.assign(gap=bias["aligned"] - bias["conflicting"])
    seeds = gaps.loc[gaps["variant"] != "teacher", "seed"].unique()
    fixed = gaps[gaps["variant"] == "teacher"].iloc[0]
    teacher = pd.DataFrame({"variant": "teacher", "seed": seeds, "gap": fixed["gap"]})
    both = pd.concat([gaps[gaps["variant"] != "teacher"], teacher], ignore_index=True)
    compared = with_holm([compare(both, v, r, "gap") for v, r, _ in GAP_COMPARISONS])
    return pd.DataFrame([{"comparison": f"{c['variant']} − {c['reference']}", "question": q, **c,
                          "verdict": verdict(c, directions=("has a larger gap than", "has a smaller gap than"))}
                         for (_, _, q), c in zip(GAP_COMPARISONS, compared)])


def calibrations(teacher: dict, runs: pd.DataFrame, device: str = "auto"
                 ) -> tuple[pd.DataFrame, dict[str, Calibration]]:
    """Temperature scaling (``confidence.calibration``) of the teacher and of every student's best.pt, each fitted
    on its val split and stored in it (the int8 exports made after it apply it) → (one row per model: variant,
    seed, temperature and the ECE before and after on val and test; ``{"teacher": ..., "kd student": ...}``,
    the teacher's and the first seed's KD student's calibrations, for reliability diagrams). A teacher given as an
    official checkpoint is left out: its file is the authors'."""
    models = [("teacher", teacher["seed"], Path(teacher["checkpoint"]))] if ours(teacher["checkpoint"]) else []
    models += [(r.variant, r.seed, Path(r.run_dir) / "best.pt") for r in runs.itertuples()]
    rows, kept = [], {}
    for variant, seed, path in models:
        found = calibration(path, device=device)
        rows.append({"variant": variant, "seed": seed, **{k: v for k, v in found.summary.items()
                                                         if k not in ("checkpoint", "dataset", "fit_split")}})
        name = "teacher" if variant == "teacher" else "kd student" if variant == "kd" else None
        if name and name not in kept:
            kept[name] = found
    return pd.DataFrame(rows), kept


def calibration_view(table: pd.DataFrame) -> pd.DataFrame:
    """``calibrations``' table per variant: the temperature and the ECE (%) before and after on val and test, as
    "mean ± std" over seeds (the teacher: one checkpoint)."""
    columns = {"temperature": "temperature", "ece_before": "val ECE % before", "ece_after": "val ECE % after",
               "test_ece_before": "test ECE % before", "test_ece_after": "test ECE % after"}
    scaled_table = table.assign(**{c: 100 * table[c] for c in columns if c.endswith(("before", "after"))})

    def spread(values: pd.Series) -> str:
        return f"{values.mean():.2f}" + (f" ± {values.std(ddof=1):.2f}" if len(values) > 1 else "")

    view = scaled_table.groupby("variant", sort=False)[list(columns)].agg(spread).rename(columns=columns)
    return view.assign(seeds=scaled_table.groupby("variant", sort=False).size())


def int8_students(runs: pd.DataFrame, mode: str, variant: str = "kd") -> pd.DataFrame:
    """Each ``variant`` run's best.pt quantised (``export_int8``, ``mode``) beside it as best.int8.onnx → one row
    per seed: path, top-1 agreement with fp32, fp32 and int8 test accuracy (%) and their difference (points)."""
    rows = []
    for run in runs[runs["variant"] == variant].itertuples():
        result = export_int8(Path(run.run_dir) / "best.pt", mode=mode)
        rows.append({"seed": run.seed, **{k: result[k] for k in ("path", "mode", "top1_agreement", "fp32_accuracy",
                                                                   "int8_accuracy", "accuracy_delta")}})
    return pd.DataFrame(rows)


def int8_view(int8: pd.DataFrame) -> pd.DataFrame:
    """``int8_students`` for reading: per seed, the mode, the agreement and the accuracies (%)."""
    return pd.DataFrame({"seed": int8["seed"], "mode": int8["mode"],
                         "top-1 agreement %": (100 * int8["top1_agreement"]).round(1),
                         "fp32 test acc %": int8["fp32_accuracy"].round(2),
                         "int8 test acc %": int8["int8_accuracy"].round(2),
                         "int8 − fp32 (points)": int8["accuracy_delta"].round(2)}).set_index("seed")


def cost_table(teacher: str | Path, runs: pd.DataFrame, int8: pd.DataFrame, runs_timed: int = 100) -> pd.DataFrame:
    """One row per model: input side, runtime, parameters (M), GFLOPs, batch-1 CPU latency p50/p95 (ms, one
    thread, ``runs_timed`` runs after 10 warm-up runs), and the test accuracy's mean and std over seeds with their
    number (NaN and 0 for the untrained ones).

    Rows: the paper-size QCS (untrained: latency only) at 224 px; the teacher; the student of each variant in
    PyTorch (one network, timed once: the variants differ only in their weights); the KD student as fp32 ONNX
    and as int8 ONNX in ONNX Runtime; and the student's network at the paper's 224 px (untrained: latency only).
    """
    teacher_net, _ = load_checkpoint(teacher)
    paper = QCSNet(QCSConfig.sized("paper", num_classes=teacher_net.config.num_classes)).eval()
    kd = runs[runs["variant"] == "kd"]
    first = Path(kd["run_dir"].iloc[0]) / "best.pt"
    student, _ = load_checkpoint(first)
    at_224 = StudentNet(StudentConfig(student.config.timm_name, student.config.num_classes, 224))
    size, name = student.config.image_size, student.config.timm_name
    timed = partial(torch_latency, runs=runs_timed)
    onnx_timed = partial(onnx_latency, image_size=size, runs=runs_timed)
    fp32_onnx = export(first, "onnx", first.with_suffix(".onnx"))["path"]

    def row(model_name, model, side, runtime, latency, accuracy=()):
        accuracy = np.asarray(accuracy, dtype=float)
        return {"model": model_name, "input px": side, "runtime": runtime,
                "params (M)": count_parameters(model)["inference"] / 1e6, "GFLOPs": inference_flops(model, side) / 1e9,
                "p50 ms": latency["p50_ms"], "p95 ms": latency["p95_ms"],
                "accuracy": accuracy.mean() if len(accuracy) else np.nan,
                "accuracy_std": accuracy.std(ddof=1) if len(accuracy) > 1 else np.nan, "seeds": len(accuracy)}

    student_latency = timed(student)
    rows = [row("paper-size QCS (untrained)", paper, 224, "PyTorch", timed(paper)),
            row(f"teacher: QCS, width {teacher_net.config.dim}", teacher_net, teacher_net.config.image_size, "PyTorch",
                timed(teacher_net), [runs["teacher_test_accuracy"].iloc[0]])]
    rows += [row(f"{name} · {variant}", student, size, "PyTorch", student_latency,
                 runs.loc[runs["variant"] == variant, "best_test_accuracy"]) for variant in VARIANTS]
    rows += [row(f"{name} · kd · fp32", student, size, "ONNX Runtime", onnx_timed(fp32_onnx), kd["best_test_accuracy"]),
             row(f"{name} · kd · int8 {int8['mode'].iloc[0]}", student, size, "ONNX Runtime",
                 onnx_timed(int8["path"].iloc[0]), int8["int8_accuracy"] / 100),
             row(f"{name} at 224 px (untrained)", at_224, 224, "PyTorch", timed(at_224))]
    return pd.DataFrame(rows).set_index("model")


def cost_view(costs: pd.DataFrame) -> pd.DataFrame:
    """``cost_table`` for reading: rounded, the accuracy as "mean ± std" (%) with its seeds, "—" where untrained."""
    def accuracy(r) -> str:
        if r.seeds == 0:
            return "— (not trained here)"
        spread = f" ± {100 * r.accuracy_std:.2f}" if r.seeds > 1 else ""
        return f"{100 * r.accuracy:.2f}{spread} ({r.seeds} {'seed' if r.seeds == 1 else 'seeds'})"

    view = costs.drop(columns=["accuracy", "accuracy_std", "seeds"]).round(
        {"params (M)": 2, "GFLOPs": 3, "p50 ms": 2, "p95 ms": 2})
    return view.assign(**{"test acc %": [accuracy(r) for r in costs.itertuples()]})
