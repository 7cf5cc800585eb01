"""Calibrated confidence: ECE, temperature scaling, and the temperature stored in a checkpoint and applied by
predict and the exports."""
import json
import shutil

import numpy as np
import pandas as pd
import onnxruntime
import pytest
import torch

from qcslib import confidence, students
from qcslib.__main__ import main
from qcslib.analysis import findings, tables
from qcslib.analysis.calibration import (expected_calibration_error, fit_temperature, negative_log_likelihood,
                                         reliability, scaled)
from qcslib.confidence import Tempered, calibrate, calibration
from qcslib.export import export
from qcslib.faces import classify, load_predictor
from qcslib.models.weights import CheckpointError, load_checkpoint
from qcslib.train.evaluation import evaluate_checkpoint


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_ece_is_the_weighted_gap_between_accuracy_and_confidence_per_bin():
    # two images at confidence 0.9 (one right), two at 0.6 (both right): |0.5 − 0.9| · 2/4 + |1 − 0.6| · 2/4
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(p, y) == pytest.approx(0.4)
    table = reliability(p, y)
    assert len(table) == 15 and table["images"].sum() == 4
    full = table.dropna()
    assert full["images"].tolist() == [2, 2] and full["accuracy"].tolist() == [1.0, 0.5]
    assert full["confidence"].tolist() == pytest.approx([0.6, 0.9])
    assert expected_calibration_error(np.eye(3), [0, 1, 2]) == 0  # sure and right
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\)"):
        expected_calibration_error(p, [0, 1, 2, 0])
    with pytest.raises(ValueError, match="expected probabilities"):
        expected_calibration_error(p, [0, 1])


def test_the_fitted_temperature_is_the_one_that_made_the_labels():
    rng = np.random.default_rng(0)
    z = 3 * rng.normal(size=(20000, 7))
    y = np.array([rng.choice(7, p=q) for q in softmax(z / 2.5)])  # the truth is z / 2.5: softmax(z) overconfident
    p = softmax(z)
    t = fit_temperature(p, y)
    assert t == pytest.approx(2.5, rel=0.05)
    after = scaled(p, t)
    assert expected_calibration_error(after, y) < 0.02 < expected_calibration_error(p, y)
    assert negative_log_likelihood(after, y) < negative_log_likelihood(p, y)
    np.testing.assert_array_equal(after.argmax(1), p.argmax(1))  # the accuracy does not move
    np.testing.assert_allclose(scaled(p, 1.0), p, atol=1e-12)
    np.testing.assert_allclose(scaled(p, t), softmax(z / t), atol=1e-9)  # on probabilities as on logits
    assert fit_temperature(softmax(z / 2.5 * 0.4), y) == pytest.approx(0.4, rel=0.05)  # under-confident: T < 1
    with pytest.raises(ValueError, match="temperature must be > 0"):
        scaled(p, 0)


def test_tempered_divides_the_logits_and_keeps_the_config(tiny_checkpoint):
    _, model = tiny_checkpoint
    wrapped = Tempered(model, 2.0)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), model(x) / 2)
    assert wrapped.config is model.config and not wrapped.training  # model is in eval mode
    assert confidence.tempered(model, {}) is model and isinstance(confidence.tempered(model, {"temperature": 3.0}),
                                                                  Tempered)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        Tempered(model, -1.0)


