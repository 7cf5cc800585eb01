"""int8 ONNX export (qcslib.export.export_int8): static QDQ calibrated on train images, dynamic for the linear
layers, each scored against fp32 on the test split; the CLI's JSON and its one-line errors."""
import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from qcslib import QCSConfig, QCSNet, save_checkpoint
from qcslib import export as export_module
from qcslib.__main__ import main
from qcslib.data.sources import load_split
from qcslib.data.synthfer import SynthFERSettings, generate
from qcslib.export import _images, export_int8

AGREEMENT = 0.85  # static int8 agreed on 25 (16 calibration images) and 27 (28) of these 28 test images; calibrated
                  # on images scaled by 0.01, on 1


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small SynthFER (2 train, 2 test identities × 14 images) and a tiny QCSNet fitted to its train split for
    30 full-batch steps, so that its predictions vary over the test images; saved with its training config."""
    tmp = tmp_path_factory.mktemp("int8")
    settings = SynthFERSettings(size=48, train_identities=2, val_identities=1, test_identities=2,
                                images_per_identity=14)
    generate(tmp / "synthfer", settings, workers=1)
    torch.manual_seed(0)
    model = QCSNet(QCSConfig.sized("tiny", num_classes=7))
    train = load_split("synthfer", tmp / "synthfer", "train")
    x, y = torch.from_numpy(_images(train, np.arange(len(train)), "rafdb", 64)), torch.from_numpy(train.labels)
    optimizer = torch.optim.Adam(model.base.parameters(), 1e-3)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model.base(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp / "tiny.pt"
    save_checkpoint(path, model.eval(), classes=list(settings.class_names),
                    train_config={"dataset": "synthfer", "data_root": str(tmp / "synthfer"), "transform": "rafdb"})
    test = load_split("synthfer", tmp / "synthfer", "test")
    with torch.no_grad():
        top1 = model.base(torch.from_numpy(_images(test, np.arange(len(test)), "rafdb", 64))).argmax(1).numpy()
    assert len(set(top1)) >= 3  # agreement on a model that predicts one class would mean nothing
    return path, top1, test.labels


def ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(path).graph.node}


def test_static_int8_is_qdq_and_agrees_with_fp32(fitted, tmp_path):
    path, top1, labels = fitted
    result = export_int8(path, tmp_path / "m.onnx", "static", calibration=28)
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops(result["path"])
    assert result["calibration_images"] == 28 and result["test_images"] == len(labels) == 28
    assert result["fp32_accuracy"] == pytest.approx(100 * (top1 == labels).mean())  # fp32 ONNX = PyTorch
    assert result["top1_agreement"] >= AGREEMENT
    assert result["accuracy_delta"] == pytest.approx(result["int8_accuracy"] - result["fp32_accuracy"])
    x = torch.from_numpy(_images(load_split("synthfer", result["data_root"], "test"), np.arange(5), "rafdb", 64))
    logits = onnxruntime.InferenceSession(result["path"]).run(None, {"images": x.numpy()})[0]
    assert logits.shape == (5, 7) and logits.dtype == np.float32


def test_a_wrong_calibration_fails_the_agreement_threshold(fitted, tmp_path, monkeypatch):
    """Calibrated on images scaled by 0.01, the activation ranges are too narrow and most activations clip."""
    path, _, _ = fitted
    real = export_module._images
    monkeypatch.setattr(export_module, "_images", lambda split, indices, recipe, size: real(
        split, indices, recipe, size) * (0.01 if split.split == "train" else 1.0))
    assert export_int8(path, tmp_path / "m.onnx", "static", calibration=28)["top1_agreement"] < AGREEMENT


def test_dynamic_int8_quantises_the_linear_layers_without_calibration(fitted, tmp_path):
    path, _, labels = fitted
    result = export_int8(path, tmp_path / "m.onnx", "dynamic", test_images=20)
    kinds = ops(result["path"])
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= kinds and "QuantizeLinear" not in kinds
    assert result["calibration_images"] == 0 and result["test_images"] == 20 and result["top1_agreement"] >= AGREEMENT


def test_a_limited_test_sample_is_drawn_at_random_with_the_seed(fitted, tmp_path, monkeypatch):
    """20 of the 28 test images (2 identities × 14, stored in runs): a seeded random sample, not the first 20."""
    path, top1, labels = fitted
    real, drawn = export_module._images, []
    monkeypatch.setattr(export_module, "_images", lambda split, indices, recipe, size: drawn.append(
        (split.split, list(indices))) or real(split, indices, recipe, size))
    result = export_int8(path, tmp_path / "m.onnx", "dynamic", test_images=20, seed=3)
    expected = np.sort(np.random.default_rng(3).choice(28, 20, replace=False))
    assert drawn == [("test", list(expected))] and list(expected) != list(range(20))
    assert result["test_images"] == 20
    assert result["fp32_accuracy"] == pytest.approx(100 * (top1[expected] == labels[expected]).mean())


def test_int8_command_prints_the_agreement_and_bad_input_is_one_line(fitted, tmp_path, capsys):
    path, _, _ = fitted  # in this process: test_export runs the export command end to end
    assert main(["export", *map(str, ["--checkpoint", path, "--format", "onnx", "--int8", "--test-images", 10,
                                      "--out", tmp_path / "cli.onnx"])]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "dynamic" and result["test_images"] == 10 and (tmp_path / "cli.onnx").exists()
    assert {"top1_agreement", "fp32_accuracy", "int8_accuracy", "accuracy_delta"} <= set(result)
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, QCSNet(QCSConfig.sized("tiny", num_classes=7)))
    for args, message in [
        (["--checkpoint", path, "--format", "torchscript", "--int8"], "--int8 quantises an onnx export; got "
                                                                       "--format torchscript"),
        (["--checkpoint", path, "--format", "onnx", "--data-root", tmp_path], "--data-root apply to --int8 only"),
        (["--checkpoint", bare, "--format", "onnx", "--int8"], "bare.pt: stores no training dataset/data_root"),
        (["--checkpoint", path, "--format", "onnx", "--int8", "--data-root", tmp_path / "none"], "none"),
        (["--checkpoint", path, "--format", "onnx", "--int8", "--calibration", 8],
         "calibration applies to static int8 only"),
        (["--checkpoint", path, "--format", "onnx", "--int8", "static", "--calibration", 0], "must be ≥ 1 images"),
    ]:
        assert main(["export", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("python -m qcslib export: error:"), err
