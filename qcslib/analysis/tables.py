"""The notebooks' tables, so that their cells stay orchestration. Each function returns a DataFrame to read
(scores in %), or None where there is nothing to tabulate; ``notebook.show`` then says why."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ..video import STAGES
from .metrics import PAPER_ACCURACY

if TYPE_CHECKING:
    from ..train.evaluation import Scores

EPOCH_COLUMNS = ("epoch", "lr", "loss", "k1", "k2", "k3", "train_accuracy", "val_accuracy", "test_accuracy",
                 "train_seconds")


def class_counts(splits) -> pd.DataFrame:
    """Images per class (rows, then ``total``) and split (columns); a None split, one the run has not, is left
    out."""
    table = pd.DataFrame({s.split: s.counts() for s in splits if s is not None})
    table.loc["total"] = table.sum()
    return table


def left_out(splits) -> pd.DataFrame:
    """Per split: the images kept, the unreadable ones skipped (with the first of them) and the ones the
    dataset's protocol excludes, by reason."""
    rows = {s.split: {"images": len(s), "unreadable (skipped)": len(s.skipped),
                      "first unreadable": s.skipped[0]["path"] if s.skipped else "",
                      "excluded by the protocol": ", ".join(f"{n} {why}" for why, n in s.excluded.items()) or "none"}
            for s in splits if s is not None}
    return pd.DataFrame.from_dict(rows, orient="index")


def au_oracle(oracle: dict | None) -> pd.DataFrame | None:
    """``au_oracle``'s result (accuracies in %) as one column; None (no oracle) gives None."""
    if oracle is None:
        return None
    return pd.Series({"train accuracy %": 100 * oracle["train_accuracy"],
                      "test accuracy %": 100 * oracle["test_accuracy"], "train images": oracle["n_train"],
                      "test images": oracle["n_test"], "AU intensities": oracle["features"]},
                     name="AU oracle").round(2).to_frame()


def epochs(metrics: pd.DataFrame) -> pd.DataFrame:
    """A run's ``metrics.csv``, one row per epoch, cut to the learning rate, the mean loss, k, the accuracies
    and the time (the per-head losses are in the curves)."""
    return metrics[[c for c in EPOCH_COLUMNS if c in metrics]].round(4)


def chosen_and_last(summary: dict) -> pd.DataFrame:
    """The checkpoint chosen on the selection split and the last epoch's model, from a run's ``summary.json``:
    their epoch and scores (accuracies and macro-F1 in %)."""
    table = pd.DataFrame({k: summary[k] for k in ("best", "last")}).T
    scores = [c for c in table.columns if c.endswith(("accuracy", "macro_f1"))]
    table[scores] *= 100
    table["epoch"] = table["epoch"].astype(int)
    return table.rename(index={"best": f"chosen on {summary['selection']}", "last": "last epoch"}).round(2)


def headline(metrics: dict, dataset: str, trained_on: str | None = None) -> pd.DataFrame:
    """Accuracy, mean class accuracy and macro-F1 (%) of ``classification_metrics``, with the accuracy the paper
    reports for QCS beside them on the datasets it used, when the model was trained on ``dataset`` (``trained_on``
    None: taken to be): a cross-dataset score is not the paper's."""
    table = pd.DataFrame({"ours": [100 * metrics[k] for k in ("accuracy", "mean_class_accuracy", "macro_f1")]},
                         index=["accuracy %", "mean class accuracy %", "macro-F1 %"])
    if dataset in PAPER_ACCURACY and trained_on in (None, dataset):
        table["paper (QCS, reported)"] = [PAPER_ACCURACY[dataset], None, None]
    return table.round(2)


