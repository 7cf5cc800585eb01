"""Export of the base branch: ONNX (checked with onnxruntime) and TorchScript, dynamic batch, loud failures."""
import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from qcslib import QCSConfig, QCSNet, save_checkpoint
from qcslib import export as export_module
from qcslib.export import ExportError, export


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = QCSNet(QCSConfig.sized("tiny", variant="qcs", num_classes=7)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, classes=["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"])
    return path, model


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_reproduces_the_base_branch_at_any_batch(checkpoint, tmp_path, fmt):
    path, model = checkpoint
    result = export(path, fmt, tmp_path / f"m.{fmt}")
    assert result["max_abs_diff"] <= 1e-4 and result["classes"][1] == "happy" and result["image_size"] == 64
    x = torch.randn(11, 3, 64, 64)  # a batch size the check did not use
    with torch.no_grad():
        expected = model.base(x).numpy()
    if fmt == "onnx":
        got = onnxruntime.InferenceSession(result["path"]).run(None, {"images": x.numpy()})[0]
    else:
        got = torch.jit.load(result["path"])(x).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_an_export_that_drifts_is_an_error(checkpoint, tmp_path, monkeypatch):
    path, _ = checkpoint
    real_load = torch.jit.load
    monkeypatch.setattr(export_module.torch.jit, "load", lambda f: (lambda x: real_load(f)(x) + 1e-3))
    with pytest.raises(ExportError, match=r"m.pt: the torchscript export differs from PyTorch by max \|Δ\| = 0.001"):
        export(path, "torchscript", tmp_path / "m.pt")


def test_export_command(checkpoint, tmp_path):
    path, _ = checkpoint
    ok = subprocess.run([sys.executable, "-m", "qcslib", "export", "--checkpoint", str(path), "--format", "torchscript",
                         "--out", str(tmp_path / "cli.pt")], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["format"] == "torchscript" and (tmp_path / "cli.pt").exists()
    missing = subprocess.run([sys.executable, "-m", "qcslib", "export", "--checkpoint", str(tmp_path / "none.pt"),
                              "--format", "onnx"], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "none.pt" in missing.stderr and missing.stderr.count("\n") == 1
