"""The paper's tables (notebook 08): its main table with our numbers beside the authors', the ablation table in
the layout of the paper's, and a cross-dataset matrix (train on the rows, test on the columns).

- ``main_numbers`` (and ``main_table`` to read it): one row per dataset of the paper (and the profile's own,
  SynthFER, when it is none of them). Our numbers come from the finished QCS runs of that dataset's profile
  (``qcs_runs``: every run under ``<runs_dir>/<profile name>*`` with its recipe, one a seed), each run's
  checkpoint chosen on its selection split: the **best of N** seeds, which is the paper's protocol (the authors
  report the best of 5 runs), and the **mean ± std** over the N, the estimate a new run should expect. Official
  checkpoints are scored on their dataset's test split beside them.
- ``ablation_table``: notebook 04's runs, one row per variant with a ✓ column per component and the paired
  difference to QCS with its 95 % interval (``analysis.stats.compare``).
- ``cross_matrix``: every trained model (rows) scored on every test split (columns) with
  ``train.evaluation.evaluate_checkpoint``, which scores the classes two datasets share. With no real data the
  rows and columns are SynthFER domains (``data.synthfer.DOMAINS``): one QCS run per domain (``domain_configs``).

A dataset that is not on disk gives cells that say where to put it (``not_available``); nothing crashes for
want of data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .ablation import fit_all, variant_config
from .analysis.findings import convergence
from .analysis.metrics import PAPER_ACCURACY
from .analysis.stats import compare, verdict
from .data.synthfer import DOMAINS, generate
from .models.qcs import BRANCHES
from .models.weights import CheckpointError
from .train.config import ConfigError, TrainConfig, apply_overrides, load_profile, parse_overrides, synthfer_domain
from .train.evaluation import evaluate_checkpoint
from .train.rundir import RESUMABLE, Run

PAPER_DATASETS = ("rafdb", "ferplus", "affectnet7", "affectnet8")
NAMES = {"rafdb": "RAF-DB", "ferplus": "FERPlus", "affectnet7": "AffectNet-7", "affectnet8": "AffectNet-8",
         "synthfer": "SynthFER"}
# QCS‡: QCS fine-tuned from the authors' AffectNet-8 QCS checkpoint (test accuracy, %). Source: the official
# README's "Checkpoints" table (github.com/birdwcp/QCS, README.md at commit 293f28f), rows "QCS‡" ("‡ means
# pre-trained on the AffectNet-8"); the authors wrote in birdwcp/QCS issue #4 that 93.02 is the best of five
# runs. The README has no QCS‡ row for AffectNet. (PAPER_ACCURACY, in analysis.metrics, holds its QCS rows.)
# The paper's own tables (arXiv 2411.01988) could not be read here, so no number below is taken from them.
PAPER_PRETRAINED = {"rafdb": 93.02, "ferplus": 91.85}
PAPER_COLUMNS = ("paper (QCS, reported) %", "paper (QCS‡, reported) %")


def dataset_config(dataset: str, config: TrainConfig) -> TrainConfig:
    """The config whose runs give ``dataset``'s numbers: ``config`` when it trains on ``dataset``, else the
    built-in profile of that name (``rafdb``, ``ferplus``, ``affectnet7``, ``affectnet8``)."""
    return config if config.dataset == dataset else load_profile(dataset)


def not_available(config: TrainConfig) -> str | None:
    """Why ``config``'s data cannot be scored: "not available: put RAF-DB at data/rafdb"; None when its data root
    is there (SynthFER is generated, so it is always there)."""
    if config.dataset == "synthfer" or Path(config.data_root).is_dir():
        return None
    return f"not available: put {NAMES[config.dataset]} at {config.data_root}"


def same_recipe(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two configs train the same way: equal in every field but where and how the run ran (``RESUMABLE``:
    its directory, data root, device, ...) and its seed."""
    ignored = set(RESUMABLE) | {"seed"}
    return {k: v for k, v in a.to_dict().items() if k not in ignored} == \
        {k: v for k, v in b.to_dict().items() if k not in ignored}


