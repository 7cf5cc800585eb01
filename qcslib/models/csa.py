"""Cross Similarity Attention (CSA) as pure functions: query/key tokens of paired images → maps.

Images are indexed 0..3 = anchor ``a``, positive ``p``, negative ``n``, negative2 ``n2`` (DCS has
``a, p`` only). For two images with tokens ``X, Y ∈ R^{N×C}`` (shared query/key projection):

- token distances   ``D[t, u] = ‖X_t − Y_u‖₂``
- similarity        ``S = max(D) − D``
- dissimilarity     ``D̃ = D − min(D)``
- aggregation       ``φ(M)[t] = Σ_u M[t, u] / ‖M[:, u]‖₂``  (rows: own tokens, columns: partner's)

The max and min are taken over the whole batch tensor, as the official code does; with
``per_sample=True`` they are taken per sample. Each map is a softmax over the image's own
tokens, a weight per token that the cross module multiplies into that image's values.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

SIMILAR = ((0, 1), (2, 3))     # a ↔ p and n ↔ n2: same class
DISSIMILAR = ((0, 2), (1, 3))  # a ↔ n and p ↔ n2: different classes
PARTNER = (1, 0, 3, 2)         # the similar partner of each image


def token_distances(x: Tensor, y: Tensor) -> Tensor:
    """``D[b, t, u] = ‖x[b, t] − y[b, u]‖₂``, shape (B, Nx, Ny)."""
    return torch.cdist(x, y)


def _extreme(d: Tensor, reduce: Callable, per_sample: bool) -> Tensor:
    return reduce(d, dim=(1, 2), keepdim=True) if per_sample else reduce(d)


def similarity(d: Tensor, per_sample: bool = False) -> Tensor:
    """``S = max(D) − D``: 0 for the farthest token pair, largest for the closest."""
    return _extreme(d, torch.amax, per_sample) - d


def dissimilarity(d: Tensor, per_sample: bool = False) -> Tensor:
    """``D̃ = D − min(D)``: 0 for the closest token pair."""
    return d - _extreme(d, torch.amin, per_sample)


def aggregate(m: Tensor) -> Tensor:
    """``φ(M)[t] = Σ_u M[t, u] / ‖M[:, u]‖₂`` for M of shape (B, N_own, N_partner) → (B, N_own).

    Each partner token spreads a unit of relation over the image's tokens; a token scores
    high when many partner tokens relate to it more than to the image's other tokens.
    """
    return F.normalize(m, dim=1).sum(dim=2)


def _check(qk: Sequence[Tensor], counts: tuple[int, ...], mode: str) -> None:
    if len(qk) not in counts:
        raise ValueError(f"CSA mode {mode!r} takes {' or '.join(map(str, counts))} images, got {len(qk)}")


def _pair_scores(qk: Sequence[Tensor], pairs, relation: Callable, per_sample: bool) -> list[Tensor]:
    """φ-score of each image against its partner in ``pairs``.

    For a pair (i, j), ``M = relation(D(qk_j, qk_i))`` has j's tokens as rows (the official
    orientation), so image i scores ``φ(Mᵀ)`` and image j scores ``φ(M)``.
    """
    scores = [None] * len(qk)
    for i, j in pairs:
        m = relation(token_distances(qk[j], qk[i]), per_sample)
        scores[i], scores[j] = aggregate(m.transpose(1, 2)), aggregate(m)
    return scores


def csa_s(qk: Sequence[Tensor], per_sample: bool = False) -> list[Tensor]:
    """Similarity only: ``A_x = softmax(φ(S_{x,y}))`` with y the same-class partner (DCS's CSA)."""
    _check(qk, (2, 4), "s")
    return [s.softmax(-1) for s in _pair_scores(qk, SIMILAR[: len(qk) // 2], similarity, per_sample)]


def csa_d(qk: Sequence[Tensor], per_sample: bool = False) -> list[Tensor]:
    """Dissimilarity only: ``A_x = softmax(φ(D̃_{x,z}))`` with z the other-class image (a↔n, p↔n2)."""
    _check(qk, (4,), "d")
    return [d.softmax(-1) for d in _pair_scores(qk, DISSIMILAR, dissimilarity, per_sample)]


def csa_sd(qk: Sequence[Tensor], k: Tensor, per_sample: bool = False) -> list[Tensor]:
    """QCS's CSA: ``A_a = softmax(φ(S_pa) + k·φ(D̃_na))``, with ``k = 1 + tanh θ``, and likewise
    ``A_p = softmax(φ(S_ap) + k·φ(D̃_{n2,p}))``, ``A_n = softmax(φ(S_{n2,n}) + k·φ(D̃_an))``,
    ``A_n2 = softmax(φ(S_{n,n2}) + k·φ(D̃_{p,n2}))``: the network is centrally symmetric.
    """
    _check(qk, (4,), "sd")
    s = _pair_scores(qk, SIMILAR, similarity, per_sample)
    d = _pair_scores(qk, DISSIMILAR, dissimilarity, per_sample)
    return [(si + k * di).softmax(-1) for si, di in zip(s, d)]


def sdpa(qk: Sequence[Tensor]) -> list[Tensor]:
    """Scaled dot-product cross attention, the baseline the paper argues against.

    ``A_x = softmax(Q_x Q_yᵀ / √C)`` over the partner y's tokens, shape (B, N, N); the cross
    module then mixes the partner's values, ``A_x V_y``, instead of gating its own.
    """
    _check(qk, (2, 4), "sdpa")
    maps = [None] * len(qk)
    for i, j in SIMILAR[: len(qk) // 2]:
        logits = qk[j] @ qk[i].transpose(1, 2) * qk[i].shape[-1] ** -0.5
        maps[i], maps[j] = logits.transpose(1, 2).softmax(-1), logits.softmax(-1)
    return maps