def test_calibrate_stores_the_temperature_that_predict_and_export_apply(tiny_checkpoint, smoke_data, tmp_path,
                                                                        capsys):
    source, model = tiny_checkpoint
    path = tmp_path / "tiny.pt"
    shutil.copy(source, path)
    assert main(["calibrate", "--checkpoint", str(path), "--dataset", "synthfer", "--root", str(smoke_data),
                 "--device", "cpu", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert "temperature" not in load_checkpoint(path)[1].meta  # a dry run writes nothing

    result = calibrate(path, "synthfer", smoke_data, device="cpu")
    assert result["temperature"] == pytest.approx(dry["temperature"])
    assert result["fit_split"] == "val" and result["images"] == 112
    assert result["nll_after"] <= result["nll_before"] + 1e-9  # the fit minimises the val NLL
    assert {"test_ece_before", "test_ece_after", "test_nll_before", "test_nll_after"} <= set(result)
    reloaded, report = load_checkpoint(path)
    assert report.meta["temperature"] == result["temperature"]
    for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()):  # the weights are untouched
        torch.testing.assert_close(a, b)
    again = calibration(path, "synthfer", smoke_data, device="cpu", write=False)  # from the raw logits again
    assert again.summary["temperature"] == pytest.approx(result["temperature"])
    probabilities, labels = again.scored["test"]
    assert probabilities.shape == (112, 7) and len(labels) == 112
    assert expected_calibration_error(again.after("test"), labels) == pytest.approx(result["test_ece_after"])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(result["test_ece_before"])
    evaluated = evaluate_checkpoint(path, "synthfer", smoke_data, device="cpu")  # what `evaluate` prints
    assert evaluated["temperature"] == result["temperature"]
    assert evaluated["ece"] == pytest.approx(result["test_ece_after"])
    assert evaluated["ece_unscaled"] == pytest.approx(result["test_ece_before"])
    assert "ece_unscaled" not in evaluate_checkpoint(source, "synthfer", smoke_data, device="cpu")

    predictor = load_predictor(path)
    assert isinstance(predictor.model, Tempered) and predictor.model.config.image_size == 64
    crops = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        raw = torch.softmax(model(crops), 1).numpy()
    np.testing.assert_allclose(classify(predictor.model, crops), scaled(raw, result["temperature"]), atol=1e-5)

    exported = export(path, "onnx", tmp_path / "m.onnx")
    assert exported["temperature"] == result["temperature"]
    got = onnxruntime.InferenceSession(exported["path"]).run(None, {"images": crops.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, (model.base(crops) / result["temperature"]).numpy(), atol=1e-4)


def test_calibrate_refuses_an_official_checkpoint_in_one_line(tmp_path, capsys):
    from tests.official_reference import random_official_state_dict, write_official_checkpoint

    path = tmp_path / "official.pth"
    write_official_checkpoint(path, random_official_state_dict("qcs", 7, seed=1))
    with pytest.raises(CheckpointError, match="official.pth: not a qcslib checkpoint"):
        calibrate(path, "synthfer", tmp_path)
    table, kept = students.calibrations({"seed": None, "checkpoint": path},
                                        pd.DataFrame(columns=["variant", "seed", "run_dir"]))
    assert table.empty and kept == {}  # 10 with the authors' checkpoint as its teacher calibrates only the students
    assert main(["calibrate", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m qcslib calibrate: error: ") and err.count("\n") == 1


def test_the_calibration_tables_and_findings_read_the_summaries():
    summary = {"fit_split": "val", "temperature": 1.5, "ece_before": 0.1, "ece_after": 0.02,
               "test_ece_before": 0.12, "test_ece_after": 0.05}
    table = tables.calibration({"qcs": summary, "official": None})
    assert list(table.index) == ["qcs"]
    assert table.loc["qcs"].tolist() == [1.5, 10.0, 2.0, 12.0, 5.0]
    assert list(table.columns) == ["temperature", "val ECE % before", "val ECE % after", "test ECE % before",
                                   "test ECE % after"]
    assert tables.calibration({"official": None}) is None

    rows = pd.DataFrame([{"variant": "teacher", "seed": 0, "temperature": 1.5, "ece_before": 0.1, "ece_after": 0.02,
                          "test_ece_before": 0.12, "test_ece_after": 0.02},
                         {"variant": "kd", "seed": 0, "temperature": 2.0, "ece_before": 0.2, "ece_after": 0.01,
                          "test_ece_before": 0.2, "test_ece_after": 0.04},
                         {"variant": "kd", "seed": 1, "temperature": 3.0, "ece_before": 0.3, "ece_after": 0.03,
                          "test_ece_before": 0.3, "test_ece_after": 0.06}])
    view = students.calibration_view(rows)
    assert view.loc["teacher", "temperature"] == "1.50" and view.loc["teacher", "seeds"] == 1
    assert view.loc["kd", "test ECE % after"] == "5.00 ± 1.41" and view.loc["kd", "seeds"] == 2
    line = findings._calibration_line(rows)
    assert "the teacher 12.0 % → **2.0 %**, within the goal" in line
    assert "the KD students 25.0 % → **5.0 %** (mean over 2 seeds), above the goal" in line
