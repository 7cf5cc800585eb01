"""Ablations: train every variant over several seeds (reusing finished runs), then compare them honestly.

Each variant is a set of model overrides on the profile's config (``VARIANTS``, with the claim of the
paper each one tests in ``CLAIMS``). ``baseline_matched`` is the baseline given QCS's compute: 4× the
batch and 4× the anchors per epoch, so that it takes as many optimizer steps as QCS and pushes as many
images through the backbone per step and per epoch (``work_units``). Run ``<variant>-s<seed>`` lands in
``<runs_dir>/<profile name>/``; ``train_variants`` trains a plan of them and ``reuse_or_fit`` one config,
each reusing a finished run of the same config.

Every run picks its checkpoint and stops on its selection split (val, unless a profile asks for the
paper's protocol, ``selection: test``); the test scores in its ``summary.json`` come after that.
``summarize`` gives mean ± std over seeds; ``comparisons`` the paired differences of ``COMPARISONS``
with 95 % intervals, Holm-adjusted p-values over the family and their verdicts (``analysis.stats``);
``bias_table`` splits SynthFER's test set by the background attribute, where the truth about the redundant
feature is known, and ``bias_comparisons`` pairs the variants' gaps (aligned − conflicting accuracy) over
seeds; ``findings`` writes notebook 04's conclusions from all of these.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sys
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from . import progress
from .analysis.findings import convergence
from .analysis.stats import compare, family_sentence, interval_label, verdict, with_holm
from .data.sources import Split, load_split
from .models.qcs import BRANCHES
from .models.weights import load_checkpoint
from .train.config import TrainConfig
from .train.distributed import launch_torchrun
from .train.evaluation import predict
from .train.loop import fit, prepare_data, work_units
from .train.rundir import Run, version_change
from .train.runtime import select_device

VARIANTS = {
    "baseline": {"variant": "baseline"},
    "baseline_matched": {"variant": "baseline"},        # + QCS's image budget: see variant_config
    "dcs": {"variant": "dcs"},
    "qcs": {"variant": "qcs"},                          # csa sd: the paper's method
    "qcs_s": {"variant": "qcs", "csa": "s"},            # similarity only
    "qcs_sdpa": {"variant": "qcs", "csa": "sdpa"},      # plain scaled dot-product cross attention
    "qcs_no_residual": {"variant": "qcs", "residual": False},
    "qcs_per_sample": {"variant": "qcs", "per_sample_norm": True},
}
CLAIMS = {
    "baseline": "POSTER++ without landmarks: the base branch alone, one image per anchor",
    "baseline_matched": "the baseline with QCS's compute: 4× batch and 4× anchors, as many backbone images as QCS",
    "dcs": "the dual-branch version (anchor + positive, similarity only)",
    "qcs": "the paper's method: quadruplets, CSA sd with k = 1 + tanh θ",
    "qcs_s": "QCS without the dissimilarity term",
    "qcs_sdpa": "QCS with plain cross attention instead of the CSA formula",
    "qcs_no_residual": "QCS whose cross encoder reads only the refined tokens",
    "qcs_per_sample": "QCS with per-sample instead of batch-global min/max normalisation",
}
MATCHED = {"baseline_matched": "qcs"}  # variant → the variant whose image budget it gets
MAIN = ("baseline", "baseline_matched", "dcs", "qcs")  # the profile's `seeds`; the rest get its `ablation_seeds`
# (variant, reference, the question the paired difference answers)
COMPARISONS = [
    ("qcs", "baseline", "does QCS beat the baseline at equal epochs (the paper's comparison)?"),
    ("qcs", "baseline_matched", "does QCS beat the baseline at equal compute (as many backbone images)?"),
    ("dcs", "baseline", "does DCS beat the baseline at equal epochs?"),
    ("qcs", "dcs", "do the negatives help (QCS against DCS)?"),
    ("baseline_matched", "baseline", "what does QCS's compute alone buy the baseline?"),
    ("qcs_s", "qcs", "does dropping the dissimilarity term change QCS?"),
    ("qcs_sdpa", "qcs", "does plain cross attention do as well as CSA?"),
    ("qcs_no_residual", "qcs", "does dropping the cross residual change QCS?"),
    ("qcs_per_sample", "qcs", "does per-sample normalisation change QCS?"),
]
# (variant, reference, question) on the bias gap, aligned − conflicting accuracy: the paper's claim on SynthFER
GAP_COMPARISONS = [
    ("qcs", "baseline_matched", "does QCS lean less on the background hue than the baseline at equal compute?"),
    ("qcs", "baseline", "does QCS lean less on the background hue than the baseline at equal epochs?"),
    ("qcs", "dcs", "does QCS lean less on the background hue than DCS (do the negatives help)?"),
]
METRICS = ("val_accuracy", "test_accuracy", "test_mean_class_accuracy", "test_macro_f1")


def variant_config(config: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """The profile's config for one variant and seed, named ``<variant>-s<seed>`` under runs/<profile>.
    A matched variant multiplies the batch and the anchors per epoch by the branch ratio (4 for QCS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    changes = {}
    if variant in MATCHED:
        ratio = BRANCHES[VARIANTS[MATCHED[variant]]["variant"]] // BRANCHES[VARIANTS[variant]["variant"]]
        changes = {"batch_size": config.batch_size * ratio, "epoch_fraction": config.epoch_fraction * ratio}
    return config.replace(name=f"{variant}-s{seed}", runs_dir=str(Path(config.runs_dir) / config.name), seed=seed,
                          model=dataclasses.replace(config.model, **{"csa": None, **VARIANTS[variant]}), **changes)


def plan(seeds: list[int], ablation_seeds: list[int]) -> dict[str, list[int]]:
    """Every variant with its seeds: ``seeds`` for the ``MAIN`` comparison, ``ablation_seeds`` for the rest."""
    return {v: list(seeds if v in MAIN else ablation_seeds) for v in VARIANTS}


def finished(config: TrainConfig, reuse_stale: bool = False) -> bool:
    """A run of exactly this config that has stopped (its ``summary.json`` is written when training ends), trained
    by the code, libraries and data that would train it here (``current``). Its config.yaml is read as
    ``Run.load`` reads it, so a field added since it was written counts at its default."""
    try:
        summary = json.loads((config.run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return same_config(config) and "stopped_epoch" in summary and current(config, reuse_stale)


def same_config(config: TrainConfig) -> bool:
    """Whether ``config.run_dir`` holds a run of exactly ``config`` (its config.yaml, read as ``Run.load`` reads it)."""
    try:
        stored = TrainConfig.from_dict(yaml.safe_load((config.run_dir / "config.yaml").read_text()) or {})
    except (OSError, ValueError):
        return False
    return stored.to_dict() == config.to_dict()


def current(config: TrainConfig, reuse_stale: bool = False) -> bool:
    """Whether the finished run of ``config`` may be reused: trained by what would train it here
    (``rundir.version_change``), or ``reuse_stale``. Either way a run of other code is named in one line on stderr,
    which the HTML reports leave out (the executed notebook keeps it; a run reused anyway is named in the findings
    and the index)."""
    change = version_change(config.run_dir, config)
    if change is None:
        return True
    print(f"{config.run_dir}: trained by other code ({change}); "
          + ("reused as asked (reuse_stale)" if reuse_stale else "training it again (reuse_stale: reuse it)"),
          file=sys.stderr)
    return reuse_stale


def interrupted(config: TrainConfig) -> Path | None:
    """The ``last.pt`` of an unfinished run of exactly this config (no ``summary.json``), trained by the code that
    would train it here, to resume from; else None (``fit`` then starts it afresh)."""
    last = config.run_dir / "last.pt"
    if not last.is_file() or (config.run_dir / "summary.json").exists() or not same_config(config):
        return None
    return last if version_change(config.run_dir, config) is None else None


def resume_or_fit(config: TrainConfig, progress_bars: bool = True) -> Run:
    """``fit`` the config, resuming an ``interrupted`` run of it where it stopped (said in one line), so that a
    pipeline stopped by Ctrl-C or a crash goes on from there when rerun."""
    if (last := interrupted(config)) is not None:
        print(f"resuming the unfinished run {config.run_dir} from {last.name}")
        return fit(config, resume=last, progress=progress_bars)
    return fit(config, overwrite=True, progress=progress_bars)


def stale(config: TrainConfig, trained: list[TrainConfig], reuse_stale: bool) -> bool:
    """Whether the finished run of ``config`` was trained by other code: only a run reused with ``reuse_stale`` can
    be (``finished`` refuses the others, and a run trained now is current)."""
    return reuse_stale and config not in trained and version_change(config.run_dir, config) is not None


def reuse_or_fit(config: TrainConfig, force: bool = False, processes: int = 1, reuse_stale: bool = False) -> Run:
    """The finished run of exactly this config (``finished``) unless ``force``; else train it, here
    (``resume_or_fit``: an interrupted run goes on where it stopped) or,
    with ``processes > 1``, by torchrun in a subprocess (``launch_torchrun``) → the Run."""
    if finished(config, reuse_stale) and not force:
        print(f"reusing the finished run {config.run_dir}")
        return Run.load(config.run_dir)
    if processes > 1:
        return launch_torchrun(config, processes)
    return resume_or_fit(config)


def read_run(summary: dict) -> dict:
    """A summary.json → one flat row: best_*/last_* metrics, the epochs, convergence and compute."""
    row = {"best_epoch": summary["best"]["epoch"], "stopped_epoch": summary["stopped_epoch"],
           "max_epochs": summary["max_epochs"], "stopped_early": summary["stopped_early"],
           "still_improving_at_limit": summary["still_improving_at_limit"], "slope": summary["slope"],
           "converged": summary["converged"], "selection": summary["selection"]}
    for when in ("best", "last"):
        row.update({f"{when}_{m}": summary[when].get(m, np.nan) for m in METRICS})
    return {**row, "backbone_images": summary["backbone_images"], "train_seconds": summary["train_seconds"]}


def train_variants(config: TrainConfig, plan: dict[str, list[int]], force: bool = False, jobs: int = 1,
                   progress_bars: bool = True, reuse_stale: bool = False) -> pd.DataFrame:
    """Train (or reuse) every ``{variant: [seeds]}`` of ``plan`` → one row per run (``read_run``'s columns
    plus variant, seed, reused, other_code (reused with ``reuse_stale`` though trained by other code), run_dir),
    in plan order.

    ``jobs > 1`` trains that many runs at once in worker processes that share the CPU threads (on a
    2-core CPU, two one-thread runs do more work than one two-thread run: benchmarks/RESULTS.md), longest runs
    first.
    While it trains, ``progress`` reports which run of how many, and what is left after it."""
    planned = [(v, s, variant_config(config, v, s)) for v, seeds in plan.items() for s in seeds]
    todo = fit_all([c for _, _, c in planned], force, jobs, progress_bars, reuse_stale)
    rows = []
    for variant, seed, c in planned:
        summary = json.loads((c.run_dir / "summary.json").read_text())
        rows.append({"variant": variant, "seed": seed, **read_run(summary), "reused": c not in todo,
                     "other_code": stale(c, todo, reuse_stale), "run_dir": str(c.run_dir)})
    return pd.DataFrame(rows)


def fit_all(configs: list[TrainConfig], force: bool = False, jobs: int = 1, progress_bars: bool = True,
            reuse_stale: bool = False) -> list[TrainConfig]:
    """Train every config that has no finished run (``finished``; all of them with ``force``) → those trained.
    ``jobs > 1`` trains that many at once, as ``train_variants`` describes, longest first."""
    todo = sorted((c for c in configs if force or not finished(c, reuse_stale)), key=work_units, reverse=True)
    for config in todo:
        prepare_data(config)
    parallel = jobs > 1 and len(todo) > 1
    run_all([partial(_fit, c, _context(todo, i, jobs if parallel else 1), progress_bars and not parallel)
             for i, c in enumerate(todo)], jobs)
    progress.context(run_index=None, runs=None, later_units=None)
    return todo


def run_all(calls: list, jobs: int = 1) -> None:
    """Call every one of ``calls`` (picklable: module-level functions or ``partial``s of them): with ``jobs > 1``
    and more than one call, ``jobs`` at a time in spawned worker processes that share the CPU threads; else here,
    in order. A worker's error is raised here as soon as the calls already running end: no further call starts."""
    if jobs > 1 and len(calls) > 1:
        threads = max(1, torch.get_num_threads() // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads,
                                 initargs=(threads,)) as pool:
            futures = [pool.submit(call) for call in calls]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:  # after an error, the calls not started yet (else nothing is left to cancel)
                future.cancel()
            for future in futures:
                if not future.cancelled():
                    future.result()
    else:
        for call in calls:
            call()


def _context(todo: list[TrainConfig], i: int, jobs: int) -> dict:
    """What ``progress`` reports with run i: its place, and the work of the runs after it (shared by the jobs)."""
    return {"run_index": i + 1, "runs": len(todo), "later_units": sum(map(work_units, todo[i + 1:])) / jobs}


def _fit(config: TrainConfig, context: dict, progress_bars: bool) -> None:
    progress.context(**context)
    resume_or_fit(config, progress_bars)


def variant_table(plan: dict[str, list[int]]) -> pd.DataFrame:
    """Every variant of ``plan``: the claim of the paper it tests (``CLAIMS``) and its number of seeds."""
    return pd.DataFrame({"tests": {v: CLAIMS[v] for v in plan}, "seeds": {v: len(s) for v, s in plan.items()}},
                        index=pd.Index(list(plan), name="variant"))


def run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """``train_variants``' rows for reading: how each run ended, the split that chose its checkpoint and that
    checkpoint's scores (%), and what the run cost."""
    return pd.DataFrame({
        "variant": runs["variant"], "seed": runs["seed"],
        "epochs": [f"{s}/{m}" for s, m in zip(runs["stopped_epoch"], runs["max_epochs"])],
        "ended by": [("patience" if early else "limit, still improving" if rising else "limit")
                     for early, rising in zip(runs["stopped_early"], runs["still_improving_at_limit"])],
        "converged": runs["converged"].map({True: "yes", False: "NO"}),
        "chosen on": runs["selection"].map({"val": "val", "test": "test (paper's protocol)"}),
        "chosen epoch": runs["best_epoch"], "val acc %": (100 * runs["best_val_accuracy"]).round(2),
        "test acc %": (100 * runs["best_test_accuracy"]).round(2),
        "backbone images (M)": (runs["backbone_images"] / 1e6).round(2),
        "train s": runs["train_seconds"].round(0).astype(int)}).reset_index(drop=True)


def summarize(runs: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Per variant (in run order): mean and sample std (ddof 1) over seeds of each best_/last_ metric, and n."""
    columns = [f"{w}_{m}" for m in metrics for w in ("best", "last")]
    grouped = runs.groupby("variant", sort=False)[columns]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    table["n"] = grouped.size()
    return table[[f"{c}_{s}" for c in columns for s in ("mean", "std")] + ["n"]]


def format_mean_std(table: pd.DataFrame, scale: float = 100.0, digits: int = 2) -> pd.DataFrame:
    """``summarize``'s table as "mean ± std" strings (in % by default); one seed shows the mean alone."""
    names = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    return pd.DataFrame({n: [f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}" if np.isfinite(s)
                             else f"{m * scale:.{digits}f}" for m, s in zip(table[f"{n}_mean"], table[f"{n}_std"])]
                         for n in names}, index=table.index)


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """``summarize``'s table for reading: "mean ± std" (%) of the chosen checkpoint's test scores, its val
    accuracy and the last epoch's test accuracy, and the number of seeds."""
    shown = ["best_test_accuracy", "best_val_accuracy", "best_test_mean_class_accuracy", "best_test_macro_f1",
             "last_test_accuracy"]
    return format_mean_std(table)[shown].assign(n=table["n"])


def comparison_table(compared: pd.DataFrame | None, what: str = "test accuracy") -> pd.DataFrame | None:
    """``comparisons`` (or ``bias_comparisons``) for reading: the question, seeds, the mean difference in points
    of ``what``, its interval (unadjusted, at the comparisons' level) and the Holm-adjusted p over the family.
    None (no bias check) gives None."""
    if compared is None:
        return None

    def points(v: float) -> str:
        return f"{100 * v:+.2f}" if np.isfinite(v) else "n/a"

    label = f"{interval_label(compared.iloc[0])} (unadjusted)" if len(compared) else "interval"
    return pd.DataFrame({
        "question": compared["question"].to_numpy(), "seeds": compared["seeds"].to_numpy(),
        "ahead on": compared["ahead"].to_numpy(), "mean difference": [points(v) for v in compared["mean_diff"]],
        label: [f"[{points(a)},\u00a0{points(b)}]" if np.isfinite(a) else "undefined"
                for a, b in zip(compared["ci_low"], compared["ci_high"])],
        f"Holm p (of {compared['family'].max() if len(compared) else 0})":
            [f"{p:.3f}" if np.isfinite(p) else "n/a" for p in compared["p_holm"]],
    }, index=pd.Index(compared["comparison"], name=f"comparison (points of {what})"))


def comparisons(runs: pd.DataFrame, metric: str = "best_test_accuracy") -> pd.DataFrame:
    """``COMPARISONS`` whose two variants both ran → one row each: the question, ``compare``'s numbers, the
    Holm-adjusted p over these comparisons (one family: ``with_holm``) and the ``verdict``."""
    return _family(runs, COMPARISONS, metric)


def _family(runs: pd.DataFrame, listed: list[tuple[str, str, str]], metric: str,
            directions: tuple[str, str] = ("is ahead of", "is behind")) -> pd.DataFrame:
    present = set(runs["variant"])
    asked = [(v, r, q) for v, r, q in listed if {v, r} <= present]
    compared = with_holm([compare(runs, v, r, metric) for v, r, _ in asked])
    return pd.DataFrame([{"comparison": f"{c['variant']} − {c['reference']}", "question": q, **c,
                          "verdict": verdict(c, directions=directions)} for (_, _, q), c in zip(asked, compared)])


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


def bias_table(runs: pd.DataFrame, test: Split, meta_csv: str | Path, recipe: str, device) -> pd.DataFrame:
    """``bias_accuracy`` of every run's best.pt → one row per run (variant, seed, accuracy, aligned,
    conflicting, n_aligned, n_conflicting)."""
    rows = []
    for r in runs.itertuples():
        model, _ = load_checkpoint(Path(r.run_dir) / "best.pt")
        acc = bias_accuracy(model.to(device), test, meta_csv, model.config.image_size, recipe, device=device,
                            progress=False)
        rows.append({"variant": r.variant, "seed": r.seed, **acc})
    return pd.DataFrame(rows)


def bias_check(config: TrainConfig, runs: pd.DataFrame) -> pd.DataFrame | None:
    """``bias_table`` of ``runs`` on the config's test split, where there is a spurious attribute to check: on
    SynthFER with ``bias_strength > 0`` (in train and val the background hue goes with the class). None
    elsewhere."""
    if config.dataset != "synthfer" or config.synthfer.bias_strength == 0:
        return None
    test = load_split("synthfer", config.data_root, config.test_split)
    return bias_table(runs, test, Path(config.data_root) / "meta.csv", config.transform, select_device(config.device))


def bias_summary(bias: pd.DataFrame | None) -> pd.DataFrame | None:
    """``bias_table``'s rows → per variant, "mean ± std" over seeds (in %) of the accuracy on bias-aligned and on
    bias-conflicting test images and of their gap (aligned − conflicting, per run), and the number of seeds.
    None (no bias check) gives None."""
    if bias is None:
        return None
    grouped = bias.assign(gap=bias["aligned"] - bias["conflicting"]).groupby("variant", sort=False)[
        ["aligned", "conflicting", "gap"]]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    return format_mean_std(table).assign(n=grouped.size())


def bias_comparisons(bias: pd.DataFrame | None) -> pd.DataFrame | None:
    """``GAP_COMPARISONS`` on ``bias_table``'s rows: per seed, the difference of two variants' gaps (aligned −
    conflicting accuracy), paired over seeds, with Holm's correction over these comparisons (one family). A
    negative difference means the first variant leans less on the background hue. None gives None."""
    if bias is None:
        return None
    gaps = bias.assign(gap=bias["aligned"] - bias["conflicting"])
    return _family(gaps, GAP_COMPARISONS, "gap", directions=("has a larger gap than", "has a smaller gap than"))


def findings(runs: pd.DataFrame, table: pd.DataFrame, compared: pd.DataFrame, bias: pd.DataFrame | None,
             ceiling: float | None, chance: float) -> str:
    """Notebook 04's conclusions as markdown, each number with its seeds and each comparison read from its
    interval."""
    selection = set(runs["selection"])
    lines = ["- Checkpoints were chosen on the **val** split; the test split was scored once per run, after training "
             "stopped." if selection == {"val"} else
             "- **Paper's protocol**: checkpoints were chosen on the **test** split (the best test epoch), so these "
             "test numbers are optimistic."]
    lines.append(convergence(runs, runs["selection"].iloc[0]))
    seeds = ", ".join(f"{v} {int(n)}" for v, n in table["n"].items())
    best = table["best_test_accuracy_mean"]
    span = (f"between {100 * best.min():.2f} % ({best.idxmin()}) and {100 * best.max():.2f} % ({best.idxmax()})")
    ceiling_text = f"the AU-oracle ceiling is {100 * ceiling:.2f} %" if ceiling is not None else "no ceiling is known"
    lines.append(f"- Mean test accuracy lies {span}; chance is {100 * chance:.2f} % and {ceiling_text}. "
                 f"Seeds per variant: {seeds}.")
    lines += _family_lines(compared, "test accuracy")
    if bias is not None and not bias.empty:
        conflicting = bias_summary(bias)["conflicting"]
        parts = [f"{v} {conflicting[v]} %" for v in MAIN if v in conflicting.index]
        lines.append(f"- On bias-conflicting test images (another class's background hue): {'; '.join(parts)} "
                     f"(mean ± std over seeds).")
        lines += _family_lines(bias_comparisons(bias), "bias gap (aligned − conflicting accuracy)")
    return "\n".join(lines)


def _family_lines(compared: pd.DataFrame, what: str) -> list[str]:
    """One bullet per comparison of a family (``_family``), after one saying how the family is corrected."""
    if compared.empty:
        return []
    lines = [f"- {family_sentence(compared.to_dict('records'), f'Paired comparisons of the {what}')}."]
    return lines + [f"  - *{row.question}* {row.verdict}." for row in compared.itertuples()]