def qcs_runs(config: TrainConfig) -> list[Run]:
    """The finished QCS runs of ``config``'s recipe (``same_recipe`` as ``variant_config(config, "qcs", seed)``),
    found under ``<runs_dir>/<name>*`` (notebook 02 and 04's ``<name>/qcs-s<seed>``, ``python -m qcslib train``'s
    ``<name>``), one a seed (the first by path), by seed. Distilled students are not QCS runs, whatever recipe
    they share."""
    reference = variant_config(config, "qcs", 0)
    found: dict[int, Run] = {}
    for summary in sorted(Path(config.runs_dir).glob(f"{config.name}*/**/summary.json")):
        try:
            run = Run.load(summary.parent)
        except (OSError, ConfigError):  # a directory that no longer describes a run of this version: not ours
            continue
        distilled = "student" in run.summary  # a student's config.yaml holds its teacher's model and recipe
        if same_recipe(run.config, reference) and "stopped_epoch" in run.summary and not distilled:
            found.setdefault(run.config.seed, run)
    return [found[s] for s in sorted(found)]


def seed_numbers(runs: list[Run]) -> dict:
    """Test accuracy (%) of each run's chosen checkpoint → ``{best, mean, std, n, seeds, selection, converged}``
    (std: sample std, NaN for one run)."""
    accuracy = np.array([100 * r.summary["best"]["test_accuracy"] for r in runs])
    return {"best": accuracy.max(), "mean": accuracy.mean(), "std": accuracy.std(ddof=1) if len(runs) > 1 else np.nan,
            "n": len(runs), "seeds": [r.config.seed for r in runs],
            "selection": sorted({r.summary["selection"] for r in runs}),
            "converged": sum(bool(r.summary["converged"]) for r in runs)}


def score(checkpoint: str | Path, test: TrainConfig, device: str = "auto") -> float | str:
    """Test accuracy (a fraction) of ``checkpoint`` on ``test``'s test split (``evaluate_checkpoint``, the classes
    both share), or why it is not scored: the data is absent (``not_available``), or the checkpoint does not fit
    the split (its one-line error)."""
    if (missing := not_available(test)) is not None:
        return missing
    try:
        metrics = evaluate_checkpoint(checkpoint, test.dataset, test.data_root, test.test_split, device=device,
                                      batch_size=test.eval_batch_size, **test.data_options.to_dict())
    except (CheckpointError, ConfigError) as e:
        return f"not scored: {e}"
    return metrics["accuracy"]


def _percent(value) -> str:
    return value if isinstance(value, str) else f"{100 * value:.2f}"


# ------------------------------------------------------------------------------------------------------ main table

def main_numbers(config: TrainConfig, official: dict[str, Path] | None = None) -> pd.DataFrame:
    """The paper's datasets (and ``config``'s own, when it is none of them) → one row each (index: the dataset):
    ``paper`` and ``paper_pretrained``, the authors' QCS and QCS‡ accuracies (%; NaN where they report none),
    ``seed_numbers`` of its profile's ``qcs_runs`` (NaN and ``n`` 0 without runs), ``why`` there are none (None
    with runs: the data is ``not_available``, or nothing was trained yet), and ``official``: the dataset's
    ``official`` checkpoint's ``score`` (None where none is given)."""
    official = official or {}
    datasets = list(PAPER_DATASETS) + ([config.dataset] if config.dataset not in PAPER_DATASETS else [])
    rows = {}
    for dataset in datasets:
        profile = dataset_config(dataset, config)
        runs = qcs_runs(profile)
        numbers = seed_numbers(runs) if runs else {"best": np.nan, "mean": np.nan, "std": np.nan, "n": 0, "seeds": [],
                                                   "selection": [], "converged": 0}
        why = None if runs else not_available(profile) or f"no runs yet: run the pipeline with --profile {dataset}"
        checkpoint = official.get(dataset)
        rows[dataset] = {"paper": PAPER_ACCURACY.get(dataset, np.nan),
                         "paper_pretrained": PAPER_PRETRAINED.get(dataset, np.nan), **numbers, "why": why,
                         "official": score(checkpoint, profile, config.device) if checkpoint else None}
    return pd.DataFrame.from_dict(rows, orient="index")


