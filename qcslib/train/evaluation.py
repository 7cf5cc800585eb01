"""Scoring the base branch: ``predict`` (probabilities), ``evaluate`` (metrics) and ``evaluate_checkpoint``
(a saved model, ours or the authors', on a dataset split). Always fp32 unless asked: these numbers pick
checkpoints and fill tables, so they are computed as the official evaluation computes them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..analysis.metrics import classification_metrics
from ..data.datasets import ImageDataset
from ..data.sources import Split, load_split, require_whole, verify_images
from ..data.transforms import build_transforms, recipe_for
from ..models.qcs import QCSNet
from ..models.weights import CheckpointError, load_checkpoint
from .config import ConfigError
from .runtime import autocast, autocast_dtype, select_device, to_device


@torch.inference_mode()
def predict(model: nn.Module, split: Split, image_size: int, recipe: str = "rafdb", batch_size: int = 64,
            device: torch.device | str = "cpu", precision: str = "fp32", channels_last: bool = False,
            num_workers: int = 0, cache: np.ndarray | None = None, progress: bool = True) -> np.ndarray:
    """Class probabilities (N, C) of the base branch on every image of ``split``, with the recipe's test
    transform at ``image_size``; float32 numpy."""
    device = torch.device(device)
    dtype = autocast_dtype(precision, device)
    base = model.base if isinstance(model, QCSNet) else model
    was_training = base.training
    base.eval()
    loader = DataLoader(ImageDataset(split, build_transforms(recipe, image_size, train=False), cache),
                        batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    out = []
    for images, _ in tqdm(loader, desc=f"eval {split.dataset}/{split.split}", leave=False, disable=not progress):
        with autocast(device, dtype):
            logits = base(to_device(images, device, channels_last))
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    base.train(was_training)
    return torch.cat(out).numpy()


def evaluate(model: nn.Module, split: Split, image_size: int | None = None, recipe: str = "rafdb",
             **options) -> dict:
    """Metrics of the base branch on ``split`` (``classification_metrics``); ``options`` go to ``predict``.
    ``image_size`` defaults to the model's."""
    if isinstance(model, QCSNet) and model.config.num_classes != len(split.classes):
        raise ConfigError(f"the model has {model.config.num_classes} classes, {split.dataset}/{split.split} has "
                          f"{len(split.classes)} ({', '.join(split.classes)})")
    size = image_size or model.config.image_size
    probabilities = predict(model, split, size, recipe, **options)
    return classification_metrics(split.labels, probabilities.argmax(1), split.classes)


def evaluate_checkpoint(checkpoint: str | Path, dataset: str, root: str | Path, split: str = "test",
                        batch_size: int = 64, device: str = "auto", precision: str = "fp32", num_workers: int = 0,
                        allow_unreadable: bool = False, **data_options) -> dict:
    """Load a checkpoint (ours, or the authors' official release) and evaluate it on a dataset split →
    ``{checkpoint, dataset, split, scored, skipped, load, **classification_metrics}``.

    Our checkpoints carry their class names, which must be the split's, and their transform recipe;
    official ones are taken to use the dataset's own label order and official test transform. A split with
    unreadable images is an error naming them, unless ``allow_unreadable`` (then ``scored`` says how many
    of all were scored)."""
    model, report = load_checkpoint(checkpoint)
    data = verify_images(load_split(dataset, root, split, **data_options))
    if not allow_unreadable:
        require_whole(data, "pass --allow-unreadable")
    names = report.meta.get("classes")
    if names is not None and list(names) != list(data.classes):
        raise CheckpointError(f"{checkpoint}: was trained on classes {names}, but {dataset}/{split} has "
                              f"{list(data.classes)}")
    if model.config.num_classes != len(data.classes):
        raise CheckpointError(f"{checkpoint}: has {model.config.num_classes} classes, {dataset}/{split} has "
                              f"{len(data.classes)} ({', '.join(data.classes)})")
    recipe = recipe_for(dataset, report.meta)
    device = select_device(device)
    metrics = evaluate(model.to(device), data, recipe=recipe, batch_size=batch_size, device=device,
                       precision=precision, num_workers=num_workers)
    skipped = len(data.skipped)
    scored = f"{len(data)} of {len(data) + skipped} images" + (f" ({skipped} unreadable, not scored)" if skipped else "")
    return {"checkpoint": str(checkpoint), "dataset": dataset, "split": split, "scored": scored, "skipped": skipped,
            "load": str(report), **metrics}
