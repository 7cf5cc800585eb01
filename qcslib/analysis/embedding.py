"""Embeddings of the base branch, their t-SNE, and two numbers for how well they separate the classes.

The embedding is what the base classifier reads: ``e = SE(z_cls)``, the squeeze-excited class token
after the encoder's final LayerNorm, so that ``logits = head(e)``. Both scores work on standardised
features (each dimension to zero mean and unit variance), so that no single wide dimension rules the
Euclidean distances:

- ``silhouette``: scikit-learn's ``silhouette_score``, ``mean_i (b_i − a_i) / max(a_i, b_i)`` with
  ``a_i`` the mean distance to i's own class and ``b_i`` to the nearest other class; in [−1, 1].
- ``knn_accuracy``: the accuracy of a k-nearest-neighbour vote, by stratified cross-validation
  (``StratifiedKFold``, shuffled with ``seed``; the scaler is fitted on each training fold only).

``features_by_model``, ``scores_by_model`` and ``tsne_by_model`` do the same for several models at once, as
notebook 05 compares the baseline and QCS.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader

from ..data.datasets import ImageDataset
from ..data.sources import Split
from ..data.transforms import build_transforms
from ..models.qcs import QCSNet


def extract_features(model: nn.Module, split: Split, image_size: int, recipe: str = "rafdb", batch_size: int = 64,
                     device: torch.device | str = "cpu", cache: np.ndarray | None = None) -> np.ndarray:
    """The base branch's embedding ``e = SE(z_cls)`` (N, D) of every image of ``split``, with the recipe's test
    transform at ``image_size``; float32 numpy. It is the input of the classifier, ``logits = head(e)``:
    ``forward_head(forward_features(x), pre_logits=True)``."""
    device = torch.device(device)
    base = model.base if isinstance(model, QCSNet) else model
    was_training = base.training
    base.eval()
    loader = DataLoader(ImageDataset(split, build_transforms(recipe, image_size, train=False), cache),
                        batch_size=batch_size)
    out = []
    try:
        with torch.inference_mode():
            for images, _ in loader:
                out.append(base.forward_head(base.forward_features(images.to(device)), pre_logits=True).float().cpu())
    finally:
        base.train(was_training)
    return torch.cat(out).numpy()


def tsne_2d(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of ``features`` (N, D) → (N, 2), PCA-initialised and seeded. The perplexity is clipped to
    ``(N − 1) / 3``, since scikit-learn looks at the ``3 · perplexity`` nearest neighbours, so small N works
    (N ≥ 3)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) < 3:
        raise ValueError(f"t-SNE needs features of shape (N, D) with N >= 3, got {features.shape}")
    perplexity = min(perplexity, (len(features) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def embedding_scores(features: np.ndarray, labels: np.ndarray, k: int = 5, seed: int = 0) -> dict:
    """→ ``{silhouette, knn_accuracy, k, folds}`` on standardised features (see the module docstring).

    ``folds = min(5, smallest class size)``; ``k`` is clipped to the smallest training fold. Every class needs at
    least 2 samples, and there must be at least 2 classes.
    """
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(f"need features (N, D) and labels (N,), got {features.shape} and {labels.shape}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < 2:
        raise ValueError(f"need at least 2 classes with at least 2 samples each, got counts "
                         f"{dict(zip(classes.tolist(), counts.tolist()))}")
    folds = int(min(5, counts.min()))
    k = int(min(k, len(labels) - -(-len(labels) // folds)))  # the smallest training fold: N − ⌈N / folds⌉
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(k))
    accuracy = cross_val_score(knn, features, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return {"silhouette": float(silhouette_score(StandardScaler().fit_transform(features), labels)),
            "knn_accuracy": float(accuracy.mean()), "k": k, "folds": folds}


def features_by_model(models: dict[str, nn.Module], split: Split, recipe: str = "rafdb",
                      device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """``extract_features`` of ``split`` for each ``{name: model}``, each at its own image size."""
    return {name: extract_features(model, split, model.config.image_size, recipe, device=device)
            for name, model in models.items()}


def scores_by_model(features: dict[str, np.ndarray], labels: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """``embedding_scores`` of each model's features → one row per model (silhouette, knn_accuracy, k, folds)."""
    return pd.DataFrame.from_dict({name: embedding_scores(f, labels, seed=seed) for name, f in features.items()},
                                  orient="index")


def tsne_by_model(features: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """``tsne_2d`` of each model's features."""
    return {name: tsne_2d(f, seed=seed) for name, f in features.items()}
