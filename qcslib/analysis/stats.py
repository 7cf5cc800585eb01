"""Comparisons over seeds: the paired difference of two variants with a t-interval, its reading, and Holm's
correction for a family of comparisons.

For the seeds s that both variants ran (the same seed gives both the same initialisation, data order and
val split), ``d_s = m_A(s) − m_B(s)``; the interval at confidence ``c`` is
``d̄ ± t_{(1+c)/2, n−1} · sd(d) / √n`` (scipy's paired t-test). A comparison whose interval contains 0 reads
"no detectable difference". The interval is undefined, and there is no conclusion, with fewer than
``MIN_SEEDS`` seeds (one degree of freedom gives no usable estimate of the spread) or when every seed gives the
same difference (``sd(d) = 0``: a zero-width interval would claim certainty that no data shows).

A family of m comparisons read together (04's table, 09's τ sweep) is corrected by Holm's step-down method
(``holm``): with the p-values sorted, ``p_(1) ≤ … ≤ p_(m)``, the adjusted ``p̃_(i) = max_{j ≤ i} min(1,
(m − j + 1) · p_(j))``; a difference is declared only where ``p̃ < 1 − c``. The intervals themselves stay
unadjusted (per comparison), and say so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

MIN_SEEDS = 3  # fewer paired seeds: no interval


def compare(runs: pd.DataFrame, variant: str, reference: str, metric: str = "best_test_accuracy",
            confidence: float = 0.95) -> dict:
    """``variant − reference`` on ``metric`` over their shared seeds (``runs``: one row per variant and seed)
    → ``{variant, reference, metric, seeds, mean_diff, ci_low, ci_high, ahead, p_value, confidence}``;
    ``ahead`` counts the seeds where the variant is ahead. The interval and p are NaN when undefined (fewer
    than ``MIN_SEEDS`` seeds, or no spread in the differences: see the module docstring)."""
    wide = runs.pivot(index="seed", columns="variant", values=metric)
    missing = [v for v in (variant, reference) if v not in wide]
    if missing:
        raise ValueError(f"no {', '.join(map(repr, missing))} runs to compare; variants: {', '.join(wide.columns)}")
    pair = wide[[variant, reference]].dropna()
    diff = (pair[variant] - pair[reference]).to_numpy()
    n = len(diff)
    low = high = p = np.nan
    spread = np.ptp(diff) > 1e-9 * max(1.0, np.abs(diff).max()) if n else False  # float noise is no spread
    if n >= MIN_SEEDS and spread:
        test = stats.ttest_rel(pair[variant], pair[reference])
        low, high = test.confidence_interval(confidence)
        p = test.pvalue
    return {"variant": variant, "reference": reference, "metric": metric, "seeds": n,
            "mean_diff": float(diff.mean()) if n else np.nan, "ci_low": float(low), "ci_high": float(high),
            "ahead": int((diff > 0).sum()), "p_value": float(p), "confidence": confidence}


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (module docstring) in the order given; NaN p-values (undefined comparisons) stay
    NaN and do not count in the family size m."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    m = len(order)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def with_holm(compared: list[dict]) -> list[dict]:
    """``compare`` results of one family → each with ``p_holm`` (``holm`` over the family) and ``family`` (m, the
    comparisons with a defined p-value) added."""
    adjusted = holm([c["p_value"] for c in compared])
    m = int(np.isfinite(adjusted).sum())
    return [{**c, "p_holm": float(a), "family": m} for c, a in zip(compared, adjusted)]


def interval_label(c: dict) -> str:
    """The interval's name at its confidence level: "95 % interval", "90 % interval", ..."""
    return f"{100 * c['confidence']:g} % interval"


def undefined_reason(c: dict, over: str = "seeds") -> str | None:
    """Why ``compare``'s interval is undefined (None where it is defined)."""
    if c["seeds"] < MIN_SEEDS:
        return f"fewer than {MIN_SEEDS} paired {over}"
    if not np.isfinite(c["ci_low"]):
        return f"every one of the {over} gives the same difference"
    return None


def family_sentence(compared: list[dict], what: str) -> str:
    """How a family of ``with_holm`` results is read, in one sentence: ``"{what}, one family of m: …"``."""
    level = interval_label(compared[0]) if compared else "95 % interval"
    alpha = 1 - compared[0]["confidence"] if compared else 0.05
    defined = max((c["family"] for c in compared), default=0)
    return (f"{what}, one family of {len(compared)}: each interval is an unadjusted {level}; a difference is declared "
            f"only where its Holm-adjusted p (over the {defined} comparisons with an interval) is below {alpha:.2g}")


def verdict(c: dict, scale: float = 100.0, unit: str = "points", over: str = "seeds",
            directions: tuple[str, str] = ("is ahead of", "is behind")) -> str:
    """``compare``'s result in one sentence that follows its interval; ``over`` names what was paired and
    ``directions`` the words for a positive and a negative difference. With ``p_holm`` (``with_holm``), a
    difference whose interval excludes 0 is declared only if it survives Holm's correction, and the interval is
    named unadjusted."""
    name = f"{c['variant']} − {c['reference']}"
    if (reason := undefined_reason(c, over)) is not None:
        return (f"{name}: {scale * c['mean_diff']:+.2f} {unit} on {c['seeds']} {over}, interval undefined ({reason}), "
                f"so no conclusion")
    family = "p_holm" in c
    label = interval_label(c) + (", unadjusted" if family else "")
    interval = f"{label} [{scale * c['ci_low']:+.2f}, {scale * c['ci_high']:+.2f}] {unit}, {c['seeds']} {over}"
    if c["ci_low"] <= 0 <= c["ci_high"]:
        return f"{name}: no detectable difference ({scale * c['mean_diff']:+.2f} {unit}; {interval})"
    holm_text = f"; Holm-adjusted p = {c['p_holm']:.3f} over {c['family']} comparisons" if family else ""
    if family and c["p_holm"] >= 1 - c["confidence"]:
        return (f"{name}: no detectable difference after Holm's correction ({scale * c['mean_diff']:+.2f} {unit}; "
                f"{interval}{holm_text})")
    direction = directions[0] if c["mean_diff"] > 0 else directions[1]
    return (f"{c['variant']} {direction} {c['reference']} by {abs(scale * c['mean_diff']):.2f} {unit} "
            f"({interval}{holm_text})")
