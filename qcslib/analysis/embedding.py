"""Embeddings of the base branch, their t-SNE, and two numbers for how well they separate the classes.

The embedding is what the base classifier reads: ``e = SE(z_cls)``, the squeeze-excited class token
after the encoder's final LayerNorm, so that ``logits = head(e)``. Both scores work on standardised
features (each dimension to zero mean and unit variance, the scaler fitted on the *train* features), so that
no single wide dimension rules the Euclidean distances:

- ``silhouette``: scikit-learn's ``silhouette_score`` of the test features, ``mean_i (b_i − a_i) / max(a_i,
  b_i)`` with ``a_i`` the mean distance to i's own class and ``b_i`` to the nearest other class; in [−1, 1].
- ``knn_accuracy``: the test accuracy of a vote of the k nearest *train* images (``KNeighborsClassifier``
  fitted on the train features). On SynthFER train and test hold different identities, so a test image cannot
  be classified by its own identity's other images, as it could by cross-validation within the test images.

``features_by_model``, ``scores_by_model`` and ``tsne_by_model`` do the same for several models at once, as
notebook 05 compares the baselines and QCS; ``comparisons`` pairs their scores over seeds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader

from ..data.datasets import ImageDataset
from ..data.sources import Split
from ..data.transforms import build_transforms
from ..models.qcs import QCSNet
from .stats import compare, verdict, with_holm


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


def embedding_scores(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                     test_labels: np.ndarray, k: int = 5) -> dict:
    """→ ``{silhouette, knn_accuracy, k}`` of the test features, the scaler and the k-NN fitted on the train
    features (see the module docstring). ``k`` is clipped to the number of train images; the test images need at
    least 2 classes and fewer classes than images (``silhouette_score``)."""
    train_features, train_labels = np.asarray(train_features), np.asarray(train_labels)
    test_features, test_labels = np.asarray(test_features), np.asarray(test_labels)
    for name, f, y in (("train", train_features, train_labels), ("test", test_features, test_labels)):
        if f.ndim != 2 or y.shape != (len(f),):
            raise ValueError(f"need {name} features (N, D) and labels (N,), got {f.shape} and {y.shape}")
    if not 2 <= len(np.unique(test_labels)) < len(test_labels):
        raise ValueError(f"the silhouette needs 2 to N − 1 classes among the N test images, got "
                         f"{len(np.unique(test_labels))} classes in {len(test_labels)} images")
    k = int(min(k, len(train_labels)))
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(k)).fit(train_features, train_labels)
    scaled = knn[0].transform(test_features)
    return {"silhouette": float(silhouette_score(scaled, test_labels)),
            "knn_accuracy": float(knn.score(test_features, test_labels)), "k": k}


def features_by_model(models: dict[str, nn.Module], split: Split, recipe: str = "rafdb",
                      device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """``extract_features`` of ``split`` for each ``{name: model}``, each at its own image size."""
    return {name: extract_features(model, split, model.config.image_size, recipe, device=device)
            for name, model in models.items()}


def scores_by_model(train_features: dict[str, np.ndarray], train_labels: np.ndarray,
                    test_features: dict[str, np.ndarray], test_labels: np.ndarray) -> pd.DataFrame:
    """``embedding_scores`` of each model's train and test features → one row per model (silhouette,
    knn_accuracy, k)."""
    return pd.DataFrame.from_dict({name: embedding_scores(train_features[name], train_labels, f, test_labels)
                                   for name, f in test_features.items()}, orient="index")


SCORE_NAMES = {"knn_accuracy": "k-NN accuracy", "silhouette": "silhouette"}
SCORE_UNITS = {"knn_accuracy": "points", "silhouette": "hundredths of silhouette"}  # both scores × 100
# (variant, reference, score): QCS against each baseline, on both scores; one family (Holm)
COMPARISONS = [("qcs", reference, score) for score in ("knn_accuracy", "silhouette")
               for reference in ("baseline", "baseline_matched")]


def comparisons(scores: pd.DataFrame) -> pd.DataFrame:
    """``COMPARISONS`` whose variants are in ``scores`` (one row per variant and seed: silhouette, knn_accuracy)
    → one row each: ``stats.compare``'s paired difference over seeds, the Holm-adjusted p over these comparisons
    (one family: ``stats.with_holm``), the verdict, and a question naming the score."""
    present = set(scores["variant"])
    asked = [(v, r, m) for v, r, m in COMPARISONS if {v, r} <= present]
    compared = with_holm([compare(scores, v, r, m) for v, r, m in asked])
    return pd.DataFrame([{"comparison": f"{v} − {r} ({m})", "question": f"is QCS's {SCORE_NAMES[m]} higher than "
                          f"{r}'s?", **c, "verdict": verdict(c, unit=SCORE_UNITS[m])}
                         for (v, r, m), c in zip(asked, compared)])


def score_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per variant (in order of appearance): mean and sample std over seeds of the silhouette and the k-NN
    accuracy, as "mean ± std" (silhouette as is, k-NN in %), and the number of seeds."""
    grouped = scores.groupby("variant", sort=False)
    mean, std = grouped[["silhouette", "knn_accuracy"]].mean(), grouped[["silhouette", "knn_accuracy"]].std(ddof=1)

    def cell(m: float, s: float, scale: float, digits: int) -> str:
        return f"{scale * m:.{digits}f}" + (f" ± {scale * s:.{digits}f}" if np.isfinite(s) else "")

    return pd.DataFrame({"silhouette": [cell(m, s, 1, 3) for m, s in zip(mean["silhouette"], std["silhouette"])],
                         "k-NN accuracy %": [cell(m, s, 100, 1) for m, s in zip(mean["knn_accuracy"],
                                                                                std["knn_accuracy"])],
                         "seeds": grouped.size()}, index=mean.index)


def tsne_by_model(features: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """``tsne_2d`` of each model's features."""
    return {name: tsne_2d(f, seed=seed) for name, f in features.items()}
