"""Calibrated confidence: temperature scaling fitted on a held-out split, and the expected calibration error (ECE)
that measures it.

A model is calibrated when, of the images it classifies with confidence ``c = max_k p_k``, a fraction ``c`` is
right. Temperature scaling (Guo et al., ICML 2017) divides the logits by one scalar ``T > 0`` fitted to minimise
the negative log-likelihood of held-out images::

    T* = argmin_T  −(1/N) Σ_i log softmax(z_i / T)[y_i]

``T > 1`` softens an over-confident model, ``T < 1`` sharpens an under-confident one; the argmax, and so every
accuracy, is unchanged. Since ``log p = z − logsumexp(z)`` differs from the logits by one constant per image,
``softmax(log p / T) = softmax(z / T)``: T is fitted and applied on the probabilities that ``predict`` returns.

ECE over ``B`` equal-width bins of confidence (15, as Guo et al.), ``B_b`` the images whose confidence falls in
bin b::

    ECE = Σ_b (|B_b| / N) · |acc(B_b) − conf(B_b)|

``calibrate`` fits T on a checkpoint's val split and stores it in the checkpoint (``temperature``, with what it was
fitted on under ``calibration``); ``load_predictor`` (``predict``) and the exports apply it through
``Tempered``. On SynthFER, val shares train's class-linked background hue and test draws its hues at random, so a
temperature fitted on val can leave test miscalibrated: ``calibrate`` reports the ECE of both splits.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from .models.weights import FORMAT, read_torch_file

BINS = 15
ECE_GOAL = 0.03  # what a deployed model's test ECE should not exceed after scaling
SMALLEST = np.finfo(np.float32).tiny  # log(0) guard: a probability that underflowed in float32


def _check(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if p.ndim != 2 or len(p) != len(y) or not len(y):
        raise ValueError(f"expected probabilities (N, C) and N labels with N ≥ 1, got {p.shape} and {len(y)} labels")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {p.shape[1]}), got {y.min()}..{y.max()}")
    return p, y


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """The reliability table: per equal-width confidence bin ``(low, high]`` (the first includes 0), its
    ``images``, mean ``confidence`` and ``accuracy`` (NaN where empty)."""
    p, y = _check(probabilities, labels)
    confidence, right = p.max(1), p.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        rows.append({"low": edges[b], "high": edges[b + 1], "images": int(inside.sum()),
                     "confidence": confidence[inside].mean() if inside.any() else np.nan,
                     "accuracy": right[inside].mean() if inside.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """ECE = Σ_b (|B_b| / N) · |acc(B_b) − conf(B_b)| over ``bins`` equal-width confidence bins, in [0, 1]."""
    table = reliability(probabilities, labels, bins).dropna()
    return float((table["images"] * (table["accuracy"] - table["confidence"]).abs()).sum() / table["images"].sum())


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``, the probabilities of the logits divided by ``temperature``."""
    if not temperature > 0:
        raise ValueError(f"the temperature must be > 0, got {temperature}")
    z = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), SMALLEST)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """``−(1/N) Σ_i log p_i[y_i]``."""
    p, y = _check(probabilities, labels)
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], SMALLEST)).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """T* minimising the NLL of ``scaled(probabilities, T)`` (scipy's bounded scalar search over log T, T in
    [0.05, 20])."""
    p, y = _check(probabilities, labels)
    found = minimize_scalar(lambda log_t: negative_log_likelihood(scaled(p, np.exp(log_t)), y),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


class Tempered(nn.Module):
    """``module(x) / temperature``: a classifier whose softmax gives the calibrated probabilities. ``config``
    is the wrapped model's, so that code reading ``model.config.image_size`` works on either, and so is its mode."""

    def __init__(self, module: nn.Module, temperature: float):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"the temperature must be > 0, got {temperature}")
        self.module, self.temperature = module, float(temperature)
        self.config = getattr(module, "config", None)
        self.train(module.training)  # in the mode of the model it wraps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) / self.temperature


def tempered(model: nn.Module, meta: dict) -> nn.Module:
    """``model`` wrapped in ``Tempered`` when its checkpoint's ``meta`` (``LoadReport.meta``) stores a temperature,
    else ``model`` itself."""
    return Tempered(model, meta["temperature"]) if meta.get("temperature") else model


