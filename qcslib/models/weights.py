"""Loading weights: the MS-Celeb-1M ``ir50.pth``, the authors' QCS/DCS checkpoints, and our own.

Files are read with torch's weights-only unpickler. Classes that existed only where a file was
written (the authors' checkpoints pickle recorder objects from their training script's
``__main__``) become inert stubs, so reading a file never runs code from it. A load either fills
every tensor the model needs or raises one line naming the file; nothing is loaded partially.
"""
from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbone import IRBackbone
from .qcs import QCSConfig, QCSNet
from .student import ARCHITECTURE, StudentConfig, StudentNet

FORMAT = "qcslib-checkpoint/1"
STUBBED_MODULES = ("__main__.", "numpy.")  # globals that a read replaces by inert stubs

# Official name prefix → ours; the first match wins, in either direction. Both the old
# (embed_q/k/v) and the new (embed_1/2/3) official names are read; messages use the new ones.
OFFICIAL_NAMES = [
    ("ir_back.", "base.backbone."),
    ("conv1.", "base.tokens.downsample.0."),
    ("conv2.", "base.tokens.downsample.1."),
    ("conv3.", "base.tokens.downsample.2."),
    ("embed_1.", "base.tokens.embed.0."), ("embed_q.", "base.tokens.embed.0."),
    ("embed_2.0.", "base.tokens.embed.1."), ("embed_k.0.", "base.tokens.embed.1."),
    ("embed_3.proj.", "base.tokens.embed.2."), ("embed_v.proj.", "base.tokens.embed.2."),
    ("VIT_base.se_block.linear1.", "base.encoder.se.fc1."),
    ("VIT_base.se_block.linear2.", "base.encoder.se.fc2."),
    ("VIT_base.head.linear.", "base.encoder.head."),
    ("VIT_base.", "base.encoder."),
    ("VIT_cross.se_block.linear1.", "cross_encoder.se.fc1."),
    ("VIT_cross.se_block.linear2.", "cross_encoder.se.fc2."),
    ("VIT_cross.head.linear.", "cross_encoder.head."),
    ("VIT_cross.", "cross_encoder."),
    ("cross_attention_1.", "cross.0."),
    ("cross_attention_2.", "cross.1."),
    ("cross_attention_3.", "cross.2."),
]
# Weights the official model registers but never uses in its forward pass.
OFFICIAL_UNUSED = re.compile(
    r"^(ir_back\.output_layer\."
    r"|VIT_(base|cross)\.(patch_embed|eca_block|CON1|IRLinear1|IRLinear2)\."
    r"|VIT_(base|cross)\.blocks\.\d+\.conv\."
    r"|fusion\.)")


class CheckpointError(ValueError):
    """A weight file that cannot be used as asked; the message names the file."""


@dataclass
class LoadReport:
    """What a load did. ``ignored``: official weights that are never used; ``stubbed``: pickled
    classes replaced by inert stubs; ``unexpected``: tensors in the file that the model has no use for."""

    path: str
    matched: list[str]
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    stubbed: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [f"{self.path}: {len(self.matched)} tensors loaded"]
        for name in ("missing", "unexpected", "ignored", "stubbed"):
            if items := getattr(self, name):
                parts.append(f"{len(items)} {name} ({_sample(items)})")
        if self.meta:
            parts.append(", ".join(f"{k}={v}" for k, v in self.meta.items()))
        return "; ".join(parts)


def _sample(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", … {len(items) - n} more" if len(items) > n else "")


class PickleStub:
    """Inert stand-in for a class that a file names: keeps the pickled arguments and state, runs nothing."""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<stub of {type(self).__module__}.{type(self).__qualname__}>"


def _stub(name: str) -> type:
    module, _, qualname = name.rpartition(".")
    return type(qualname, (PickleStub,), {"__module__": module, "__qualname__": qualname})