def main_table(numbers: pd.DataFrame) -> pd.DataFrame:
    """``main_numbers`` for reading, one row per dataset: the authors' numbers (labelled as the paper's), ours as
    best of N and mean ± std (%), the seeds and N, the split that chose the checkpoints, how many runs converged,
    and the official checkpoint scored here. A dataset without runs says why in our cells."""
    rows = {}
    for dataset, n in numbers.iterrows():
        row = {PAPER_COLUMNS[0]: _paper(n["paper"], dataset), PAPER_COLUMNS[1]: _paper(n["paper_pretrained"], dataset)}
        if n["n"]:
            row.update({"ours: best of N %": f"{n['best']:.2f}",
                        "ours: mean ± std %": f"{n['mean']:.2f}" + (f" ± {n['std']:.2f}" if n["n"] > 1 else ""),
                        "seeds (N)": f"{', '.join(map(str, n['seeds']))} ({n['n']})",
                        "chosen on": ", ".join("test (paper's protocol)" if s == "test" else s for s in n["selection"]),
                        "converged": f"{n['converged']} of {n['n']}"})
        else:
            row.update({"ours: best of N %": n["why"], "ours: mean ± std %": n["why"], "seeds (N)": "none",
                        "chosen on": "—", "converged": "—"})
        row["official checkpoint %"] = "none given" if n["official"] is None else _percent(n["official"])
        rows[NAMES[dataset]] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("dataset")


def _paper(number: float, dataset: str) -> str:
    if dataset not in PAPER_DATASETS:
        return "not in the paper"
    return "not reported" if np.isnan(number) else f"{number:.2f}"


# -------------------------------------------------------------------------------------------------- ablation table

def components(config: TrainConfig, variant: str) -> dict:
    """What ``variant``'s network has, as the paper's ablation tables list it: branches, the cross attention, its
    similarity φ(S) and dissimilarity φ(D) terms, the cross residual, the min/max normalisation, and the
    compute it is given."""
    model = variant_config(config, variant, 0).model
    cross = model.variant != "baseline"
    distance = cross and model.csa != "sdpa"
    mark = {True: "✓", False: "✗"}
    return {"branches": BRANCHES[model.variant], "cross attention": "SDPA" if model.csa == "sdpa" else
            "CSA" if cross else "—",
            "φ(S)": mark[model.csa in ("s", "sd")] if distance else "—",
            "φ(D)": mark[model.csa in ("d", "sd")] if distance else "—",
            "cross residual": mark[model.residual] if cross else "—",
            "min / max": ("per sample" if model.per_sample_norm else "batch") if distance else "—",
            "compute": "QCS's" if variant == "baseline_matched" else "its own"}


def ablation_table(config: TrainConfig, runs: pd.DataFrame) -> pd.DataFrame:
    """Notebook 04's runs (``train_variants``' rows) in the layout of the paper's ablation table: one row per
    variant, its ``components``, the test accuracy (%) of the checkpoints chosen on the selection split as mean ±
    std and best over its seeds, N, and the paired difference to QCS on the seeds both ran with its 95 %
    interval (points; "n/a" with fewer than 2 shared seeds)."""
    rows = {}
    for variant, group in runs.groupby("variant", sort=False):
        accuracy = 100 * group["best_test_accuracy"]
        row = {**components(config, variant),
               "test acc % (mean ± std)": f"{accuracy.mean():.2f}" + (f" ± {accuracy.std():.2f}" if len(group) > 1
                                                                     else ""),
               "best of N %": f"{accuracy.max():.2f}", "N": len(group), "Δ vs QCS (points)": "—",
               "95 % interval": "—"}
        if variant != "qcs" and "qcs" in set(runs["variant"]):
            c = compare(runs, variant, "qcs")
            row["Δ vs QCS (points)"] = f"{100 * c['mean_diff']:+.2f} ({c['seeds']} seeds)" if c["seeds"] else "n/a"
            row["95 % interval"] = (f"[{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"
                                    if np.isfinite(c["ci_low"]) else "n/a")
        rows[variant] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")


