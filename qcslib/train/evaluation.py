"""Scoring the base branch: ``predict`` (probabilities), ``score`` / ``evaluate`` (metrics, on the classes the
model shares with the split) and ``evaluate_checkpoint`` (a saved model, ours or the authors', on a split of the
dataset it was trained on or of another, its classes matched by name). Always fp32 unless asked: these numbers pick
checkpoints and fill tables, so they are computed as the official evaluation computes them."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..analysis.calibration import expected_calibration_error, scaled
from ..analysis.metrics import classification_metrics
from ..data.datasets import ImageDataset
from ..data.sources import (ClassMapping, DataError, Split, checkpoint_classes, class_mapping, load_split,
                            require_whole, verify_images)
from ..data.transforms import build_transforms, recipe_for
from ..models.qcs import QCSNet
from ..models.weights import CheckpointError, LoadReport, load_checkpoint
from .config import ConfigError
from .runtime import autocast, autocast_dtype, select_device, to_device


@torch.inference_mode()
def predict(model: nn.Module, split: Split, image_size: int, recipe: str = "rafdb", batch_size: int = 64,
            device: torch.device | str = "cpu", precision: str = "fp32", channels_last: bool = False,
            num_workers: int = 0, cache: np.ndarray | None = None, progress: bool = True,
            columns: list[int] | None = None) -> np.ndarray:
    """Class probabilities (N, C) of the base branch on every image of ``split``, with the recipe's test
    transform at ``image_size``; float32 numpy. ``columns``: the softmax over those outputs only (in that order),
    C = len(columns). The model is scored in eval mode and left in the mode it came in, also when this raises."""
    device = torch.device(device)
    dtype = autocast_dtype(precision, device)
    base = model.base if isinstance(model, QCSNet) else model
    was_training = base.training
    base.eval()
    loader = DataLoader(ImageDataset(split, build_transforms(recipe, image_size, train=False), cache),
                        batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    out = []
    try:
        for images, _ in tqdm(loader, desc=f"eval {split.dataset}/{split.split}", leave=False, disable=not progress):
            with autocast(device, dtype):
                logits = base(to_device(images, device, channels_last))
            if columns is not None:
                logits = logits[:, columns]
            out.append(torch.softmax(logits.float(), dim=1).cpu())
    finally:  # an error (or Ctrl-C) leaves the model in the mode it came in
        base.train(was_training)
    return torch.cat(out).numpy()


@dataclass(frozen=True)
class Scores:
    """What ``score`` returns: a model's predictions on the images of a split that it can be scored on."""

    split: Split                 # the scored images, labelled in ``mapping.shared`` order (its ``classes``)
    probabilities: np.ndarray    # (N, len(mapping.shared)) float32: the softmax over the shared classes' logits
    mapping: ClassMapping        # the model's classes matched to the split's
    dropped: dict[str, int]      # each class of the split the model lacks -> its images (not scored)
    metrics: dict                # ``classification_metrics`` over the shared classes
    trained_on: str | None = None  # the dataset the model was trained on, where known (``score_checkpoint``)


def on_shared_classes(split: Split, mapping: ClassMapping) -> Split:
    """The images of ``split`` whose class the model has (``mapping.shared``), relabelled by their position there;
    ``excluded`` counts the others by class. ``split`` itself when the mapping is the identity."""
    if mapping.identity:
        return split
    relabel = np.zeros(len(split.classes), dtype=np.int64)
    relabel[list(mapping.data_labels)] = np.arange(len(mapping.shared))
    keep = _shared_images(split, mapping)
    counts = split.counts()
    left_out = {f"class {name}: not a class of the model": counts[name] for name in mapping.dropped if counts[name]}
    return replace(split.subset(keep), classes=list(mapping.shared), labels=relabel[split.labels[keep]],
                   excluded={**split.excluded, **left_out}, skipped=list(split.skipped))


def _shared_images(split: Split, mapping: ClassMapping) -> np.ndarray:
    """The indices of ``split``'s images whose class is one of ``mapping.shared``."""
    return np.flatnonzero(np.isin(split.labels, mapping.data_labels))


def score(model: nn.Module, split: Split, mapping: ClassMapping | None = None, image_size: int | None = None,
          recipe: str = "rafdb", cache: np.ndarray | None = None, **options) -> Scores:
    """The base branch's predictions and metrics on ``split``; ``options`` go to ``predict``, ``image_size``
    defaults to the model's. ``mapping`` None: the model's outputs are the split's classes in its order.

    With a ``mapping`` (``class_mapping(model classes, split.classes)``) this is the standard cross-dataset
    protocol: only the images of a class the model also has are scored, and the prediction is the argmax of the
    model's probabilities restricted to the shared classes (``probabilities`` is the softmax of their logits, the
    model's probabilities renormalised over them); the metrics are over the shared classes, and ``dropped``
    counts the images left out."""
    if mapping is None:
        if isinstance(model, QCSNet) and model.config.num_classes != len(split.classes):
            raise ConfigError(f"the model has {model.config.num_classes} classes, {split.dataset}/{split.split} has "
                              f"{len(split.classes)} ({', '.join(split.classes)})")
        mapping = class_mapping(split.classes, split.classes)
    elif isinstance(model, QCSNet) and model.config.num_classes != len(mapping.model_classes):
        raise ConfigError(f"the model has {model.config.num_classes} classes, the mapping names "
                          f"{len(mapping.model_classes)} ({', '.join(mapping.model_classes)})")
    scored = on_shared_classes(split, mapping)
    if not len(scored):
        raise DataError(f"{split.dataset}/{split.split}: no image is of a class the model has "
                        f"({', '.join(mapping.shared)})")
    if cache is not None and scored is not split:
        cache = cache[_shared_images(split, mapping)]
    size = image_size or model.config.image_size
    columns = None if mapping.identity else list(mapping.model_columns)
    probabilities = predict(model, scored, size, recipe, cache=cache, columns=columns, **options)
    counts = split.counts()
    return Scores(scored, probabilities, mapping, {name: counts[name] for name in mapping.dropped},
                  classification_metrics(scored.labels, probabilities.argmax(1), scored.classes))


