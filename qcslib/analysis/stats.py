"""Comparisons over seeds: the paired difference of two variants with a 95 % t-interval, and its reading.

For the seeds s that both variants ran (the same seed gives both the same initialisation, data order and
val split), ``d_s = m_A(s) − m_B(s)``; the interval is ``d̄ ± t_{0.975, n−1} · sd(d) / √n`` (scipy's
paired t-test). A comparison whose interval contains 0 reads "no detectable difference"; with fewer than
two seeds there is no interval and no conclusion.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def compare(runs: pd.DataFrame, variant: str, reference: str, metric: str = "best_test_accuracy",
            confidence: float = 0.95) -> dict:
    """``variant − reference`` on ``metric`` over their shared seeds (``runs``: one row per variant and seed)
    → ``{variant, reference, metric, seeds, mean_diff, ci_low, ci_high, ahead, p_value}``; ``ahead`` counts
    the seeds where the variant is ahead. With fewer than 2 seeds the interval and p are NaN; when every
    seed gives the same difference the interval is that point."""
    wide = runs.pivot(index="seed", columns="variant", values=metric)
    missing = [v for v in (variant, reference) if v not in wide]
    if missing:
        raise ValueError(f"no {', '.join(map(repr, missing))} runs to compare; variants: {', '.join(wide.columns)}")
    pair = wide[[variant, reference]].dropna()
    diff = (pair[variant] - pair[reference]).to_numpy()
    n = len(diff)
    low = high = p = np.nan
    spread = np.ptp(diff) > 1e-9 * max(1.0, np.abs(diff).max()) if n else False  # float noise is no spread
    if n >= 2 and spread:
        test = stats.ttest_rel(pair[variant], pair[reference])
        low, high = test.confidence_interval(confidence)
        p = test.pvalue
    elif n >= 2:
        low = high = diff[0]
    return {"variant": variant, "reference": reference, "metric": metric, "seeds": n,
            "mean_diff": float(diff.mean()) if n else np.nan, "ci_low": float(low), "ci_high": float(high),
            "ahead": int((diff > 0).sum()), "p_value": float(p)}


def verdict(c: dict, scale: float = 100.0, unit: str = "points", over: str = "seeds") -> str:
    """``compare``'s result in one sentence that follows its interval; ``over`` names what was paired."""
    name = f"{c['variant']} − {c['reference']}"
    if c["seeds"] < 2:
        return (f"{name}: {scale * c['mean_diff']:+.2f} {unit} on {c['seeds']} {over.removesuffix('s')}(s), too few for an "
                f"interval, so no conclusion")
    interval = f"95 % interval [{scale * c['ci_low']:+.2f}, {scale * c['ci_high']:+.2f}] {unit}, {c['seeds']} {over}"
    if c["ci_low"] <= 0 <= c["ci_high"]:
        return f"{name}: no detectable difference ({scale * c['mean_diff']:+.2f} {unit}; {interval})"
    direction = "ahead of" if c["mean_diff"] > 0 else "behind"
    return f"{c['variant']} is {direction} {c['reference']} by {abs(scale * c['mean_diff']):.2f} {unit} ({interval})"
