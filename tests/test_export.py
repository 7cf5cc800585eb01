"""Export of the base branch: ONNX (checked with onnxruntime) and TorchScript, dynamic batch, loud failures."""
import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from qcslib import export as export_module
from qcslib.export import ExportError, export


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


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


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    from qcslib.__main__ import main
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "none.pt" in err and err.count("\n") == 1


@pytest.mark.parametrize("where", ["under a file", "the checkpoint", "a folder"])
def test_export_refuses_an_out_it_cannot_or_must_not_write(checkpoint, tmp_path, capsys, where):
    from qcslib.__main__ import main
    path, _ = checkpoint
    (tmp_path / "notes.txt").write_text("keep")
    out = {"under a file": tmp_path / "notes.txt" / "m.pt", "the checkpoint": path, "a folder": tmp_path}[where]
    before = path.read_bytes()
    assert main(["export", "--checkpoint", str(path), "--format", "torchscript", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m qcslib export: error: --out {out}: ") and err.count("\n") == 1
    assert path.read_bytes() == before and (tmp_path / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_int8_export_refuses_to_replace_the_checkpoint(checkpoint):
    from qcslib.export import export_int8
    path, _ = checkpoint
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"is the checkpoint itself, which the export would replace"):
        export_int8(path, path, "dynamic", "synthfer", "no/data")
    assert path.read_bytes() == before