def read_torch_file(path: str | Path) -> tuple[Any, list[str]]:
    """``torch.load`` with the weights-only unpickler → (object, names of stubbed globals).

    Globals from ``__main__`` (classes of the script that wrote the file) and numpy (the arrays
    those objects hold) become stubs; a file naming any other global the weights-only unpickler
    does not allow is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as f:
        start = f.read(4)
    is_zip = start == b"PK\x03\x04"  # torch.save's format since torch 1.6; before, a bare pickle
    if not is_zip and not start.startswith(b"\x80"):
        raise CheckpointError(f"{path}: not a torch.save file (it starts with {start!r})")
    if is_zip and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: truncated or corrupt (a zip archive without its directory); copy it again")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if is_zip else []
    except Exception as e:
        raise CheckpointError(f"{path}: not readable as a torch.save file: {_reason(e)}") from e
    if refused := [name for name in unsafe if not name.startswith(STUBBED_MODULES)]:
        raise CheckpointError(f"{path}: refused: reading it would call {', '.join(refused)}; "
                              "a checkpoint should hold only tensors and plain data")
    try:
        with torch.serialization.safe_globals([(_stub(name), name) for name in unsafe]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types here; the message is what the user needs
        raise CheckpointError(f"{path}: not readable as a torch.save file: {_reason(e)}") from e
    return obj, unsafe


def _reason(e: Exception) -> str:
    """One line out of what torch raised: the global it refused, a truncation, or its first line."""
    text = str(e).strip()
    if found := re.search(r"GLOBAL (\S+)", text):
        return f"it names {found.group(1)}, which weights-only loading does not allow (a pre-1.6 file?)"
    if isinstance(e, (EOFError, struct.error)):
        return "it ends early (truncated?)"
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _tensor_dict(obj: Any, path: Path | str, what: str) -> dict[str, torch.Tensor]:
    """The state_dict inside a loaded file: ``obj['state_dict']`` or ``obj`` itself."""
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: expected {what}: a state_dict of tensors, or a dict with one under "
                              f"'state_dict', found {type(obj).__name__}")
    return sd


def _load_exact(module: nn.Module, state: dict[str, torch.Tensor], path, name=lambda key: key):
    """Load ``state`` into ``module`` only if it has exactly the module's keys and shapes.
    ``name`` turns a key into the name that messages show."""
    own = module.state_dict()
    missing = [name(k) for k in own if k not in state]
    unexpected = [name(k) for k in state if k not in own]
    shapes = [f"{name(k)} {tuple(state[k].shape)}≠{tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = [f"{len(x)} {what} ({_sample(x)})" for x, what in
                    ((missing, "missing"), (unexpected, "unexpected"), (shapes, "of the wrong shape")) if x]
        raise CheckpointError(f"{path}: does not fit the model ({type(module).__name__}, {len(own)} tensors): "
                              + "; ".join(problems) + "; nothing was loaded")
    module.load_state_dict(state)


def load_backbone_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load an ``ir50.pth``-style file into the IR-50 backbone of ``model`` (QCSNet, BaseNet or IRBackbone).

    Keys may carry ``module.`` and ``ir_back.`` prefixes. Every backbone tensor must be in the file
    with its shape, or nothing is loaded and ``CheckpointError`` says which are not. Tensors the
    backbone does not use (IR-50's ``output_layer``, a whole QCS checkpoint's other parts) are
    listed in the report's ``unexpected``.
    """
    backbone = getattr(getattr(model, "base", model), "backbone", model)
    if not isinstance(backbone, IRBackbone):
        raise TypeError(f"expected a QCSNet, BaseNet or IRBackbone, got {type(model).__name__}")
    obj, stubbed = read_torch_file(path)
    sd = {k.removeprefix("module.").removeprefix("ir_back."): v
          for k, v in _tensor_dict(obj, path, "IR-50 weights").items()}
    own = backbone.state_dict()
    matched = [k for k in own if k in sd and sd[k].shape == own[k].shape]
    if len(matched) < len(own):
        missing = [k for k in own if k not in sd]
        shapes = [f"{k} {tuple(sd[k].shape)}≠{tuple(own[k].shape)}" for k in own if k in sd and k not in matched]
        detail = "; ".join(f"{len(x)} {what} ({_sample(x)})" for x, what in
                           ((missing, "missing"), (shapes, "of the wrong shape")) if x)
        raise CheckpointError(f"{path}: only {len(matched)} of {len(own)} IR-50 backbone tensors match ({detail}); "
                              "expected an ir50.pth with input_layer.*, body1.*, body2.*, body3.*; nothing was loaded")
    backbone.load_state_dict({k: sd[k] for k in own})
    return LoadReport(str(path), matched, unexpected=[k for k in sd if k not in own], stubbed=stubbed)


def official_to_ours(key: str) -> str | None:
    """Our name for an official parameter name (without ``module.``), or None if it has none."""
    for old, new in OFFICIAL_NAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def ours_to_official(key: str) -> str:
    """The official name of one of our parameters."""
    for old, new in OFFICIAL_NAMES:
        if key.startswith(new):
            return old + key[len(new):]
    return key