# --------------------------------------------------------------------------------------------- cross-dataset matrix

DATA_KEYS = ("dataset", "data_root", "synthfer", "data_options", "synthfer_domain")  # not for domain_overrides


def parse_domain_overrides(overrides: list[str]) -> dict:
    """``key=value`` overrides of the domain runs, parsed; one that changes the data (``DATA_KEYS``) is a one-line
    ConfigError, since each domain's data is the one its preset names (``synthfer_domain``)."""
    try:
        changes = parse_overrides(overrides)
    except ConfigError as e:
        raise ConfigError(f"domain_overrides: {e}") from None
    if refused := [k for k in changes if k.partition(".")[0] in DATA_KEYS]:
        raise ConfigError(f"domain_overrides: {refused[0]} changes the data; each domain's data is its preset's")
    return changes


def domain_configs(config: TrainConfig, domains: list[str], seed: int, overrides: list[str] | None = None
                   ) -> dict[str, TrainConfig]:
    """The QCS run of each SynthFER domain: ``config`` with the training ``overrides`` (``parse_domain_overrides``), on
    the domain (``synthfer_domain``), with ``seed``, in ``<run_dir>/domains/<domain>/qcs-s<seed>``. Without
    overrides the studio run is notebook 02's (``variant_config(config, "qcs", seed)``), reused when it has
    finished. A profile that trains on another dataset has no domain runs (``{}``)."""
    changes = parse_domain_overrides(overrides or [])
    if config.dataset != "synthfer":
        return {}
    base = TrainConfig.from_dict(apply_overrides(config.to_dict(), changes), where="domain_overrides")
    out = {}
    for domain in domains:
        if domain == "studio" and not changes:
            out[domain] = variant_config(config, "qcs", seed)
        else:
            shifted = synthfer_domain(base, domain).replace(runs_dir=str(config.run_dir / "domains"), name=domain)
            out[domain] = variant_config(shifted, "qcs", seed)
    return out


def domain_runs(configs: dict[str, TrainConfig], force: bool = False, jobs: int = 1, reuse_stale: bool = False
                ) -> dict[str, Run]:
    """Generate every domain's data (here, with every core; cached), then train (or reuse) the run of each
    ``domain_configs`` entry, ``jobs`` at a time → ``{domain: Run}``. A reused run's data is generated too: its
    test split is scored by every other run."""
    for c in configs.values():
        generate(c.data_root, c.synthfer)
    fit_all(list(configs.values()), force, jobs, progress_bars=False, reuse_stale=reuse_stale)
    return {domain: Run.load(c.run_dir) for domain, c in configs.items()}


