"""Sharpness-Aware Minimisation (Foret et al., 2021) over a base optimizer, as the official mains use it.

One step, with g = ∇L(w):
    first_step:   e = ρ · g / (‖g‖₂ + 1e-12),  w ← w + e     (‖g‖₂ over all parameters together)
    (the caller recomputes the loss and its gradient at w + e)
    second_step:  w ← w − e, then the base optimizer steps with ∇L(w + e)

e depends only on the direction of g, so the first backward may use a scaled loss (fp16 GradScaler)
unscaled; a non-finite ‖g‖ (an overflowed scaled loss) skips the perturbation. The saved weights w
are kept outside ``state``, so checkpoints hold only the base optimizer's state.
"""
from __future__ import annotations

import torch


class SAM(torch.optim.Optimizer):
    """``SAM(params, torch.optim.Adam, rho=0.05, lr=...)``: keyword arguments other than rho go to the base."""

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05, **kwargs):
        if rho < 0:
            raise ValueError(f"rho must be ≥ 0, got {rho}")
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.saved: dict[torch.Tensor, torch.Tensor] = {}  # w, to return to exactly

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if params:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
            finite = torch.isfinite(norm)  # stays on the device: no sync
            for group in self.param_groups:
                scale = group["rho"] / (norm + 1e-12)
                for p in group["params"]:
                    if p.grad is not None:
                        self.saved[p] = p.detach().clone()
                        p.add_(torch.where(finite, p.grad * scale.to(p), 0))
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True, scaler: torch.amp.GradScaler | None = None) -> None:
        for p, w in self.saved.items():
            p.copy_(w)  # exactly w again (w + e − e would round)
        self.saved.clear()
        if scaler is None:
            self.base_optimizer.step()
        else:
            scaler.step(self.base_optimizer)
            scaler.update()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure=None):
        raise RuntimeError("SAM needs two gradients per step: call first_step(), recompute the loss and its "
                           "gradient, then second_step()")

    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


def optimizer_step(optimizer, forward_backward, sam: bool, scaler: torch.amp.GradScaler | None = None):
    """One update: ``forward_backward(sync)`` computes the loss and its gradients (``sync``: whether DDP should
    all-reduce them) and returns what the caller keeps. With SAM: a first pass without sync, the climb to
    ``w + e``, a second pass with sync, the update from ``w``; else one synced pass and the (scaled) update. The
    gradients are zeroed after. → the first pass's result."""
    first = forward_backward(sync=not sam)
    if sam:
        optimizer.first_step(zero_grad=True)
        forward_backward(sync=True)
        optimizer.second_step(zero_grad=True, scaler=scaler)
        return first
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return first
