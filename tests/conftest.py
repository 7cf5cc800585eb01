"""Session fixtures: what many test modules need, made once per test run. Tests read them and never write to
them (training writes its runs under each test's own tmp_path)."""
import pytest
import torch

from qcslib import QCSConfig, QCSNet, save_checkpoint
from qcslib.data.synthfer import generate
from qcslib.train import load_profile

CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """The smoke profile's SynthFER (20 identities × 28 images at 48 px)."""
    return generate(tmp_path_factory.mktemp("data") / "synthfer-smoke", load_profile("smoke").synthfer)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny QCS (seed 0) with the RAF-DB class names, saved as a checkpoint → (path, model in eval)."""
    torch.manual_seed(0)
    model = QCSNet(QCSConfig.sized("tiny", variant="qcs", num_classes=len(CLASSES))).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, classes=CLASSES)
    return path, model
