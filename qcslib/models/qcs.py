"""QCS, DCS and the baseline: one network, three training variants.

``base`` is the inference network (POSTER++ without landmarks): IR-50 stages 1-3 → pyramid
tokens → ViT → logits. In training, ``forward_train`` runs 1, 2 or 4 images through ``base``
(one call per branch, so BatchNorm statistics are per branch as in the official code; or, with
``concat_branches``, all branches as one batch), refines
each scale's tokens with a shared ``CrossSimilarity`` module, adds them to the base tokens and
classifies them again with ``cross_encoder``. All weights are shared across branches.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .backbone import IRBackbone
from .cross import CSA_MODES, CrossSimilarity
from .vit import ENCODER_INITS, TokenEncoder

BRANCHES = {"baseline": 1, "dcs": 2, "qcs": 4}
DEFAULT_CSA = {"baseline": None, "dcs": "s", "qcs": "sd"}

# Named sizes. "paper" is the official model; "tiny" trains on SynthFER on a CPU.
SIZES = {
    "paper": {},
    "tiny": dict(channels=(16, 32, 64), units=(1, 1, 2), backbone_size=64, dim=64, heads=4, image_size=64),
}


@dataclass(frozen=True)
class QCSConfig:
    """Everything that defines a network. Defaults are the paper's model (official code)."""

    variant: str = "qcs"                 # baseline | dcs | qcs
    num_classes: int = 7
    csa: str | None = None               # sd | s | d | sdpa; None: the variant's own (qcs: sd, dcs: s)
    per_sample_norm: bool = False        # CSA min/max per sample instead of over the whole batch
    cross_residual_from: str = "norm"    # inside the cross module: "norm" (official) or "input"
    residual: bool = True                # cross ViT reads base tokens + cross output (False: cross output only)
    channels: tuple[int, int, int] = (64, 128, 256)
    units: tuple[int, int, int] = (3, 4, 14)
    backbone_size: int = 112             # the backbone resizes its input to this (nearest)
    image_size: int = 224                # the size images are fed at
    dim: int = 768
    heads: int = 8
    base_depth: int = 2
    cross_depth: int = 1
    mlp_ratio: float = 4.0
    base_drop: float = 0.0
    cross_drop: float = 0.0
    attn_proj_drop: bool = False         # also drop after attention projections (official 8-class ViT)
    concat_branches: bool = False        # training: all branches through base as one batch (BatchNorm statistics
                                         # then span them); False: one call per branch, as the official code
    encoder_init: str = "official"       # the ViTs' linear layers: official TN(0, 0.01) | torch (PyTorch's default,
                                         # U(±1/√fan_in), which a narrow ViT trained from scratch needs)

    def __post_init__(self):
        if self.variant not in BRANCHES:
            raise ValueError(f"variant must be one of {tuple(BRANCHES)}, got {self.variant!r}")
        if self.csa is None:
            object.__setattr__(self, "csa", DEFAULT_CSA[self.variant])
        if self.variant == "baseline" and self.csa is not None:
            raise ValueError(f"the baseline has no cross module, so csa must be None, got {self.csa!r}")
        if self.variant != "baseline" and self.csa not in CSA_MODES:
            raise ValueError(f"csa must be one of {CSA_MODES}, got {self.csa!r}")
        if self.variant == "dcs" and self.csa in ("d", "sd"):
            raise ValueError(f"csa {self.csa!r} needs the negatives, which only the qcs variant has")
        if self.per_sample_norm and self.csa not in ("sd", "s", "d"):
            raise ValueError(f"per_sample_norm applies to the distance-based csa modes sd, s and d, not {self.csa!r}")
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "units", tuple(self.units))
        if len(self.channels) != 3 or len(self.units) != 3 or min(self.units) < 1:
            raise ValueError(f"channels and units need 3 stages each, got {self.channels} and {self.units}")
        if self.backbone_size % 16:
            raise ValueError(f"backbone_size must be a multiple of 16, got {self.backbone_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.encoder_init not in ENCODER_INITS:
            raise ValueError(f"encoder_init must be one of {ENCODER_INITS}, got {self.encoder_init!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")

    @classmethod
    def sized(cls, size: str, **overrides) -> QCSConfig:
        """A config of a named size (``paper`` or ``tiny``) with field overrides."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
        return cls(**{**SIZES[size], **overrides})

    @property
    def branches(self) -> int:
        """Images through the network per training sample: 1 (baseline), 2 (DCS) or 4 (QCS)."""
        return BRANCHES[self.variant]

    @property
    def tokens_per_scale(self) -> int:
        """``(backbone_size / 16)²``: 49 at the paper size."""
        return (self.backbone_size // 16) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


class PyramidTokens(nn.Module):
    """Three IR stages → ``3 × (s/16)²`` tokens of width D (147 × 768 at the paper size).

    Each stage output goes through a stride-2 conv, then an embedding to the token grid:
    stage 1 (s/2): two stride-2 3×3 convs; stage 2 (s/4): one stride-2 3×3 conv; stage 3 (s/8):
    a 1×1 conv. The three grids are flattened and concatenated, scale by scale.
    """

    def __init__(self, channels: tuple[int, int, int], dim: int):
        super().__init__()
        c1, c2, c3 = channels
        self.downsample = nn.ModuleList(nn.Conv2d(c, c, 3, 2, 1) for c in channels)
        self.embed = nn.ModuleList([
            nn.Sequential(nn.Conv2d(c1, dim, 3, 2, 1), nn.Conv2d(dim, dim, 3, 2, 1)),
            nn.Conv2d(c2, dim, 3, 2, 1),
            nn.Conv2d(c3, dim, 1),
        ])

    def forward(self, features: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        grids = [e(d(f)) for f, d, e in zip(features, self.downsample, self.embed)]
        return torch.cat([g.flatten(2).transpose(1, 2) for g in grids], dim=1)


class BaseNet(nn.Module):
    """The inference network: image → logits. Holds exactly the inference weights.

    ``forward_features``: image → IR-50 stages 1–3 → 3 × (s/16)² pyramid tokens → encoder → (B, 1 + 147, D);
    ``forward_head(z, pre_logits=False)``: → logits (B, C), or the embedding (B, D) the classifier reads."""

    def __init__(self, config: QCSConfig):
        super().__init__()
        c = config
        self.backbone = IRBackbone(c.channels, c.units, c.backbone_size)
        self.tokens = PyramidTokens(c.channels, c.dim)
        self.encoder = TokenEncoder(3 * c.tokens_per_scale, c.dim, c.base_depth, c.heads, c.num_classes,
                                    c.mlp_ratio, c.base_drop, c.base_drop if c.attn_proj_drop else 0.0, c.encoder_init)

    def forward_features(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        return self.encoder.forward_features(self.tokens(self.backbone(images)))

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        return self.encoder.forward_head(z, pre_logits)

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(images))


class TrainOutput(NamedTuple):
    """What ``forward_train`` returns, one entry per branch (a, p[, n, n2])."""

    base_logits: list[Tensor]
    cross_logits: list[Tensor]   # empty for the baseline
    k: Tensor | None             # (3,): k = 1 + tanh θ of the three cross modules; None unless csa is sd


class QCSNet(nn.Module):
    """QCS / DCS / baseline, with timm's API: ``forward_features(x)`` → the base encoder's tokens (B, 1 + 147, D),
    ``forward_head(z, pre_logits=False)`` → logits or the pre-logit embedding, ``forward(x)`` = both, the
    inference network (base branch only); ``forward_train(a[, p[, n, n2]])`` → the training heads."""

    def __init__(self, config: QCSConfig | None = None):
        super().__init__()
        self.config = c = config or QCSConfig()
        self.base = BaseNet(c)
        if c.variant == "baseline":
            self.cross, self.cross_encoder = None, None
        else:
            self.cross = nn.ModuleList(
                CrossSimilarity(c.dim, c.csa, c.per_sample_norm, c.cross_residual_from) for _ in range(3))
            self.cross_encoder = TokenEncoder(3 * c.tokens_per_scale, c.dim, c.cross_depth, c.heads,
                                              c.num_classes, c.mlp_ratio, c.cross_drop,
                                              c.cross_drop if c.attn_proj_drop else 0.0, c.encoder_init)

    @property
    def branches(self) -> int:
        return self.config.branches

    def forward_features(self, images: Tensor) -> Tensor:
        return self.base.forward_features(images)

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        return self.base.forward_head(z, pre_logits)

    def forward(self, images: Tensor) -> Tensor:
        """Inference: base logits (B, C); the cross modules do not run."""
        return self.base(images)

    def forward_train(self, *images: Tensor) -> TrainOutput:
        """The variant's branches, baseline (a,) / DCS (a, p) / QCS (a, p, n, n2), each (B, 3, H, W) → base and
        cross logits per branch, and k. Each branch's tokens ``t_x = z_x[:, 1:]`` (B, 147, D) are split into the 3
        scales; cross module s refines scale s of all branches together, and the cross encoder reads
        ``t_x + refined_x`` (``residual``) or ``refined_x``."""
        if len(images) != self.branches:
            names = ", ".join(("anchor", "positive", "negative", "negative2")[: self.branches])
            raise ValueError(f"the {self.config.variant} variant takes {self.branches} image batches ({names}), "
                             f"got {len(images)}")
        if len({x.shape for x in images}) != 1:
            raise ValueError(f"all branches need the same batch shape, got {[tuple(x.shape) for x in images]}")
        if self.config.concat_branches:
            features = self.base.forward_features(torch.cat(images)).chunk(len(images))
        else:
            features = [self.base.forward_features(x) for x in images]  # per branch: (B, 1 + 147, D)
        base_logits = [self.base.forward_head(z) for z in features]
        tokens = [z[:, 1:] for z in features]
        if self.cross is None:
            return TrainOutput(base_logits, [], None)
        scales = [t.chunk(3, dim=1) for t in tokens]  # per branch: 3 scales of (B, N, D)
        refined = [m([s[i] for s in scales]) for i, m in enumerate(self.cross)]  # per scale: per branch
        cross_logits = []
        for b, t in enumerate(tokens):
            x = torch.cat([r[b] for r in refined], dim=1)
            cross_logits.append(self.cross_encoder(t + x if self.config.residual else x))
        ks = [m.k() for m in self.cross]
        return TrainOutput(base_logits, cross_logits, None if ks[0] is None else torch.stack(ks))


def count_parameters(model: QCSNet) -> dict[str, int]:
    """Parameters on the inference path (``base``) and in training (all; none is unused)."""
    return {"inference": sum(p.numel() for p in model.base.parameters()),
            "training": sum(p.numel() for p in model.parameters())}


def inference_flops(model: QCSNet, image_size: int | None = None) -> int:
    """FLOPs of one image through the base branch (2 per multiply-add), from ``torch.utils.flop_counter``."""
    size = image_size or model.config.image_size
    param = next(model.parameters())
    images = torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    model.train(was_training)
    return counter.get_total_flops()