def evaluate(model: nn.Module, split: Split, image_size: int | None = None, recipe: str = "rafdb",
             mapping: ClassMapping | None = None, **options) -> dict:
    """Metrics of the base branch on ``split`` (``classification_metrics``): ``score(...).metrics``; with a
    ``mapping``, on the shared classes only."""
    return score(model, split, mapping, image_size, recipe, **options).metrics


def checkpoint_mapping(report: LoadReport, data: Split, trained_on: str | None = None) -> ClassMapping:
    """How a loaded checkpoint's classes meet ``data``'s, by name (``class_mapping``). Its classes are
    ``checkpoint_classes(report, trained_on, data.classes)``: the names it stores (ours), else those of
    ``trained_on`` (the dataset an official one was trained on, a key of ``DATASET_CLASSES``), else ``data``'s own
    order. One-line ``CheckpointError`` when those classes cannot be settled (``checkpoint_classes``) or when fewer
    than 2 classes are shared."""
    names = checkpoint_classes(report, trained_on, list(data.classes))
    try:
        return class_mapping(names, data.classes)
    except ValueError as e:
        raise CheckpointError(f"{report.path} on {data.dataset}/{data.split}: {e}") from None


def score_checkpoint(model: nn.Module, report: LoadReport, data: Split, trained_on: str | None = None,
                     **options) -> Scores:
    """A loaded checkpoint scored on ``data`` (``score``), its classes matched by name (``checkpoint_mapping``),
    with the transform recipe it was trained with: ours store it, an official one takes ``trained_on``'s official
    recipe, else ``data``'s (``recipe_for``). ``options`` go to ``predict``."""
    mapping = checkpoint_mapping(report, data, trained_on)
    scores = score(model, data, mapping, recipe=recipe_for(trained_on or data.dataset, report.meta), **options)
    return replace(scores, trained_on=report.meta.get("dataset") or trained_on or data.dataset)


def scored_text(scores: Scores, skipped: int = 0) -> str:
    """What was scored, in words: ``"2,800 of 3,068 images; dropped the classes the model lacks: contempt (268
    images)"``, with ``(k unreadable, not scored)`` after the counts when ``skipped`` images could not be read."""
    total = len(scores.split) + sum(scores.dropped.values()) + skipped
    text = f"{len(scores.split):,} of {total:,} images" + (f" ({skipped} unreadable, not scored)" if skipped else "")
    if scores.dropped:
        text += "; dropped the classes the model lacks: " + ", ".join(f"{name} ({n:,} images)"
                                                                      for name, n in scores.dropped.items())
    return text


def evaluate_checkpoint(checkpoint: str | Path, dataset: str, root: str | Path, split: str = "test",
                        batch_size: int = 64, device: str = "auto", precision: str = "fp32", num_workers: int = 0,
                        allow_unreadable: bool = False, trained_on: str | None = None, **data_options) -> dict:
    """Load a checkpoint (ours, or the authors' official release) and evaluate it on a dataset split, of the
    dataset it was trained on or another → ``{checkpoint, dataset, split, scored, skipped, load, trained_on,
    classes, dropped, model_only, temperature, ece, **classification_metrics}``.

    ``temperature``: the one ``calibrate`` stored in the checkpoint, or None. ``ece``: the expected calibration
    error (15 bins) of the probabilities ``predict`` gives, i.e. divided by that temperature where there is one;
    then ``ece_unscaled`` is the ECE of the raw softmax too.

    Classes are matched by name (``checkpoint_mapping``): ours carry their class names and their transform recipe;
    official ones are taken to use ``trained_on``'s class order and official test transform (``trained_on`` None:
    ``dataset``'s). Only the images of the shared classes (``classes``, in the split's order) are scored, on the
    model's probabilities of those classes (``score``: the standard cross-dataset protocol); ``dropped`` gives the
    split's other classes and their images, ``model_only`` the model's classes that the split lacks, and
    ``scored`` says it in words. A split with unreadable images is an error naming them, unless
    ``allow_unreadable`` (then ``scored`` says how many of all were scored)."""
    model, report = load_checkpoint(checkpoint)
    data = verify_images(load_split(dataset, root, split, **data_options))
    if not allow_unreadable:
        require_whole(data, "pass --allow-unreadable")
    device = select_device(device)
    scores = score_checkpoint(model.to(device), report, data, trained_on, batch_size=batch_size, device=device,
                              precision=precision, num_workers=num_workers)
    temperature, labels = report.meta.get("temperature"), scores.split.labels
    calibrated = scaled(scores.probabilities, temperature) if temperature else scores.probabilities
    confidence = {"temperature": temperature, "ece": expected_calibration_error(calibrated, labels)} | (
        {"ece_unscaled": expected_calibration_error(scores.probabilities, labels)} if temperature else {})
    return {"checkpoint": str(checkpoint), "dataset": dataset, "split": split,
            "scored": scored_text(scores, len(data.skipped)), "skipped": len(data.skipped), "load": str(report),
            "trained_on": scores.trained_on, "classes": list(scores.mapping.shared), "dropped": scores.dropped,
            "model_only": list(scores.mapping.model_only), **confidence, **scores.metrics}
