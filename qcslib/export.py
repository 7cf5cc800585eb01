"""Export the inference network (the base branch) to ONNX or TorchScript with a dynamic batch, and check it;
``export_int8`` quantises the ONNX export to int8 with ONNX Runtime and measures its agreement with fp32.

The check runs the exported file (ONNX through onnxruntime, TorchScript through ``torch.jit.load``) and the
PyTorch model on the same random images at several batch sizes, and fails unless ``max |Δ logits| ≤ tolerance``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from .confidence import checkpoint_data, tempered
from .data.datasets import ImageDataset
from .data.sources import DataError, Split, load_split, require_whole, verify_images
from .data.transforms import build_transforms, recipe_for
from .models.student import StudentNet
from .models.weights import load_checkpoint, read_torch_file

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


class ExportError(RuntimeError):
    """The exported model does not reproduce the PyTorch model."""


def output_path(checkpoint: str | Path, out: str | Path | None, suffix: str) -> Path:
    """Where an export of ``checkpoint`` goes: ``out``, or (None) the checkpoint's path with ``suffix``; its missing
    folders are made. A ValueError, before any work, if it is the checkpoint itself, a folder, or lies under a
    file."""
    out = Path(out) if out else Path(checkpoint).with_suffix(suffix)
    if out.resolve() == Path(checkpoint).resolve():
        raise ValueError(f"--out {out}: is the checkpoint itself, which the export would replace; choose another file")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; name the file to write")
    folder = next(p for p in out.parents if p.exists())
    if not folder.is_dir():
        raise ValueError(f"--out {out}: {folder} is a file, not a folder; choose a path in a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def export(checkpoint: str | Path, fmt: str = "onnx", out: str | Path | None = None,
           batch_sizes: tuple[int, ...] = (1, 3, 8), tolerance: float = 1e-4) -> dict:
    """Write ``checkpoint``'s base branch as ``fmt`` to ``out`` (default: beside the checkpoint) and check it →
    ``{path, format, image_size, classes, temperature, max_abs_diff, batch_sizes}``; ExportError if the check
    fails. A checkpoint calibrated by ``qcslib.confidence.calibrate`` exports ``logits / temperature`` (its
    ``temperature``; else 1), whose softmax is the calibrated probabilities."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = output_path(checkpoint, out, FORMATS[fmt])
    model, report = load_checkpoint(checkpoint)
    base = tempered(model.base.eval(), report.meta)  # a stored temperature divides the exported logits
    size = model.config.image_size
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
            "temperature": report.meta.get("temperature", 1.0), "max_abs_diff": worst, "batch_sizes": list(batch_sizes)}


INT8_MODES = ("auto", "static", "dynamic")


def _images(split: Split, indices: np.ndarray, recipe: str, size: int) -> np.ndarray:
    """The split's images at ``indices`` through the recipe's test transform → (N, 3, size, size) float32."""
    data = ImageDataset(split, build_transforms(recipe, size, train=False))
    return np.stack([data[int(i)][0].numpy() for i in indices])


