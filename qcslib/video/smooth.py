"""Smoothing a face's predictions over time: its probabilities (``Smoother``), then its label (``Hysteresis``).

Per face id, an exponential moving average with time constant τ seconds,
``p_t = p_{t−1} + (1 − exp(−Δt/τ)) (x_t − p_{t−1})``, Δt the time since that face's previous frame; it depends on
time, not on the frame rate. The first frame of a face, and τ = 0, give ``p = x``.

Hysteresis keeps a face's label ``c`` until another class leads it by more than a margin m:
``c_t = argmax p_t`` if ``max p_t − p_t[c_{t−1}] > m``, else ``c_{t−1}``. A label that flickers between two close
classes holds; a clear change passes at once, with no lag. m = 0 gives the argmax.
"""
from __future__ import annotations

import math

import numpy as np


def check_tau(tau: float) -> None:
    """Raise ValueError unless ``tau`` is a finite number of seconds >= 0."""
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"--smooth must be a finite number >= 0 seconds, got {tau}")


class Smoother:
    """Per-key EMA in time: ``p_t = p_{t−1} + (1 − exp(−Δt/τ)) (x_t − p_{t−1})``; the first value and τ = 0 give x."""

    def __init__(self, tau: float):
        check_tau(tau)
        self.tau = tau
        self.state: dict = {}

    def __call__(self, key, time: float, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if key in self.state and self.tau > 0:
            t, p = self.state[key]
            x = p + (1 - math.exp(-(time - t) / self.tau)) * (x - p)
        self.state[key] = (time, x)
        return x


def check_margin(margin: float) -> None:
    """Raise ValueError unless ``margin`` is a number in [0, 1)."""
    if not (math.isfinite(margin) and 0 <= margin < 1):
        raise ValueError(f"--hysteresis must be a margin in [0, 1), got {margin}")


class Hysteresis:
    """Per-key label: ``argmax p`` when it leads the key's current label by more than ``margin``, else that
    label; a key's first value, and margin 0, give the argmax."""

    def __init__(self, margin: float):
        check_margin(margin)
        self.margin = margin
        self.state: dict = {}

    def __call__(self, key, p: np.ndarray) -> int:
        p = np.asarray(p)
        best, current = int(p.argmax()), self.state.get(key)
        if current is None or p[best] - p[current] > self.margin:
            current = best
        self.state[key] = current
        return current
