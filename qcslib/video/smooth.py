"""Smoothing a face's probabilities over time (``Smoother``).

Per face id, an exponential moving average with time constant τ seconds,
``p_t = p_{t−1} + (1 − exp(−Δt/τ)) (x_t − p_{t−1})``, Δt the time since that face's previous frame; it depends on
time, not on the frame rate. The first frame of a face, and τ = 0, give ``p = x``.
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
