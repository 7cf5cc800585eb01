"""Temporal accuracy of video predictions against a SynthFER clip's per-frame truth, and the choice of a smoother.

``predictions`` is a ``predictions.csv`` of :func:`qcslib.video.predict_video` (one row per face and frame, a
no-face row ``face_id`` empty), ``truth`` a clip's CSV from :mod:`qcslib.data.synthfer.video` (``frame, time_s,
label, phase, ...``); either a path or a DataFrame. The clip's face is the face id present in most frames; a
frame where it is absent counts as wrong. The raw label of a frame is the argmax of its ``p_<class>`` columns
(in column order), the smoothed one its ``label`` column (the argmax of the smoothed probabilities).

A smoother (``smoother_grid``: none, the EMA at a τ, hysteresis at a margin, or both) is applied afterwards to
the raw probabilities (``resmoothed``), chosen on validation clips by the mean of a clip metric (``clip_metrics``:
per-frame accuracy, macro-F1, flicker in label changes per second, onset delay; ``choose_smoother``) and
reported on held-out clips against none, paired over the clips (``smoother_effect``, ``nuisance_table``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from ..video import Hysteresis, Smoother
from .stats import compare, verdict, with_holm


def _table(source, needed: set[str], what: str) -> pd.DataFrame:
    table = source if isinstance(source, pd.DataFrame) else pd.read_csv(source)
    name = "the DataFrame" if isinstance(source, pd.DataFrame) else str(source)
    if missing := sorted(needed - set(table.columns)):
        raise ValueError(f"{name}: {what} lacks the columns {missing}")
    return table


def frame_labels(predictions, truth) -> pd.DataFrame:
    """One row per truth frame: ``frame, time_s, label`` (truth), ``phase``, ``raw`` and ``smoothed`` (predicted
    labels of the clip's face, None where it is absent). A truth frame with no row at all in ``predictions`` is an
    error (predict_video writes a row for every frame, face or not)."""
    pred = _table(predictions, {"frame", "face_id", "label"}, "a predictions table")
    true = _table(truth, {"frame", "time_s", "label", "phase"}, "a truth table")
    probabilities = [c for c in pred.columns if c.startswith("p_")]
    if not probabilities:
        raise ValueError("predictions: no p_<class> columns")
    if missing := sorted(set(true["frame"]) - set(pred["frame"])):
        raise ValueError(f"predictions: no row for truth frames {missing[:5]}{' …' if len(missing) > 5 else ''}")
    faces = pred.dropna(subset=["face_id"])
    main = faces[faces["face_id"] == faces["face_id"].value_counts().index[0]] if len(faces) else faces
    main = main.drop_duplicates("frame").set_index("frame")
    raw = pd.Series(np.asarray([c[2:] for c in probabilities])[np.argmax(main[probabilities].to_numpy(), axis=1)],
                    index=main.index) if len(main) else pd.Series(dtype=object)
    out = true[["frame", "time_s", "label", "phase"]].copy()
    out["raw"] = out["frame"].map(raw).astype(object).where(out["frame"].isin(main.index), None)
    out["smoothed"] = out["frame"].map(main["label"]).astype(object).where(out["frame"].isin(main.index), None)
    return out


def temporal_accuracy(predictions, truth) -> dict:
    """Per-frame accuracy over all truth frames: ``{frames, frames_without_face, raw, smoothed}``, each accuracy
    ``mean_t [ŷ_t = y_t]`` with a frame lacking the face counted as wrong."""
    frames = frame_labels(predictions, truth)
    return {"frames": len(frames), "frames_without_face": int(frames["raw"].isna().sum()),
            "raw": float((frames["raw"] == frames["label"]).mean()),
            "smoothed": float((frames["smoothed"] == frames["label"]).mean())}


def onset_delays(predictions, truth, column: str = "smoothed") -> list[dict]:
    """For each onset (the first frame of a run of ``phase == "onset"``): ``{onset_s, switch_s, label, delay_s}``,
    the label being the expression's class (the truth label in that episode that is not neutral), ``switch_s`` the
    time of the episode's first frame whose truth label is that class (mid-onset, where the envelope reaches half
    its apex), and ``delay_s = t_detect − switch_s`` with ``t_detect`` the first frame at or after the switch, and
    before the next onset, whose ``column`` (``raw`` or ``smoothed``) label is that class. NaN (and ``switch_s``
    NaN where the label never switches) if there is none."""
    if column not in ("raw", "smoothed"):
        raise ValueError(f"column must be 'raw' or 'smoothed', got {column!r}")
    frames = frame_labels(predictions, truth).sort_values("frame").reset_index(drop=True)
    onset = frames["phase"].eq("onset")
    starts = list(frames.index[onset & ~onset.shift(fill_value=False)])
    delays = []
    for k, start in enumerate(starts):
        episode = frames.iloc[start: starts[k + 1] if k + 1 < len(starts) else len(frames)]
        expressed = episode[episode["label"] != "neutral"]
        label = expressed["label"].iloc[0] if len(expressed) else None
        switch_s = float(expressed["time_s"].iloc[0]) if len(expressed) else math.nan
        after = episode[episode["time_s"] >= switch_s]
        hits = after[after[column] == label] if label is not None else after.iloc[:0]
        delays.append({"onset_s": float(frames["time_s"][start]), "switch_s": switch_s, "label": label,
                       "delay_s": float(hits["time_s"].iloc[0]) - switch_s if len(hits) else math.nan})
    return delays


def _detected(delays: list[dict]) -> list[float]:
    return [d["delay_s"] for d in delays if not math.isnan(d["delay_s"])]


def resmoothed(predictions, tau: float, margin: float = 0.0) -> pd.DataFrame:
    """``predictions`` (a ``predictions.csv``) with its ``smoothed_<class>`` columns (where it has them) and its
    ``label`` recomputed by smoothing the raw ``p_<class>`` columns again with time constant ``tau`` seconds
    (``video.Smoother``, per face id, in frame order), then labelling with hysteresis of ``margin``
    (``video.Hysteresis``; 0: the argmax)."""
    table = _table(predictions, {"frame", "time_s", "face_id", "label"}, "a predictions table").copy()
    probabilities = [c for c in table.columns if c.startswith("p_")]
    names, smoother, labeller = np.asarray([c[2:] for c in probabilities]), Smoother(tau), Hysteresis(margin)
    faces = table.sort_values("frame").dropna(subset=["face_id"])
    smoothed = np.array([smoother(face, time, p) for face, time, p in
                         zip(faces["face_id"], faces["time_s"], faces[probabilities].to_numpy())]).reshape(
        len(faces), len(names))
    labels = [labeller(face, p) for face, p in zip(faces["face_id"], smoothed)]
    table.loc[faces.index, "label"] = names[labels] if len(faces) else []
    if all(f"smoothed_{n}" in table for n in names):
        table.loc[faces.index, [f"smoothed_{n}" for n in names]] = smoothed
    return table


def flicker(frames: pd.DataFrame, column: str = "smoothed") -> float:
    """Label changes per second of ``frame_labels``' ``column``: the frames whose label differs from the previous
    frame's (a missing face counts as a label of its own), over the clip's duration."""
    labels = frames.sort_values("frame")[column].fillna("(no face)").to_numpy()
    seconds = float(frames["time_s"].max() - frames["time_s"].min())
    return float((labels[1:] != labels[:-1]).sum() / seconds) if seconds > 0 else 0.0


def clip_metrics(predictions, truth, column: str = "smoothed") -> dict:
    """One clip's labels in ``column`` against its truth: per-frame ``accuracy``, ``macro_f1`` over the classes
    the truth or the labels hold (scikit-learn; a missing face is a wrong label), ``flicker`` (changes per second)
    and ``delay_s``, the median onset delay over the detected onsets (``onset_delays``; NaN: none detected)."""
    frames = frame_labels(predictions, truth)
    predicted = frames[column].fillna("(no face)")
    delays = _detected(onset_delays(predictions, truth, column))
    return {"accuracy": temporal_accuracy(predictions, truth)[column],
            "macro_f1": float(f1_score(frames["label"], predicted, average="macro", zero_division=0)),
            "flicker": flicker(frames, column), "delay_s": float(np.median(delays)) if delays else math.nan}


def smoother_grid(taus: list[float], margins: list[float]) -> list[dict]:
    """The smoothers compared: none; the EMA at each τ > 0; hysteresis at each margin > 0; and each pair →
    ``[{smoother, tau, margin}]``."""
    taus, margins = [t for t in taus if t > 0], [m for m in margins if m > 0]
    return ([{"smoother": "none", "tau": 0.0, "margin": 0.0}]
            + [{"smoother": "ema", "tau": t, "margin": 0.0} for t in taus]
            + [{"smoother": "hysteresis", "tau": 0.0, "margin": m} for m in margins]
            + [{"smoother": "ema + hysteresis", "tau": t, "margin": m} for t in taus for m in margins])


def smoother_scores(results: list[dict], grid: list[dict]) -> pd.DataFrame:
    """``clip_metrics`` of every clip of ``results`` (``predict_video`` summaries with their ``truth``) relabelled
    by every smoother of ``grid`` (``resmoothed``) → one row per smoother and clip."""
    rows = []
    for choice in grid:
        for clip, r in enumerate(results):
            table = resmoothed(Path(r["out"]) / "predictions.csv", choice["tau"], choice["margin"])
            rows.append({**choice, "clip": clip, **clip_metrics(table, r["truth"])})
    return pd.DataFrame(rows)


def choose_smoother(scores: pd.DataFrame, metric: str = "macro_f1") -> dict:
    """The smoother of ``smoother_scores`` (on validation clips) with the highest mean ``metric`` over the clips;
    on a tie the first in grid order (none first, then the simplest) → ``{smoother, tau, margin}``."""
    means = scores.groupby(["smoother", "tau", "margin"], sort=False)[metric].mean()
    smoother, tau, margin = means.idxmax()
    return {"smoother": smoother, "tau": float(tau), "margin": float(margin)}


def smoother_effect(scores: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """``chosen`` against no smoothing on the clips of ``smoother_scores`` (held-out clips), per metric: the two
    means and the paired difference over clips with its 95 % t-interval (``stats.compare``, the clip in the seed's
    place; the delay over the clips where both detected an onset), one Holm family, one row per metric (the
    index; the scores rounded to 0.01). A metric no clip has (no onset detected) says so."""
    pick = (scores["tau"] == chosen["tau"]) & (scores["margin"] == chosen["margin"])
    none = scores["smoother"] == "none"
    metrics = ("accuracy", "macro_f1", "flicker", "delay_s")
    compared = {}
    for metric in metrics:
        long = pd.concat([scores[pick].assign(variant="chosen"), scores[none].assign(variant="none")])
        long = long.rename(columns={"clip": "seed"})[["seed", "variant", metric]].dropna()
        if set(long["variant"]) == {"chosen", "none"}:
            compared[metric] = compare(long, "chosen", "none", metric=metric)
    compared = dict(zip(compared, with_holm(list(compared.values()))))
    rows = []
    for metric in metrics:
        scale, unit = {"flicker": (1, "/s"), "delay_s": (1, "s")}.get(metric, (100, "points"))
        c = compared.get(metric)
        rows.append({"metric": metric, "none": scale * scores.loc[none, metric].mean(),
                     "chosen": scale * scores.loc[pick, metric].mean(), "clips": c["seeds"] if c else 0,
                     "chosen − none": verdict(c, scale=scale, unit=unit, over="clips") if c else
                     "no clip has it with and without the smoother (no onset detected)"})
    return pd.DataFrame(rows).round(2).set_index("metric")


def held_out(results: dict[float, list[dict]], chosen: dict) -> dict[float, pd.DataFrame]:
    """``smoother_scores`` of no smoothing and of ``chosen`` on the held-out clips read at each nuisance strength
    (``{strength: predict_video summaries}``)."""
    grid = smoother_grid([], [])  # none
    grid += [chosen] if (chosen["tau"], chosen["margin"]) != (0, 0) else []
    return {strength: smoother_scores(read, grid) for strength, read in results.items()}


def nuisance_table(scores: dict[float, pd.DataFrame], chosen: dict) -> pd.DataFrame:
    """Per nuisance strength (``{strength: smoother_scores of the held-out clips with none and chosen}``): the
    mean per-frame accuracy, macro-F1 and flicker without smoothing and with ``chosen``, and chosen − none in
    accuracy paired over the clips with its unadjusted 95 % interval, the strengths one Holm family; one row per
    strength (the index)."""
    compared, rows = [], []
    for strength, table in scores.items():
        pick = (table["tau"] == chosen["tau"]) & (table["margin"] == chosen["margin"])
        none = table["smoother"] == "none"
        long = pd.concat([table[pick].assign(variant="chosen"), table[none].assign(variant="none")])
        compared.append(compare(long.rename(columns={"clip": "seed"}), "chosen", "none", metric="accuracy"))
        row = {"nuisance": strength}
        for metric, scale, unit in (("accuracy", 100, "%"), ("macro_f1", 100, "%"), ("flicker", 1, "/s")):
            for name, where in (("none", none), ("chosen", pick)):
                row[f"{metric} {name} ({unit})"] = scale * table.loc[where, metric].mean()
        rows.append(row)
    for row, c in zip(rows, with_holm(compared)):
        row["accuracy: chosen − none"] = verdict(c, over="clips")
    return pd.DataFrame(rows).round(2).set_index("nuisance")