def _summary(probabilities: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    after = scaled(probabilities, temperature)
    return {"ece_before": expected_calibration_error(probabilities, labels),
            "ece_after": expected_calibration_error(after, labels),
            "nll_before": negative_log_likelihood(probabilities, labels),
            "nll_after": negative_log_likelihood(after, labels)}


def _ours(stored) -> bool:
    return isinstance(stored, dict) and stored.get("format") == FORMAT and "config" in stored


def ours(checkpoint: str | Path) -> bool:
    """Whether ``checkpoint`` is a qcslib checkpoint (one ``calibration`` can write), not an official one."""
    return _ours(read_torch_file(checkpoint)[0])


@dataclass(frozen=True)
class Calibration:
    """What ``calibration`` found: the ``summary`` that ``calibrate`` returns, and ``scored``, each split's
    ``(probabilities, labels)`` with the model's own (uncalibrated) probabilities."""

    summary: dict
    scored: dict[str, tuple[np.ndarray, np.ndarray]]

    def after(self, split: str) -> np.ndarray:
        """``split``'s probabilities with the fitted temperature applied."""
        return scaled(self.scored[split][0], self.summary["temperature"])


def calibration(checkpoint: str | Path, dataset: str | None = None, root: str | Path | None = None,
                fit_split: str = "val", report_split: str | None = "test", device: str = "auto",
                batch_size: int = 256, write: bool = True) -> Calibration:
    """Fit a temperature on ``fit_split`` of ``checkpoint``'s data (by default the dataset and root its training
    config stores) and, with ``write``, store it in the checkpoint (``temperature`` and ``calibration``: the split,
    its image count and the ECE and NLL before and after). The summary: ``{checkpoint, dataset, fit_split,
    temperature, images, ece_before, ece_after, nll_before, nll_after}``, plus ``report_split``'s ECE and NLL
    before and after, prefixed with its name (``test_ece_after``, ...), where given. The fit always starts from
    the model's own logits, so calibrating again replaces the stored temperature. Only qcslib checkpoints are
    written (an official one is an error: its file is the authors')."""
    from .data.sources import DataError, load_split, require_whole, verify_images
    from .models.weights import CheckpointError, load_checkpoint
    from .train.evaluation import score_checkpoint
    from .train.runtime import select_device

    stored, _ = read_torch_file(checkpoint)
    if not _ours(stored):
        raise CheckpointError(f"{checkpoint}: not a qcslib checkpoint; calibrate writes its temperature into one "
                              "(an official checkpoint: train or convert one of ours)")
    trained = stored.get("train_config") if isinstance(stored.get("train_config"), dict) else {}
    dataset, root = dataset or trained.get("dataset"), root or trained.get("data_root")
    if not dataset or not root:
        raise DataError(f"{checkpoint}: stores no training dataset/data_root to calibrate on; pass them")
    options = (trained.get("data_options") or {}) if dataset == trained.get("dataset") else {}
    model, report = load_checkpoint(checkpoint)
    device = select_device(device)
    model.to(device)
    scored = {}
    for name in [fit_split] + ([report_split] if report_split and report_split != fit_split else []):
        data = require_whole(verify_images(load_split(dataset, root, name, **options)), "fix or remove them")
        scores = score_checkpoint(model, report, data, batch_size=batch_size, device=device, progress=False)
        scored[name] = (scores.probabilities, scores.split.labels)
    temperature = fit_temperature(*scored[fit_split])
    summary = {"checkpoint": str(checkpoint), "dataset": dataset, "fit_split": fit_split,
               "temperature": temperature, "images": len(scored[fit_split][1]),
               **_summary(*scored[fit_split], temperature)}
    if len(scored) > 1:
        summary.update({f"{report_split}_{k}": v for k, v in _summary(*scored[report_split], temperature).items()})
    if write:
        stored["temperature"] = temperature
        stored["calibration"] = {k: v for k, v in summary.items() if k != "checkpoint"}
        _replace(Path(checkpoint), stored)
    return Calibration(summary, scored)


def calibrate(checkpoint: str | Path, dataset: str | None = None, root: str | Path | None = None,
              fit_split: str = "val", report_split: str | None = "test", device: str = "auto",
              batch_size: int = 256, write: bool = True) -> dict:
    """``calibration(...)``'s summary (``python -m qcslib calibrate``)."""
    return calibration(checkpoint, dataset, root, fit_split, report_split, device, batch_size, write).summary


def _replace(path: Path, obj: dict) -> None:
    """Write ``obj`` to ``path`` through a temporary file beside it: a reader never sees half a checkpoint."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
