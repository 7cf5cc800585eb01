"""Temporal accuracy of video predictions against a SynthFER clip's per-frame truth.

``predictions`` is a ``predictions.csv`` of :func:`qcslib.video.predict_video` (one row per face and frame, a
no-face row ``face_id`` empty), ``truth`` a clip's CSV from :mod:`qcslib.data.synthfer.video` (``frame, time_s,
label, phase, ...``); either a path or a DataFrame. The clip's face is the face id present in most frames; a
frame where it is absent counts as wrong. The raw label of a frame is the argmax of its ``p_<class>`` columns
(in column order), the smoothed one its ``label`` column (the argmax of the smoothed probabilities).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..video import Smoother
from .stats import compare, undefined_reason, with_holm


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


def clip_scores(results: list[dict]) -> pd.DataFrame:
    """One row per clip (``results``: ``predict_video`` summaries, each with its clip's ``truth`` CSV added):
    ``clip, frames, frames without face, raw accuracy, smoothed accuracy``, the median delay in seconds from the
    truth label's switch to detection (``onset_delays``) of each over the onsets it detected (NaN: none), and how
    many of the onsets the smoothed one detected."""
    rows = []
    for r in results:
        predictions = Path(r["out"]) / "predictions.csv"
        accuracy = temporal_accuracy(predictions, r["truth"])
        raw, smoothed = (_detected(onset_delays(predictions, r["truth"], c)) for c in ("raw", "smoothed"))
        onsets = len(onset_delays(predictions, r["truth"]))
        rows.append({"clip": Path(r["truth"]).stem, "frames": accuracy["frames"],
                     "frames without face": accuracy["frames_without_face"], "raw accuracy": accuracy["raw"],
                     "smoothed accuracy": accuracy["smoothed"],
                     "raw delay (s)": float(np.median(raw)) if raw else math.nan,
                     "smoothed delay (s)": float(np.median(smoothed)) if smoothed else math.nan,
                     "onsets detected (smoothed)": f"{len(smoothed)} of {onsets}"})
    return pd.DataFrame(rows)


def smoothing_effect(scores: pd.DataFrame) -> dict:
    """Smoothed − raw per-frame accuracy over the clips of ``clip_scores`` (the clip as the unit: frames of one
    clip are not independent), a paired 95 % t-interval (``stats.compare``, the clip in the seed's place)."""
    long = pd.concat([pd.DataFrame({"seed": range(len(scores)), "variant": name, "accuracy": scores[f"{name} accuracy"]})
                      for name in ("smoothed", "raw")])
    return compare(long, "smoothed", "raw", metric="accuracy")


def _difference(c: dict) -> dict:
    """A ``stats.compare`` result with ``p_holm`` (``with_holm``) as three table cells: the difference in points
    with its unadjusted interval, the Holm-adjusted p, and its reading: a difference is declared only where the
    interval excludes 0 and the adjusted p is below 1 − confidence."""
    if (reason := undefined_reason(c, "clips")) is not None:
        return {"smoothed − raw (points)": f"{100 * c['mean_diff']:+.1f}", "Holm p": "n/a",
                "reading": f"interval undefined ({reason})"}
    reading = ("no detectable difference" if c["ci_low"] <= 0 <= c["ci_high"] or c["p_holm"] >= 1 - c["confidence"]
               else "smoothing helps" if c["mean_diff"] > 0 else "smoothing hurts")
    return {"smoothed − raw (points)": f"{100 * c['mean_diff']:+.1f} [{100 * c['ci_low']:+.1f}, "
                                       f"{100 * c['ci_high']:+.1f}]", "Holm p": f"{c['p_holm']:.3f}",
            "reading": reading}


def resmoothed(predictions, tau: float) -> pd.DataFrame:
    """``predictions`` (a ``predictions.csv``) with its ``smoothed_<class>`` columns (where it has them) and its
    ``label`` recomputed by smoothing the raw ``p_<class>`` columns again with time constant ``tau`` seconds
    (``video.Smoother``, per face id, in frame order)."""
    table = _table(predictions, {"frame", "time_s", "face_id", "label"}, "a predictions table").copy()
    probabilities = [c for c in table.columns if c.startswith("p_")]
    names, smoother = np.asarray([c[2:] for c in probabilities]), Smoother(tau)
    faces = table.sort_values("frame").dropna(subset=["face_id"])
    smoothed = np.array([smoother(face, time, p) for face, time, p in
                         zip(faces["face_id"], faces["time_s"], faces[probabilities].to_numpy())]).reshape(
        len(faces), len(names))
    table.loc[faces.index, "label"] = names[smoothed.argmax(1)] if len(faces) else []
    if all(f"smoothed_{n}" in table for n in names):
        table.loc[faces.index, [f"smoothed_{n}" for n in names]] = smoothed
    return table


def smoothing_sweep(results: list[dict], taus: list[float]) -> pd.DataFrame:
    """For each time constant τ: the clips' mean per-frame accuracy smoothed with it (``resmoothed``), its paired
    difference from raw over the clips with an unadjusted 95 % interval (``smoothing_effect``), the p-value
    Holm-adjusted over the τs (one family: ``with_holm``) and the reading it gives (``_difference``), and the
    median delay from the truth label's switch to detection over every detected onset of the clips (how many
    were detected, of how many)."""
    rows, effects = [], []
    for tau in taus:
        scores, delays = [], []
        for r in results:
            table = resmoothed(Path(r["out"]) / "predictions.csv", tau)
            scores.append(temporal_accuracy(table, r["truth"]))
            delays += onset_delays(table, r["truth"])
        found = [d["delay_s"] for d in delays if not math.isnan(d["delay_s"])]
        table = pd.DataFrame({"raw accuracy": [s["raw"] for s in scores],
                              "smoothed accuracy": [s["smoothed"] for s in scores]})
        effects.append(smoothing_effect(table))
        rows.append({"τ (s)": tau, "smoothed accuracy (%)": round(100 * table["smoothed accuracy"].mean(), 1),
                     "raw accuracy (%)": round(100 * table["raw accuracy"].mean(), 1),
                     "median delay (s)": round(float(np.median(found)), 2) if found else math.nan,
                     "onsets detected": f"{len(found)} of {len(delays)}"})
    return pd.DataFrame([{**row, **_difference(c)} for row, c in zip(rows, with_holm(effects))])[
        ["τ (s)", "smoothed accuracy (%)", "raw accuracy (%)", "smoothed − raw (points)", "Holm p", "reading",
         "median delay (s)", "onsets detected"]]
