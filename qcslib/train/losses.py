"""The training losses. QCS: the mean cross-entropy over every head of every branch, as in the official mains.

    L = (1 / H) Σ_heads CE(logits, y),   y = the anchor's label for branches a and p,
                                         the negative's label for branches n and n2

QCS has H = 8 heads (base and cross, for a, p, n, n2), DCS 4 (base and cross, for a, p), the baseline 1.
Distilling a student: ``distillation_loss`` (Hinton KD on the teacher's base logits, optional feature term).
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


def distillation_loss(student_logits: Tensor, labels: Tensor, teacher_logits: Tensor, temperature: float = 4.0,
                      alpha: float = 0.9, projected: Tensor | None = None, teacher_features: Tensor | None = None,
                      beta: float = 0.0) -> tuple[Tensor, Tensor]:
    """Hinton's knowledge distillation, with an optional feature term → ``(L, (CE, KD, feature) detached)``:

        L = (1 − α) CE(z_s, y) + α T² KL(softmax(z_t / T) ‖ softmax(z_s / T)) + β (1/D) ‖P f_s − f_t‖²

    in the convex weighting (α = 0: plain cross-entropy; α = 1: the soft targets only). T² keeps the soft
    term's gradients on the scale of the hard one as T grows (Hinton et al. 2015). KL is summed over classes
    and CE, KL and the feature term are averaged over the batch; ``projected`` is P f_s (B, D), the student's
    pre-logit features through a learned linear map onto the teacher's, ``teacher_features`` f_t (B, D).
    All in fp32. The feature term needs ``beta > 0`` and both feature tensors."""
    z_s, z_t = student_logits.float(), teacher_logits.float()
    ce = F.cross_entropy(z_s, labels)
    kd = F.kl_div(F.log_softmax(z_s / temperature, dim=1), F.log_softmax(z_t / temperature, dim=1),
                  reduction="batchmean", log_target=True) * temperature ** 2
    feature = F.mse_loss(projected.float(), teacher_features.float()) if beta > 0 else ce.new_zeros(())
    loss = (1 - alpha) * ce + alpha * kd + beta * feature
    return loss, torch.stack([ce, kd, feature]).detach()
