"""Export the inference network (the base branch) to ONNX or TorchScript with a dynamic batch, and check it.

The check runs the exported file (ONNX through onnxruntime, TorchScript through ``torch.jit.load``) and the
PyTorch model on the same random images at several batch sizes, and fails unless ``max |Δ logits| ≤ tolerance``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .models.weights import load_checkpoint

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


class ExportError(RuntimeError):
    """The exported model does not reproduce the PyTorch model."""


def export(checkpoint: str | Path, fmt: str = "onnx", out: str | Path | None = None,
           batch_sizes: tuple[int, ...] = (1, 3, 8), tolerance: float = 1e-4) -> dict:
    """Write ``checkpoint``'s base branch as ``fmt`` to ``out`` (default: beside the checkpoint) and check it →
    ``{path, format, image_size, classes, max_abs_diff, batch_sizes}``; ExportError if the check fails."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    model, report = load_checkpoint(checkpoint)
    base = model.base.eval()
    size = model.config.image_size
    out = Path(out) if out else Path(checkpoint).with_suffix(FORMATS[fmt])
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    if fmt == "onnx":
        import onnxruntime
        torch.onnx.export(base, (example,), str(out), input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True,
                          verbose=False)
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        run = lambda x: session.run(None, {"images": x.numpy()})[0]
    else:
        with torch.no_grad():
            torch.jit.trace(base, example).save(str(out))
        loaded = torch.jit.load(str(out))
        run = lambda x: loaded(x).numpy()
    worst = 0.0
    for b in batch_sizes:
        x = torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(b))
        with torch.no_grad():
            worst = max(worst, float(np.abs(run(x) - base(x).numpy()).max()))
    if not worst <= tolerance:
        raise ExportError(f"{out}: the {fmt} export differs from PyTorch by max |Δ| = {worst:.3g} > {tolerance:g}")
    return {"path": str(out), "format": fmt, "image_size": size, "classes": report.meta.get("classes"),
            "max_abs_diff": worst, "batch_sizes": list(batch_sizes)}