def load_official_checkpoint(path: str | Path, num_classes: int | None = None) -> tuple[QCSNet, LoadReport]:
    """Load a checkpoint released by the authors (QCS or DCS, 7 or 8 classes) → (model in eval mode, report).

    The variant comes from the keys (cross modules with ``theta``: QCS; without: DCS; none: the
    baseline), the class count from the head. The official 8-class DCS files take the cross
    module's residual from its input rather than from the LayerNorm'd tokens; that is set too.
    ``num_classes``, if given, must match the file.
    """
    obj, stubbed = read_torch_file(path)
    return _official_from(obj, path, stubbed, num_classes)


def _official_from(obj, path, stubbed, num_classes):
    sd = {k.removeprefix("module."): v for k, v in _tensor_dict(obj, path, "an official QCS/DCS checkpoint").items()}
    head = sd.get("VIT_base.head.linear.weight")
    if head is None:
        raise CheckpointError(f"{path}: not a QCS/DCS checkpoint of the official code: none of its {len(sd)} "
                              f"tensors is VIT_base.head.linear.weight (it has {_sample(list(sd))})")
    n = head.shape[0]
    if num_classes is not None and n != num_classes:
        raise CheckpointError(f"{path}: is a {n}-class checkpoint (VIT_base.head.linear.weight {tuple(head.shape)}), "
                              f"expected {num_classes} classes")
    if "cross_attention_1.proj.weight" in sd:
        variant = "qcs" if "cross_attention_1.theta" in sd else "dcs"
    else:
        variant = "baseline"
    config = QCSConfig(variant=variant, num_classes=n,
                       cross_residual_from="input" if variant == "dcs" and n == 8 else "norm")
    mapped, ignored, unknown = {}, [], []
    for key, value in sd.items():
        ours = official_to_ours(key)
        if OFFICIAL_UNUSED.match(key):
            ignored.append(key)
        elif ours is None:
            unknown.append(key)
        else:
            mapped[ours] = value
    if unknown:
        raise CheckpointError(f"{path}: {len(unknown)} tensors that no official QCS/DCS model has ({_sample(unknown)}); "
                              "nothing was loaded")
    model = QCSNet(config)
    _load_exact(model, mapped, path, ours_to_official)
    meta = {"variant": variant, "num_classes": n, **_scalars(obj, ("epoch", "best_acc"))}
    return model.eval(), LoadReport(str(path), list(mapped), ignored=ignored, stubbed=stubbed, meta=meta)


def _scalars(obj: Any, keys) -> dict:
    out = {}
    for k in keys:
        v = obj.get(k) if isinstance(obj, dict) else None
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float, str)):
            out[k] = v
    return out


def save_checkpoint(path: str | Path, model: QCSNet | StudentNet, **extra) -> None:
    """Write ``{format, config, state_dict, **extra}``; ``extra`` holds plain values or tensors (epoch, metrics, …)."""
    torch.save({"format": FORMAT, "config": model.config.to_dict(), "state_dict": model.state_dict(), **extra}, path)


def load_checkpoint(path: str | Path, num_classes: int | None = None) -> tuple[QCSNet | StudentNet, LoadReport]:
    """Load one of our checkpoints (a QCSNet, or a distilled StudentNet: its config says ``architecture: timm``),
    or an official one (detected from its contents) → (model in eval mode, report)."""
    obj, stubbed = read_torch_file(path)
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        return _official_from(obj, path, stubbed, num_classes)
    student = isinstance(obj.get("config"), dict) and obj["config"].get("architecture") == ARCHITECTURE
    try:
        config = StudentConfig(**obj["config"]) if student else QCSConfig(**obj["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its config does not describe a model this version builds: {e}") from e
    if num_classes is not None and config.num_classes != num_classes:
        raise CheckpointError(f"{path}: is a {config.num_classes}-class checkpoint, expected {num_classes} classes")
    model = StudentNet(config) if student else QCSNet(config)
    _load_exact(model, _tensor_dict(obj, path, "a qcslib checkpoint"), path)
    kind = {"architecture": ARCHITECTURE, "timm_name": config.timm_name, "image_size": config.image_size} \
        if student else {"variant": config.variant}
    meta = {**kind, "num_classes": config.num_classes,
            **_scalars(obj, [k for k in obj if k not in ("format", "config", "state_dict")])}
    if isinstance(obj.get("classes"), list):
        meta["classes"] = [str(c) for c in obj["classes"]]
    if isinstance(obj.get("train_config"), dict):
        meta["transform"] = obj["train_config"].get("transform")
        meta["dataset"] = obj["train_config"].get("dataset")
    return model.eval(), LoadReport(str(path), list(model.state_dict()), stubbed=stubbed, meta=meta)
