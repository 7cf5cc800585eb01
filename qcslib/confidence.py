"""Calibrated confidence for checkpoints: a temperature fitted on a held-out split (``calibration``; the
formulas, ECE and temperature scaling, are in ``analysis.calibration``), stored in the checkpoint, and applied by
wrapping the model (``Tempered``: ``logits / T``).

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
import torch
from torch import nn

from .analysis.calibration import expected_calibration_error, fit_temperature, negative_log_likelihood, scaled
from .data.sources import DataError, load_split, require_whole, verify_images
from .models.weights import FORMAT, CheckpointError, load_checkpoint, read_torch_file
from .train.evaluation import score_checkpoint
from .train.runtime import select_device


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


def checkpoint_data(checkpoint: str | Path, stored, dataset: str | None, root: str | Path | None,
                    purpose: str) -> tuple[str, str | Path, dict]:
    """The dataset, root and data options to score ``checkpoint`` (its file read as ``stored``) on: ``dataset`` and
    ``root`` as given, else those of its stored training config (a relative root taken from the current directory,
    as training took it); the stored ``data_options`` only for the dataset it was trained on. A DataError naming
    the file when neither gives both (``purpose``: what for, and what to pass)."""
    trained = stored.get("train_config") if isinstance(stored, dict) and isinstance(
        stored.get("train_config"), dict) else {}
    dataset, root = dataset or trained.get("dataset"), root or trained.get("data_root")
    if not dataset or not root:
        raise DataError(f"{checkpoint}: stores no training dataset/data_root to {purpose}")
    return dataset, root, (trained.get("data_options") or {}) if dataset == trained.get("dataset") else {}


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
    stored, _ = read_torch_file(checkpoint)
    if not _ours(stored):
        raise CheckpointError(f"{checkpoint}: not a qcslib checkpoint; calibrate writes its temperature into one "
                              "(an official checkpoint: train or convert one of ours)")
    dataset, root, options = checkpoint_data(checkpoint, stored, dataset, root, "calibrate on; pass them")
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