def domain_table(runs: dict[str, Run]) -> pd.DataFrame | None:
    """One row per domain run: what its preset changes (``DOMAINS``), where the run is (the last three parts of its
    path), how it ended and the val and test accuracy (%) of its checkpoint chosen on the selection split; None
    without domain runs."""
    if not runs:
        return None
    rows = {}
    for domain, run in runs.items():
        s = run.summary
        changes = ", ".join(f"{k} {v}" for k, v in DOMAINS[domain].items()) or "nothing (the profile's)"
        rows[domain] = {"changes": changes, "run": "/".join(run.dir.parts[-3:]), "epochs": f"{s['stopped_epoch']}/{s['max_epochs']}",
                        "converged": "yes" if s["converged"] else "NO", "chosen on": s["selection"],
                        "val acc %": round(100 * s["best"].get("val_accuracy", np.nan), 2),
                        "test acc %": round(100 * s["best"]["test_accuracy"], 2)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("domain")


def cross_entries(config: TrainConfig, runs: dict[str, Run], official: dict[str, Path] | None = None
                  ) -> tuple[dict[str, Path | str], dict[str, TrainConfig]]:
    """The rows and columns of ``cross_matrix``. Rows: ``SynthFER · <domain>`` for each domain run, then each paper
    dataset's first QCS run (``qcs_runs``; else why there is none) and each ``official`` checkpoint. Columns: each
    domain's config (its test split), then each paper dataset's profile."""
    rows: dict[str, Path | str] = {f"SynthFER · {d}": r.best_checkpoint for d, r in runs.items()}
    columns = {f"SynthFER · {d}": r.config for d, r in runs.items()}
    for dataset in PAPER_DATASETS:
        profile = dataset_config(dataset, config)
        trained = qcs_runs(profile)
        rows[NAMES[dataset]] = trained[0].best_checkpoint if trained else \
            not_available(profile) or f"no runs yet: run the pipeline with --profile {dataset}"
        columns[NAMES[dataset]] = profile
    for dataset, checkpoint in (official or {}).items():
        rows[f"official {NAMES[dataset]} checkpoint"] = Path(checkpoint)
    return rows, columns


def cross_matrix(rows: dict[str, Path | str], columns: dict[str, TrainConfig], device: str = "auto") -> pd.DataFrame:
    """Each row's checkpoint scored on each column's test split (``score``): the accuracy as a fraction, or a note
    (the row's, when it has no checkpoint: a string; else the column's or the scoring's)."""
    return pd.DataFrame.from_dict(
        {row: {col: checkpoint if isinstance(checkpoint, str) else score(checkpoint, test, device)
               for col, test in columns.items()} for row, checkpoint in rows.items()},
        orient="index").rename_axis("trained on ↓ · tested on →")


def cross_table(matrix: pd.DataFrame) -> pd.DataFrame:
    """``cross_matrix`` for reading: accuracies in %, notes as they are."""
    return matrix.map(_percent)


def domain_shift(matrix: pd.DataFrame) -> dict | None:
    """The SynthFER block of ``cross_matrix`` (rows and columns ``SynthFER · <domain>``): the mean in-domain
    (diagonal) and cross-domain (off-diagonal) accuracy, and the largest drop from a row's own domain to another
    → ``{domains, in_domain, cross_domain, drop: (train, test, points)}``; None with fewer than 2 domains."""
    names = [n for n in matrix.index if n.startswith("SynthFER · ") and n in matrix.columns]
    if len(names) < 2:
        return None
    block = matrix.loc[names, names].astype(float).to_numpy()  # (D, D) accuracies
    diagonal = np.diag(block)
    off = block[~np.eye(len(names), dtype=bool)]
    drops = diagonal[:, None] - block  # (D, D): own-domain accuracy − accuracy on the column's domain
    i, j = np.unravel_index(np.argmax(np.where(np.eye(len(names), dtype=bool), -np.inf, drops)), drops.shape)
    short = [n.removeprefix("SynthFER · ") for n in names]
    return {"domains": short, "in_domain": float(diagonal.mean()), "cross_domain": float(off.mean()),
            "drop": (short[i], short[j], float(100 * drops[i, j]))}



# --------------------------------------------------------------------------------------------------------- findings

def findings(numbers: pd.DataFrame, ablation_runs: pd.DataFrame, matrix: pd.DataFrame, domains: dict[str, Run]) -> str:
    """Notebook 08's conclusions as markdown: the split that chose every checkpoint, our numbers beside the
    paper's with their seeds (best of N against the mean), the official checkpoints scored here, the ablation's
    seeds and its QCS − baseline interval, and the SynthFER domain shift (``domain_shift``); runs that did not
    converge are named, and their numbers called no result."""
    trained = numbers[numbers["n"] > 0]
    selections = set(ablation_runs["selection"]) | {r.summary["selection"] for r in domains.values()} | \
        {s for chosen in trained["selection"] for s in chosen}
    lines = ["- Every checkpoint of ours was chosen on the **val** split; the test split was scored once per run, "
             "after training stopped." if selections <= {"val"} else
             "- **Paper's protocol** in some runs: their checkpoints were chosen on the **test** split (the best test "
             "epoch), so their test numbers are optimistic."]
    for dataset, n in trained.iterrows():
        seeds = ", ".join(map(str, n["seeds"]))
        ours = (f"best of {n['n']} seeds ({seeds}) {n['best']:.2f} % test accuracy, mean ± std {n['mean']:.2f} ± "
                f"{n['std']:.2f} %: the best seed is {n['best'] - n['mean']:.2f} points above the mean" if n["n"] > 1
                else f"{n['best']:.2f} % test accuracy from one seed ({seeds}), so no spread and no best of N")
        paper = f"; the paper reports {n['paper']:.2f} %" if np.isfinite(n["paper"]) else " (not in the paper)"
        unconverged = "" if n["converged"] == n["n"] else \
            f"; **{n['n'] - n['converged']} of {n['n']} runs did not converge**: not a result"
        lines.append(f"- **{NAMES[dataset]}**: {ours}{paper}{unconverged}.")
    if missing := [NAMES[d] for d in numbers.index[numbers["n"] == 0]]:
        lines.append(f"- No runs of ours on {', '.join(missing)}: the table says where their data goes; there the "
                     f"paper's numbers stand alone.")
    for dataset, n in numbers[numbers["official"].notna()].iterrows():
        scored = n["official"]
        lines.append(f"- The official {NAMES[dataset]} checkpoint: " + (scored if isinstance(scored, str) else
                     f"**{100 * scored:.2f} %** test accuracy here (the authors report {n['paper']:.2f} %)") + ".")
    lines.append(_ablation_line(ablation_runs))
    lines.append(_domain_line(matrix, domains))
    return "\n".join(lines)


def _ablation_line(runs: pd.DataFrame) -> str:
    seeds = ", ".join(f"{v} {len(g)}" for v, g in runs.groupby("variant", sort=False))
    text = f"- Ablation (notebook 04's runs), seeds per variant: {seeds}."
    if {"qcs", "baseline"} <= set(runs["variant"]):
        text += f" *Does QCS beat the baseline?* {verdict(compare(runs, 'qcs', 'baseline'))}."
    return text + "\n" + convergence(runs, runs["selection"].iloc[0])


def _domain_line(matrix: pd.DataFrame, domains: dict[str, Run]) -> str:
    shift = domain_shift(matrix)
    if shift is None:
        return ("- No SynthFER domain matrix: it needs at least two domain runs, and a profile that trains on "
                "SynthFER.")
    seeds = sorted({r.config.seed for r in domains.values()})
    chance = 100 / next(iter(domains.values())).config.model.num_classes
    train, test, points = shift["drop"]
    drop = (f"the largest drop is trained on *{train}*, tested on *{test}*: {points:.2f} points" if points > 0 else
            "no model scores lower on another domain's test split than on its own")
    text = (f"- SynthFER domains ({len(shift['domains'])}, one QCS run each, seed {', '.join(map(str, seeds))}): "
            f"in-domain accuracy {100 * shift['in_domain']:.2f} % on average, cross-domain "
            f"{100 * shift['cross_domain']:.2f} % (chance {chance:.2f} %); {drop}. One seed per domain: an "
            f"illustration of the protocol, with no interval.")
    rising = [d for d, r in domains.items() if r.summary["still_improving_at_limit"]]
    unconverged = [d for d, r in domains.items() if not r.summary["converged"] and d not in rising]
    if rising:
        text += (f" **Still improving at their limit** ({len(rising)} of {len(domains)} domain runs: "
                 f"{', '.join(rising)}): their numbers understate what the recipe reaches.")
    if unconverged:
        text += (f" **Not converged** ({len(unconverged)} of {len(domains)} domain runs: {', '.join(unconverged)}): "
                 f"these numbers are not results.")
    return text
