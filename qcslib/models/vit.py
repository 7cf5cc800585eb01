"""The small ViT that encodes the 147 pyramid tokens (POSTER++'s ``VisionTransformer``, used parts only).

The official class also registers a patch embedding, an ECA block, ``CON1``, ``IRLinear1/2`` and
a 1×1 ``conv`` in every block that its forward never calls; they are not built here.
"""
from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn
from torch.nn.init import trunc_normal_


class SqueezeExcite(nn.Module):
    """Gate on a feature vector: ``x ⊙ σ(W₂ · relu(W₁ x))`` with ``W₁, W₂ ∈ R^{D×D}``."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))


ENCODER_INITS = ("official", "torch")


class TokenEncoder(nn.Module):
    """Pre-norm transformer over a fixed number of tokens, with a class token.

    ``z = [cls; t] + pos`` → ``depth`` × (``z + MHSA(LN z)``, ``z + MLP(LN z)``) → ``LN`` (eps 1e-6) is
    ``forward_features``, the normalised tokens (B, 1 + N, D); ``forward_head`` reads the class token:
    ``head(SE(z_cls))``, or ``SE(z_cls)`` with ``pre_logits``; ``forward`` is both.

    ``drop`` is applied after the position embedding and inside the MLPs, as in the official
    ViT; ``attn_proj_drop`` after the attention projection (0 in the official 7-class files,
    ``drop`` in the 8-class ones). ``init``: see ``_init_weights``.
    """

    def __init__(self, num_tokens: int, dim: int, depth: int, heads: int, num_classes: int,
                 mlp_ratio: float = 4.0, drop: float = 0.0, attn_proj_drop: float = 0.0, init: str = "official"):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, dim))
        self.pos_drop = nn.Dropout(drop)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(*[
            Block(dim, heads, mlp_ratio, qkv_bias=True, proj_drop=drop, norm_layer=norm)
            for _ in range(depth)
        ])
        for block in self.blocks:
            # timm uses one rate for both projections; the official 7-class ViT does not.
            block.attn.proj_drop = nn.Dropout(attn_proj_drop)
            # softmax(QKᵀ/√d)V written out, as the official code computes it (and as the FLOP counter sees it).
            block.attn.fused_attn = False
        self.norm = norm(dim)
        self.se = SqueezeExcite(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        """The official initialisation: tokens ~ TN(0.02), linears ~ TN(0.01) with zero bias, LN = (1, 0).

        ``init="torch"`` keeps PyTorch's default for the linears, W ~ U(±1/√fan_in): at the paper's width
        (768) that has std 0.021, about twice the official 0.01, but at the tiny width (64) it has 0.072,
        seven times it, and without it a tiny ViT trained from scratch on SynthFER learns little more than
        the background hue. Tokens and LayerNorms are initialised as officially either way."""
        if init not in ENCODER_INITS:
            raise ValueError(f"init must be one of {ENCODER_INITS}, got {init!r}")
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear) and init == "official":
                trunc_normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, tokens: Tensor) -> Tensor:
        """(B, N, D) tokens → (B, 1 + N, D): the class token first, all after the final LayerNorm."""
        z = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.norm(self.blocks(self.pos_drop(z + self.pos_embed)))

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, 1 + N, D) → logits (B, C), or the embedding ``SE(z_cls)`` (B, D) the head reads."""
        embedding = self.se(z[:, 0])
        return embedding if pre_logits else self.head(embedding)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(tokens))