def _logits(session, images: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([session.run(None, {"images": images[i:i + batch]})[0]
                           for i in range(0, len(images), batch)])


def export_int8(checkpoint: str | Path, out: str | Path | None = None, mode: str = "auto",
                dataset: str | None = None, data_root: str | Path | None = None, calibration: int | None = None,
                test_images: int | None = None, seed: int = 0) -> dict:
    """Write ``checkpoint``'s base branch as an int8 ONNX model (default: beside it, ``.int8.onnx``) and score it
    against fp32 → ``{path, format, mode, image_size, classes, dataset, data_root, calibration_images,
    test_images, top1_agreement, fp32_accuracy, int8_accuracy, accuracy_delta}`` (accuracies in %, delta =
    int8 − fp32 in points, agreement = the fraction of test images whose int8 and fp32 top-1 class agree).

    The fp32 ONNX export is checked first (``export``). ``mode`` "dynamic": ``quantize_dynamic`` of the MatMul/Gemm
    (linear) layers only, weights int8, activations quantised per batch at run time, no calibration; "static":
    ONNX Runtime's ``quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear around int8 convolutions,
    MatMuls and the other ops it supports, activations uint8, weights int8 per channel), its activation ranges
    calibrated (min/max) on ``calibration`` images (default 64) drawn with ``seed`` from the train split; "auto" (the
    default): static for a distilled student, dynamic for QCS. The data are ``dataset`` under ``data_root``, by
    default the checkpoint's own (its stored training config's ``dataset``, ``data_root`` and ``data_options``;
    a relative root is taken from the current directory, as ``train`` took it), preprocessed with the
    checkpoint's test transform (``recipe_for``). Agreement and accuracies are on the test split (all of it, or
    ``test_images`` of it drawn at random without replacement with ``seed``, so that the sample spans its
    identities, which the split stores in runs), whose classes must be the checkpoint's, in its order.

    Why "auto" chooses as it does: the static QDQ graph of a QCS quantises LayerNorm, softmax and the residual
    additions too, where it loses agreement with fp32, and is no faster at small sizes; in a convolutional student
    dynamic quantisation reaches only the final linear layer, so static is the one that runs faster. The
    measurements behind this are in benchmarks/RESULTS.md (``int8_speed.py``, ``student_speed.py``).
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    if mode not in INT8_MODES:
        raise ValueError(f"int8 mode must be one of {', '.join(INT8_MODES)}, got {mode!r}")
    if (calibration is not None and calibration < 1) or (test_images is not None and test_images < 1):
        raise ValueError(f"calibration and test_images must be ≥ 1 images, got {calibration} and {test_images}")
    out = output_path(checkpoint, out, ".int8.onnx")
    model, report = load_checkpoint(checkpoint)
    if mode == "auto":
        mode = "static" if isinstance(model, StudentNet) else "dynamic"
    if mode == "dynamic" and calibration is not None:
        raise ValueError("calibration applies to static int8 only (dynamic quantisation is not calibrated; auto "
                         "chooses dynamic for a QCS checkpoint)")
    calibration = 64 if calibration is None else calibration
    dataset, data_root, options = checkpoint_data(checkpoint, read_torch_file(checkpoint)[0], dataset, data_root,
                                                  "calibrate and score on; pass --dataset and --data-root")
    size = model.config.image_size
    recipe = recipe_for(dataset, report.meta)
    train = load_split(dataset, data_root, "train", **options)  # only the calibration sample is read
    test = require_whole(verify_images(load_split(dataset, data_root, "test", **options)), "fix or remove them")
    classes = report.meta.get("classes")
    if classes is not None and list(test.classes) != list(classes):
        raise DataError(f"{data_root}: {dataset}'s classes {test.classes} are not the checkpoint's {classes}")
    for split in (train, test):
        if not len(split):
            raise DataError(f"{data_root}: the {dataset} {split.split} split has no images")
    picked = np.random.default_rng(seed).permutation(len(train))[:calibration] if mode == "static" else []

    class Calibration(CalibrationDataReader):
        """The calibration sample in batches of 8, as ``{"images": (B, 3, size, size)}`` feeds, then None."""

        def __init__(self):
            images = _images(train, picked, recipe, size)
            self.batches = iter(np.split(images, range(8, len(images), 8)))

        def get_next(self):
            return {"images": batch} if (batch := next(self.batches, None)) is not None else None

    import onnx
    import onnxruntime
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = export(checkpoint, "onnx", Path(tmp) / "fp32.onnx")["path"]
        graph = onnx.load(fp32_path)  # the exporter's stored value_info fails the quantiser's shape inference
        del graph.graph.value_info[:]  # ("existing shape differs: 64 vs 7"): drop it, shapes are re-inferred
        onnx.save(graph, fp32_path)
        if mode == "static":
            quantize_static(fp32_path, str(out), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        else:
            quantize_dynamic(fp32_path, str(out), op_types_to_quantize=["MatMul", "Gemm"],
                             weight_type=QuantType.QInt8)
        fp32 = onnxruntime.InferenceSession(fp32_path, providers=["CPUExecutionProvider"])
        sample = np.arange(len(test)) if test_images is None or test_images >= len(test) else \
            np.sort(np.random.default_rng(seed).choice(len(test), test_images, replace=False))
        scored = test.labels[sample]
        images = _images(test, sample, recipe, size)
        fp32_top1 = _logits(fp32, images).argmax(1)
    int8 = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    int8_top1 = _logits(int8, images).argmax(1)
    fp32_acc, int8_acc = 100 * float((fp32_top1 == scored).mean()), 100 * float((int8_top1 == scored).mean())
    return {"path": str(out), "format": "onnx", "mode": mode, "image_size": size, "classes": classes,
            "dataset": dataset, "data_root": str(data_root), "calibration_images": len(picked),
            "test_images": len(scored), "top1_agreement": float((fp32_top1 == int8_top1).mean()),
            "fp32_accuracy": fp32_acc, "int8_accuracy": int8_acc, "accuracy_delta": int8_acc - fp32_acc}
