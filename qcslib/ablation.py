"""Ablations: train every variant over several seeds (reusing finished runs), then summarise honestly.

Each variant is a set of model overrides on the profile's config; run ``<variant>-s<seed>`` lands in
``<runs_dir>/<profile name>/``. ``summarize`` gives mean ± std over seeds of the best and the last epoch,
``paired_vs_baseline`` the per-seed differences to the baseline (same seed, same data order) with a
paired t-test, and ``bias_accuracy`` the accuracy on SynthFER's bias-aligned and bias-conflicting test
images, where the truth about the redundant feature is known.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from .data.sources import Split
from .train.config import TrainConfig
from .train.engine import fit, predict

VARIANTS = {
    "baseline": {"variant": "baseline"},
    "dcs": {"variant": "dcs"},
    "qcs": {"variant": "qcs"},                          # csa sd: the paper's method
    "qcs_s": {"variant": "qcs", "csa": "s"},            # similarity only
    "qcs_sdpa": {"variant": "qcs", "csa": "sdpa"},      # plain scaled dot-product cross attention
    "qcs_no_residual": {"variant": "qcs", "residual": False},
    "qcs_per_sample": {"variant": "qcs", "per_sample_norm": True},
}
METRICS = ("test_accuracy", "test_mean_class_accuracy", "test_macro_f1")


def variant_config(config: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """The profile's config for one variant and seed, named ``<variant>-s<seed>`` under runs/<profile>."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    model = {k: v for k, v in config.model.items() if k not in ("variant", "csa")}
    return config.replace(name=f"{variant}-s{seed}", runs_dir=str(Path(config.runs_dir) / config.name), seed=seed,
                          model={**model, **VARIANTS[variant]})


def finished(config: TrainConfig) -> bool:
    """A run of exactly this config that trained all its epochs."""
    run_dir = config.run_dir
    try:
        same = yaml.safe_load((run_dir / "config.yaml").read_text()) == config.to_dict()
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return same and summary.get("epochs") == config.epochs


def train_variants(config: TrainConfig, variants=tuple(VARIANTS), seeds=(0, 1), force: bool = False,
                   progress: bool = True) -> pd.DataFrame:
    """Train (or reuse) every variant × seed → one row per run: variant, seed, best_* and last_* metrics,
    best_epoch, train_seconds, reused, run_dir."""
    rows = []
    for variant in variants:
        for seed in seeds:
            c = variant_config(config, variant, seed)
            reused = finished(c) and not force
            if not reused:
                fit(c, overwrite=True, progress=progress)
            summary = json.loads((c.run_dir / "summary.json").read_text())
            row = {"variant": variant, "seed": seed, "best_epoch": summary["best"]["epoch"]}
            for when in ("best", "last"):
                row.update({f"{when}_{m}": summary[when][m] for m in METRICS})
            rows.append({**row, "train_seconds": summary["train_seconds"], "reused": reused,
                         "run_dir": str(c.run_dir)})
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Per variant (in run order): mean and sample std (ddof 1) over seeds of each best_/last_ metric, and n."""
    columns = [f"{w}_{m}" for m in metrics for w in ("best", "last")]
    grouped = runs.groupby("variant", sort=False)[columns]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    table["n"] = grouped.size()
    return table[[f"{c}_{s}" for c in columns for s in ("mean", "std")] + ["n"]]


def format_mean_std(table: pd.DataFrame, scale: float = 100.0, digits: int = 2) -> pd.DataFrame:
    """``summarize``'s table as "mean ± std" strings (in % by default)."""
    names = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    return pd.DataFrame({n: [f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}" if np.isfinite(s)
                             else f"{m * scale:.{digits}f}" for m, s in zip(table[f"{n}_mean"], table[f"{n}_std"])]
                         for n in names}, index=table.index)


def paired_vs_baseline(runs: pd.DataFrame, metric: str = "last_test_accuracy", baseline: str = "baseline"
                       ) -> pd.DataFrame:
    """Per variant: the mean and std of (variant − baseline) over the seeds both have, the number of seeds where
    the variant is ahead, and the two-sided paired t-test p-value (NaN with fewer than 2 seeds)."""
    wide = runs.pivot(index="seed", columns="variant", values=metric)
    if baseline not in wide:
        raise ValueError(f"no {baseline!r} runs to compare with; variants: {', '.join(wide.columns)}")
    rows = {}
    for variant in [v for v in runs["variant"].unique() if v != baseline]:
        pair = wide[[variant, baseline]].dropna()
        diff = pair[variant] - pair[baseline]
        p = stats.ttest_rel(pair[variant], pair[baseline]).pvalue if len(pair) >= 2 and diff.std() > 0 else np.nan
        rows[variant] = {"mean_diff": diff.mean(), "std_diff": diff.std(ddof=1), "ahead": int((diff > 0).sum()),
                         "seeds": len(pair), "p_value": p}
    return pd.DataFrame.from_dict(rows, orient="index")


def bias_accuracy(model, split: Split, meta_csv: str | Path, image_size: int, recipe: str = "rafdb",
                  **options) -> dict:
    """Accuracy on SynthFER's bias-aligned and bias-conflicting test images (``meta.csv``'s
    ``bias_conflicting``), and overall; ``options`` go to ``predict``."""
    meta = pd.read_csv(meta_csv)
    root = Path(meta_csv).parent.resolve()
    conflicting = meta.set_index("path")["bias_conflicting"]
    keys = [str(Path(p).resolve().relative_to(root)) for p in split.paths]
    missing = [k for k in keys if k not in conflicting.index]
    if missing:
        raise ValueError(f"{meta_csv}: has no row for {len(missing)} test image(s), e.g. {missing[0]}")
    flags = conflicting.loc[keys].to_numpy().astype(bool)
    correct = predict(model, split, image_size, recipe, **options).argmax(1) == split.labels
    return {"accuracy": float(correct.mean()), "aligned": float(correct[~flags].mean()) if (~flags).any() else np.nan,
            "conflicting": float(correct[flags].mean()) if flags.any() else np.nan,
            "n_aligned": int((~flags).sum()), "n_conflicting": int(flags.sum())}
