"""The training loss: the mean cross-entropy over every head of every branch, as in the official mains.

    L = (1 / H) Σ_heads CE(logits, y),   y = the anchor's label for branches a and p,
                                         the negative's label for branches n and n2

QCS has H = 8 heads (base and cross, for a, p, n, n2), DCS 4 (base and cross, for a, p), the baseline 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.qcs import TrainOutput

BRANCH_NAMES = ("a", "p", "n", "n2")


def head_names(branches: int, cross: bool) -> list[str]:
    """``base_a, base_p, …, cross_n2``: the loss columns of a run, in the order ``head_losses`` returns them."""
    names = [f"base_{b}" for b in BRANCH_NAMES[:branches]]
    return names + ([f"cross_{b}" for b in BRANCH_NAMES[:branches]] if cross else [])


def head_losses(out: TrainOutput, labels: Tensor, neg_labels: Tensor | None = None) -> Tensor:
    """Cross-entropy of each head, in fp32 → a (H,) tensor in ``head_names`` order."""
    targets = [labels, labels, neg_labels, neg_labels][: len(out.base_logits)]
    if len(targets) > 2 and neg_labels is None:
        raise ValueError("the negatives' branches need neg_labels")
    logits = list(out.base_logits) + list(out.cross_logits)
    targets = targets + targets[: len(out.cross_logits)]
    return torch.stack([F.cross_entropy(x.float(), y) for x, y in zip(logits, targets)])


def quadruplet_loss(out: TrainOutput, labels: Tensor, neg_labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(L, per-head losses)`` with L the mean over heads."""
    parts = head_losses(out, labels, neg_labels)
    return parts.mean(), parts.detach()
