"""A distillation student: any timm model, built from scratch (no download), with our class head.

``StudentNet`` keeps the interface the rest of qcslib reads from a QCSNet: ``config`` (with ``num_classes``,
``image_size`` and ``to_dict``), ``base`` (the inference network: here the timm model itself, image → logits),
``forward(x)`` = logits, and timm's ``forward_features`` / ``forward_head(z, pre_logits)``. Its checkpoint
config carries ``architecture: timm`` and the timm name, which ``load_checkpoint`` rebuilds it from.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import timm
from torch import Tensor, nn

ARCHITECTURE = "timm"
# resnet10t: at 32 px the mobile networks' stride-32 stems leave 1 × 1 maps, and they did not learn SynthFER
# (benchmarks/RESULTS.md); at 224 px mobilenetv3_small_100 is the faster one (benchmarks/student_speed.py).
DEFAULT_STUDENT = "resnet10t"


@dataclass(frozen=True)
class StudentConfig:
    """What rebuilds a student: the timm model name, the class count and the input side (the teacher's)."""

    timm_name: str = DEFAULT_STUDENT
    num_classes: int = 7
    image_size: int = 224
    architecture: str = ARCHITECTURE

    def __post_init__(self):
        if self.architecture != ARCHITECTURE:
            raise ValueError(f"architecture must be {ARCHITECTURE!r}, got {self.architecture!r}")
        if not timm.is_model(self.timm_name):
            raise ValueError(f"{self.timm_name!r} is not a timm model name (e.g. mobilenetv3_small_100, "
                             f"resnet10t; timm.list_models() lists them)")
        if self.num_classes < 2 or self.image_size < 8:
            raise ValueError(f"need num_classes ≥ 2 and image_size ≥ 8, got {self.num_classes} and "
                             f"{self.image_size}")

    @property
    def variant(self) -> str:
        """The name run tables list it under (a QCS model's is qcs, dcs or baseline): the timm name."""
        return self.timm_name

    @property
    def branches(self) -> int:
        """Images through the network per training sample: one."""
        return 1

    def to_dict(self) -> dict:
        return asdict(self)


class StudentNet(nn.Module):
    """``timm.create_model(timm_name, pretrained=False, num_classes=C)`` behind the QCSNet interface."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        self.base = timm.create_model(config.timm_name, pretrained=False, num_classes=config.num_classes)

    @property
    def num_features(self) -> int:
        """Width of the pre-logit features ``forward_head(z, pre_logits=True)`` returns."""
        return getattr(self.base, "head_hidden_size", None) or self.base.num_features

    def forward_features(self, images: Tensor) -> Tensor:
        return self.base.forward_features(images)

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        return self.base.forward_head(z, pre_logits=pre_logits)

    def forward(self, images: Tensor) -> Tensor:
        return self.base(images)

    def logits_and_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (B, C), pre-logit features (B, F)) from one pass: the classifier applied to the features
        (timm's head dropout, 0 in the default students, is not applied here)."""
        features = self.forward_head(self.forward_features(images), pre_logits=True)
        return self.base.get_classifier()(features), features
