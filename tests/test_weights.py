"""Weight files: the authors' checkpoints reproduce their logits, ir50.pth loads whole, bad files fail loudly."""
import os
import pickle

import pytest
import torch
import torchvision

from qcslib import CheckpointError, QCSConfig, QCSNet, load_backbone_weights, load_checkpoint, load_official_checkpoint
from tests.official_reference import official_forward, random_official_state_dict, write_official_checkpoint

# (variant, classes, old embed names, DCS_8cls_affectnet's unused fusion head); 8-class DCS has the raw residual
CASES = {"qcs7": ("qcs", 7, False, False), "dcs8": ("dcs", 8, True, True), "dcs7": ("dcs", 7, False, False)}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Official-format checkpoints, written as the authors' training script writes them."""
    files = {}
    for name, (variant, classes, old_names, fusion) in CASES.items():
        sd = random_official_state_dict(variant, classes, seed=len(files), old_names=old_names, with_fusion=fusion)
        path = tmp_path_factory.mktemp(name) / f"{name}.pth"
        write_official_checkpoint(path, sd, epoch=31, best_acc=92.5)
        files[name] = (path, sd)
    return files


def quadruplet(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 224, 224, generator=g) for _ in range(n)]


def assert_one_line_naming(error, path):
    message = str(error.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("name", CASES)
def test_official_checkpoint_reproduces_the_official_logits(official, name):
    path, sd = official[name]
    variant, classes, _, fusion = CASES[name]
    model, report = load_official_checkpoint(path)
    assert not model.training and model.config.variant == variant and model.config.num_classes == classes
    x = quadruplet(4 if variant == "qcs" else 2)
    base, cross = official_forward(sd, x, variant, residual_from_norm=not (variant == "dcs" and classes == 8))
    with torch.no_grad():
        out = model.forward_train(*x)
        single = model(x[0])
    n = len(x)
    assert len(base) == len(cross) == len(out.base_logits) == len(out.cross_logits) == n  # no head left out
    for expected, got in zip(base + cross, out.base_logits + out.cross_logits, strict=True):
        assert expected.abs().max() > 0.5  # the logits are not degenerate
        assert (expected - got).abs().max() < 5e-5
    assert (single - base[0]).abs().max() < 5e-5
    assert report.meta == {"variant": variant, "num_classes": classes, "epoch": 31, "best_acc": 92.5}
    assert len(report.ignored) == 34 + 2 * fusion  # weights the official model registers and never uses
    assert {"__main__.RecorderMeter_loss", "__main__.RecorderMeter_matrix"} <= set(report.stubbed)
    assert not report.missing and not report.unexpected


def test_load_checkpoint_recognises_official_files(official):
    model, report = load_checkpoint(official["qcs7"][0], num_classes=7)
    assert model.config.variant == "qcs" and report.meta["epoch"] == 31


def test_a_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    sd = random_official_state_dict("qcs", 7)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "recorder": Payload()}, path)
    with pytest.raises(CheckpointError, match=f"refused: reading it would call {os.system.__module__}.system") as e:
        load_official_checkpoint(path)
    assert_one_line_naming(e, path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: an unrestricted load runs it
    assert marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_official_checkpoint(tmp_path / "QCS_raf-db.pth")
    assert_one_line_naming(e, tmp_path / "QCS_raf-db.pth")


def test_truncated_file(official, tmp_path):
    path = tmp_path / "truncated.pth"
    data = official["qcs7"][0].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as e:
        load_official_checkpoint(path)
    assert_one_line_naming(e, path)


def test_checkpoint_for_another_class_count(official):
    path = official["dcs8"][0]
    with pytest.raises(CheckpointError, match=r"8-class checkpoint .* expected 7 classes") as e:
        load_official_checkpoint(path, num_classes=7)
    assert_one_line_naming(e, path)


def test_plain_image_classifier_state_dict(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a QCS/DCS checkpoint .* conv1.weight") as e:
        load_official_checkpoint(path)
    assert_one_line_naming(e, path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="expected an official QCS/DCS checkpoint: a state_dict") as e:
        load_official_checkpoint(path)
    assert_one_line_naming(e, path)


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("VIT_cross.norm.bias"), r"1 missing \(VIT_cross.norm.bias\)"),
    (lambda sd: sd.__setitem__("conv2.weight", torch.zeros(128, 128, 1, 1)), "1 of the wrong shape .conv2.weight"),
    (lambda sd: sd.__setitem__("landmark_net.weight", torch.zeros(3)), "that no official QCS/DCS model has"),
])
def test_incomplete_or_foreign_checkpoint_loads_nothing(tmp_path, damage, message):
    sd = random_official_state_dict("qcs", 7)
    damage(sd)
    path = tmp_path / "damaged.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=message) as e:
        load_official_checkpoint(path)
    assert_one_line_naming(e, path)


@pytest.fixture(scope="module")
def ir50(tmp_path_factory):
    """An ir50.pth as released: the IR-50 face recognition network, output layer included."""
    sd = random_official_state_dict("qcs", 7, seed=5)
    path = tmp_path_factory.mktemp("ir50") / "ir50.pth"
    weights = {k.removeprefix("ir_back."): v for k, v in sd.items() if k.startswith("ir_back.")}
    torch.save(weights, path)
    return path, weights


def test_backbone_weights_load_whole(ir50):
    path, weights = ir50
    model = QCSNet()
    report = load_backbone_weights(model, path)
    own = model.base.backbone.state_dict()
    assert len(report.matched) == len(own) and not report.missing
    assert sorted(report.unexpected) == sorted(k for k in weights if k.startswith("output_layer."))
    assert all(torch.equal(own[k], weights[k]) for k in own)


def test_backbone_weights_accept_prefixed_keys(ir50, tmp_path):
    path = tmp_path / "prefixed.pth"
    torch.save({"state_dict": {f"module.ir_back.{k}": v for k, v in ir50[1].items()}}, path)
    report = load_backbone_weights(QCSNet().base, path)
    assert len(report.unexpected) == 12


def test_incomplete_backbone_file_loads_nothing(ir50, tmp_path):
    weights = dict(ir50[1])
    del weights["body3.13.res_layer.4.running_var"]
    path = tmp_path / "partial.pth"
    torch.save(weights, path)
    model = QCSNet()
    before = {k: v.clone() for k, v in model.base.backbone.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"only \d+ of \d+ IR-50 backbone tensors match .*1 missing") as e:
        load_backbone_weights(model, path)
    assert_one_line_naming(e, path)
    assert all(torch.equal(before[k], v) for k, v in model.base.backbone.state_dict().items())


def test_backbone_of_another_size_is_an_error(ir50):
    with pytest.raises(CheckpointError, match="of the wrong shape"):
        load_backbone_weights(QCSNet(QCSConfig.sized("tiny")), ir50[0])
    with pytest.raises(TypeError, match="expected a QCSNet"):
        load_backbone_weights(torch.nn.Linear(2, 2), ir50[0])


@pytest.mark.parametrize("content, message", [
    (pickle.dumps("not a checkpoint", protocol=2)[:5] + b"\x00", r"not readable as a torch.save file: it ends early"),
    (b"<html>Google Drive: virus scan warning</html>", r"not a torch.save file \(it starts with b'<htm'\)"),
])
def test_files_that_are_not_checkpoints(tmp_path, content, message):
    path = tmp_path / "download.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(path)
    assert_one_line_naming(e, path)
