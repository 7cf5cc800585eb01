"""Parity with the authors' own code, when a checkout of it is at hand (opt-in).

    QCS_OFFICIAL_REPO=/path/to/QCS .venv/bin/pytest tests/test_official_code.py

builds each official model from that checkout (GitHub birdwcp/QCS), writes its weights as the
authors' training script does, loads them with ``load_official_checkpoint`` and compares logits.
The always-on equivalent, against an independent reference, is in ``test_weights.py``.
"""
import importlib
import os
import sys
import types

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from qcslib import count_parameters, inference_flops, load_official_checkpoint
from tests.official_reference import random_official_state_dict, write_official_checkpoint

REPO = os.environ.get("QCS_OFFICIAL_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="set QCS_OFFICIAL_REPO to a checkout of birdwcp/QCS")

MODELS = ["QCS_7cls_raf_db", "QCS_8cls_ferplus", "QCS_8cls_affectnet", "QCS_7cls_affectnet",
          "DCS_7cls_raf_db", "DCS_7cls_affectnet", "DCS_8cls_ferplus", "DCS_8cls_affectnet"]


def build_official(name):
    """The official model, holding the reference's well-scaled random weights (strict load)."""
    sys.path.insert(0, REPO)
    sys.modules.setdefault("thop", types.SimpleNamespace(profile=None))
    module = importlib.import_module(f"models.{name}")
    cls = getattr(module, "pyramid_trans_expr", None) or getattr(module, "pyramid_trans_expr2")
    load, torch.load = torch.load, lambda *a, **k: {}  # its constructor reads a Windows path
    try:
        model = cls()
    finally:
        torch.load = load
    sd = random_official_state_dict(name[:3].lower(), int(name[4]), old_names=True,
                                    with_fusion=hasattr(model, "fusion"))
    model.load_state_dict(sd, strict=True)
    return model.eval()


@pytest.mark.parametrize("name", MODELS)
def test_official_model_and_ours_give_the_same_logits(name, tmp_path):
    torch.manual_seed(0)
    official = build_official(name)
    path = tmp_path / "official.pth"
    write_official_checkpoint(path, official.state_dict())
    ours, report = load_official_checkpoint(path)
    n = 4 if name.startswith("QCS") else 2
    images = [torch.randn(2, 3, 224, 224) for _ in range(n)]
    with torch.no_grad():
        expected = official(*images)
        got = ours.forward_train(*images)
        assert (official(images[0], *[None] * (n - 1)) - ours(images[0])).abs().max() < 5e-5
    assert len(got.base_logits) == len(got.cross_logits) == n and len(expected) >= 2 * n  # no head left out
    for e, g in zip(expected[: 2 * n], got.base_logits + got.cross_logits, strict=True):
        assert (e - g).abs().max() < 5e-5
    assert report.meta["variant"] == name[:3].lower()


@pytest.mark.parametrize("name", ["QCS_7cls_raf_db", "DCS_8cls_ferplus"])
def test_official_model_costs_what_we_count(name, tmp_path):
    """The README's cost figures: the official model's parameters that reach the logits (in training, and on
    the single-image inference path) and its FLOPs per image equal ``count_parameters`` and ``inference_flops``."""
    official = build_official(name)
    path = tmp_path / "official.pth"
    write_official_checkpoint(path, official.state_dict())
    ours, _ = load_official_checkpoint(path)
    n = 4 if name.startswith("QCS") else 2
    images = [torch.randn(2, 3, 224, 224) for _ in range(n)]

    def used(*inputs, heads=None) -> int:
        official.zero_grad(set_to_none=True)
        out = official(*inputs)
        torch.stack([o.sum() for o in (out[:heads] if heads else [out])]).sum().backward()
        return sum(p.numel() for p in official.parameters() if p.grad is not None)

    counts = count_parameters(ours)
    assert used(*images, heads=2 * n) == counts["training"]
    assert used(images[0], *[None] * (n - 1)) == counts["inference"]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        official(images[0][:1], *[None] * (n - 1))
    assert counter.get_total_flops() == inference_flops(ours)
