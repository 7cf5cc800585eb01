"""The cross module: one per token scale, shared by all branches, run only in training."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import Mlp
from torch import Tensor, nn

from . import csa

CSA_MODES = ("sd", "s", "d", "sdpa")


class CrossSimilarity(nn.Module):
    """Refines the tokens of 2 or 4 images from their cross similarity.

    For each image x with tokens ``t_x`` (B, N, C)::

        h_x      = LN₁(t_x)
        Q_x, V_x = split(W h_x)                  one projection: shared query/key, value
        A        = CSA(Q_a, Q_p[, Q_n, Q_n2])    a weight per token (see ``csa``)
        m_x      = A_x ⊙ V_x                     (``sdpa``: A_x V_partner)
        residual_from="norm":   z_x = LN₂(h_x + m_x),  out_x = z_x + MLP(z_x)
        residual_from="input":  y_x = t_x + m_x,       out_x = y_x + MLP(LN₂(y_x))

    "norm" takes both residuals from the LayerNorm'd tensors, as the official QCS and 7-class
    DCS files do; "input" is the usual pre-norm block, as the official 8-class DCS files have it.
    ``θ`` (``k = 1 + tanh θ``, starting at 1) exists only for the ``sd`` mode, which uses it.
    """

    def __init__(self, dim: int, mode: str = "sd", per_sample: bool = False, residual_from: str = "norm"):
        super().__init__()
        if mode not in CSA_MODES:
            raise ValueError(f"csa mode must be one of {CSA_MODES}, got {mode!r}")
        if residual_from not in ("norm", "input"):
            raise ValueError(f"residual_from must be 'norm' or 'input', got {residual_from!r}")
        self.mode, self.per_sample, self.residual_from = mode, per_sample, residual_from
        self.norm1 = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, 2 * dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.theta = nn.Parameter(torch.zeros(())) if mode == "sd" else None

    def k(self) -> Tensor | None:
        """``k = 1 + tanh θ``, the weight of the dissimilarity term (``sd`` mode only)."""
        return None if self.theta is None else 1 + torch.tanh(self.theta)

    def maps(self, queries: Sequence[Tensor]) -> list[Tensor]:
        """The CSA maps of this module's mode for the given query/key tokens."""
        if self.mode == "sd":
            return csa.csa_sd(queries, self.k(), self.per_sample)
        if self.mode == "s":
            return csa.csa_s(queries, self.per_sample)
        if self.mode == "d":
            return csa.csa_d(queries, self.per_sample)
        return csa.sdpa(queries)

    def forward(self, tokens: Sequence[Tensor]) -> list[Tensor]:
        h = [self.norm1(t) for t in tokens]
        queries, values = zip(*(self.proj(x).chunk(2, dim=-1) for x in h))
        maps = self.maps(queries)
        if self.mode == "sdpa":
            mixed = [a @ values[csa.PARTNER[i]] for i, a in enumerate(maps)]
        else:
            mixed = [a.unsqueeze(-1) * v for a, v in zip(maps, values)]
        if self.residual_from == "input":
            y = [t + m for t, m in zip(tokens, mixed)]
            return [x + self.mlp(self.norm2(x)) for x in y]
        z = [self.norm2(x + m) for x, m in zip(h, mixed)]
        return [x + self.mlp(x) for x in z]