def calibration(summaries: dict[str, dict | None]) -> pd.DataFrame | None:
    """One row per model of ``{name: confidence.calibrate summary}`` (None: not calibrated, left out): the fitted
    temperature, then the ECE (%) before and after it on the split it was fitted on and on the report split;
    None when no model was calibrated."""
    rows = {}
    for name, s in summaries.items():
        if s is None:
            continue
        fit, other = s["fit_split"], next((k[:-len("_ece_before")] for k in s if k.endswith("_ece_before")), None)
        row = {"temperature": s["temperature"], f"{fit} ECE % before": 100 * s["ece_before"],
               f"{fit} ECE % after": 100 * s["ece_after"]}
        if other:
            row |= {f"{other} ECE % before": 100 * s[f"{other}_ece_before"],
                    f"{other} ECE % after": 100 * s[f"{other}_ece_after"]}
        rows[name] = row
    return pd.DataFrame(rows).T.round(2) if rows else None


def class_mapping(scores: Scores) -> pd.DataFrame | None:
    """How the model's classes met the split's, by name: one row per class of either, with its model output and
    split label, the split's images of it, and how it was scored; None when the model's outputs are the split's
    classes in the same order (nothing was mapped)."""
    mapping = scores.mapping
    if mapping.identity:
        return None
    images = {**scores.split.counts(), **scores.dropped}
    how = {**dict.fromkeys(mapping.shared, "scored"), **dict.fromkeys(mapping.dropped, "dropped: the model lacks it"),
           **dict.fromkeys(mapping.model_only, "never predicted: the split lacks it")}
    names = list(mapping.data_classes) + list(mapping.model_only)
    model, data = list(mapping.model_classes), list(mapping.data_classes)
    return pd.DataFrame({"model output": pd.array([model.index(c) if c in model else None for c in names], "Int64"),
                         "split label": pd.array([data.index(c) if c in data else None for c in names], "Int64"),
                         "images": pd.array([images.get(c) for c in names], "Int64"),
                         "scoring": [how[c] for c in names]}, index=pd.Index(names, name="class"))


def per_class(metrics: dict) -> pd.DataFrame:
    """Precision, recall and F1 (%) and the support of every class, from ``classification_metrics``."""
    table = pd.DataFrame(metrics["per_class"]).T
    return table.assign(**{c: 100 * table[c] for c in ("precision", "recall", "f1")}).astype(
        {"support": int}).round(1)


def failures(records: list[dict]) -> pd.DataFrame | None:
    """The files that gave no prediction, with why (``{file, error}`` records); None when there are none."""
    return pd.DataFrame(records, columns=["file", "error"]) if records else None


def smoother_search(scores: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """``temporal.smoother_scores`` of the validation clips to read: for no smoothing and the best setting of each
    other kind (by mean macro-F1), the mean over the clips of each metric (accuracy and macro-F1 in %, flicker in
    label changes per second, the onset delay in seconds) and which one was chosen."""
    means = scores.groupby(["smoother", "tau", "margin"], sort=False)[["accuracy", "macro_f1", "flicker",
                                                                        "delay_s"]].mean().reset_index()
    best = means.loc[means.groupby("smoother", sort=False)["macro_f1"].idxmax()]
    best = best.assign(chosen=[(r.tau, r.margin) == (chosen["tau"], chosen["margin"]) for r in best.itertuples()])
    best[["accuracy", "macro_f1"]] *= 100
    return best.rename(columns={"tau": "τ (s)", "margin": "margin", "accuracy": "accuracy %",
                                "macro_f1": "macro-F1 %", "flicker": "flicker (/s)", "delay_s": "delay (s)"}
                       ).round(2).set_index("smoother")


def video_stages(groups: dict[str, list[dict]]) -> pd.DataFrame:
    """Where ``predict_video``'s time went: per stage (``video.STAGES``) and per group of runs (``{name:
    summaries}``, each group's together), its share of the time and the frames per second the pipeline would run
    at if that stage were all it did (frames / seconds); a last row for the whole pipeline."""
    table = pd.DataFrame({"stage": list(STAGES) + ["all"]})
    for name, summaries in groups.items():
        frames = sum(s["frames"] for s in summaries)
        seconds = [sum(s["seconds"][stage] for s in summaries) for stage in STAGES]
        seconds.append(sum(seconds))
        table[f"{name}: share"] = [f"{100 * t / seconds[-1]:.0f} %" for t in seconds]
        table[f"{name}: frames/s"] = [round(frames / t, 1) if t > 0 else float("inf") for t in seconds]
    return table
