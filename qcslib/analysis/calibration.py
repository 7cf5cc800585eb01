"""Calibration of a classifier's confidence: the expected calibration error (ECE), reliability tables and
temperature scaling, on the probabilities a model gives (numpy; ``qcslib.confidence`` fits them to checkpoints).

A model is calibrated when, of the images it classifies with confidence ``c = max_k p_k``, a fraction ``c`` is
right. ECE over ``B`` equal-width bins of confidence (15, as Guo et al., ICML 2017), ``B_b`` the images whose
confidence falls in bin b::

    ECE = Σ_b (|B_b| / N) · |acc(B_b) − conf(B_b)|

Temperature scaling divides the logits by one scalar ``T > 0`` fitted to minimise the negative log-likelihood of
held-out images::

    T* = argmin_T  −(1/N) Σ_i log softmax(z_i / T)[y_i]

``T > 1`` softens an over-confident model, ``T < 1`` sharpens an under-confident one; the argmax, and so every
accuracy, is unchanged. Since ``log p = z − logsumexp(z)`` differs from the logits by one constant per image,
``softmax(log p / T) = softmax(z / T)``: T is fitted and applied on the probabilities that ``predict`` returns.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

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
