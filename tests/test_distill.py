"""Distillation: the KD loss on known numbers, the teacher-logit cache, the kd config, a distilled student
through fit (resume, DDP) and then evaluate, predict and export."""
import dataclasses
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from qcslib import QCSConfig, QCSNet, save_checkpoint
from qcslib.__main__ import main
from qcslib.data.datasets import CachedImages
from qcslib.data.sources import Split, load_split, read_image
from qcslib.data.transforms import build_transforms
from qcslib.models.weights import load_checkpoint
from qcslib.models.student import StudentNet
from qcslib.train import ConfigError, distill, load_data, load_profile, loop
from qcslib.train.config import TrainConfig
from qcslib.train.distillation import DistillationTask, teacher_targets
from qcslib.train.distributed import World
from qcslib.train.loop import distill_config
from qcslib.train.evaluation import evaluate_checkpoint
from qcslib.train.losses import distillation_loss
from qcslib.train.tasks import QuadrupletTask
from tests.test_faces import TemplateDetector

STUDENT = "mobilenetv3_small_050"


def test_kd_loss_on_hand_computed_numbers():
    # T = 2: z_t / T = (ln 3, 0) → p_t = (3/4, 1/4); z_s = 0 → p_s = (1/2, 1/2); y = 0 → CE = ln 2
    z_s, z_t, y = torch.zeros(1, 2), torch.tensor([[2 * math.log(3), 0.0]]), torch.tensor([0])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    loss, (ce, kd, feature) = distillation_loss(z_s, y, z_t, temperature=2.0, alpha=0.25)
    assert ce.item() == pytest.approx(math.log(2)) and kd.item() == pytest.approx(4 * kl) and feature.item() == 0
    assert loss.item() == pytest.approx(0.75 * math.log(2) + 0.25 * 4 * kl)
    # the feature term: β (1/D) ‖P f_s − f_t‖² = 0.5 · (1² + 2²) / 2
    with_features, parts = distillation_loss(z_s, y, z_t, 2.0, 0.25, torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2),
                                             beta=0.5)
    assert parts[2].item() == pytest.approx(2.5) and with_features.item() == pytest.approx(loss.item() + 1.25)


def test_alpha_zero_is_plain_cross_entropy_and_matching_the_teacher_costs_nothing():
    g = torch.Generator().manual_seed(0)
    z_s, z_t, y = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g), torch.tensor([0, 3, 6, 2, 2])
    assert distillation_loss(z_s, y, z_t, 3.0, alpha=0.0)[0].item() == pytest.approx(F.cross_entropy(z_s, y).item())
    assert distillation_loss(z_t, y, z_t, 3.0, alpha=1.0)[0].item() == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small SynthFER (smoke settings, fewer identities), a tiny QCS teacher saved as a checkpoint, and the
    student distilled from it for one epoch with the feature term on."""
    from qcslib.data.synthfer import generate
    tmp = tmp_path_factory.mktemp("distill")
    root = tmp / "synthfer"
    overrides = [f"runs_dir={tmp / 'runs'}", f"data_root={root}", "synthfer.train_identities=3",
                 "synthfer.val_identities=1", "synthfer.test_identities=1", "synthfer.images_per_identity=14",
                 "epochs=1", "sam=false", "batch_size=8"]
    config = load_profile("smoke", overrides)
    generate(root, config.synthfer)
    classes = load_split("synthfer", root, "train").classes
    torch.manual_seed(0)
    teacher = QCSNet(config.model).eval()
    teacher_path = tmp / "teacher.pt"
    save_checkpoint(teacher_path, teacher, classes=list(classes))
    run = distill(config.replace(name="student"), teacher_path, STUDENT, temperature=2.0, alpha=0.5, beta=0.5,
                  progress=False)
    return config, root, teacher, teacher_path, run, overrides


def test_the_cache_runs_the_teacher_once_per_image_and_keys_rows_by_index(world):
    config, root, teacher, _, _, _ = world
    split = load_split("synthfer", root, "train")
    seen = []
    forward_features = teacher.forward_features
    teacher.forward_features = lambda x: (seen.append(len(x)), forward_features(x))[1]
    try:
        logits, features = teacher_targets(teacher, split, 32, config.transform, features=True, batch_size=16)
    finally:
        del teacher.forward_features
    assert sum(seen) == len(split) and logits.shape == (len(split), 7) and features.shape == (len(split), 32)
    transform = build_transforms(config.transform, 32, train=False)
    for i in (0, 17, len(split) - 1):  # row i is image i alone through the eval transform
        with torch.no_grad():
            z = teacher.forward_features(transform(read_image(split, i))[None])
            assert torch.allclose(logits[i], teacher.forward_head(z)[0], atol=1e-5)
            assert torch.allclose(features[i], teacher.forward_head(z, pre_logits=True)[0], atol=1e-5)


def test_a_distilled_run_has_the_train_layout_and_its_checkpoint_rebuilds_the_student(world):
    _, root, _, teacher_path, run, _ = world
    assert sorted(p.name for p in run.dir.iterdir()) == ["best.pt", "config.yaml", "confusion.csv", "data.json",
                                                         "last.pt", "metrics.csv", "summary.json", "version.json"]
    metrics = run.metrics()
    assert list(metrics.epoch) == [1] and metrics.loss_feature[0] > 0 and metrics.loss_kd[0] > 0
    # L = (1 − α) CE + α KD + β feature, with α = β = 0.5
    assert metrics.loss[0] == pytest.approx(0.5 * (metrics.loss_ce[0] + metrics.loss_kd[0] + metrics.loss_feature[0]))
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["student"] == summary["variant"] == STUDENT and summary["teacher"] == str(teacher_path)
    # the teacher's score is its own on the test split (the student's is checked against evaluate below)
    assert summary["teacher_test_accuracy"] == pytest.approx(
        evaluate_checkpoint(teacher_path, "synthfer", root, "test", device="cpu")["accuracy"])
    stored = yaml.safe_load((run.dir / "config.yaml").read_text())  # the student and the teacher, apart
    assert stored["objective"] == "kd" and stored["model"]["architecture"] == "timm"
    assert stored["model"]["timm_name"] == STUDENT and stored["distill"]["teacher"] == str(teacher_path)
    assert run.config.model.variant == STUDENT and run.config.distill.alpha == 0.5
    model, report = load_checkpoint(run.best_checkpoint)
    assert isinstance(model, StudentNet) and model.config.image_size == 32
    assert report.meta["timm_name"] == STUDENT and report.meta["num_classes"] == 7
    assert report.meta["dataset"] == "synthfer" and report.meta["classes"][0] == "neutral"


def test_the_student_goes_through_evaluate_predict_and_export(world, tmp_path):
    _, root, _, _, run, _ = world
    from qcslib.export import export
    from qcslib.faces import load_predictor, predict_photos
    result = evaluate_checkpoint(run.best_checkpoint, "synthfer", root, "test", device="cpu")
    assert result["accuracy"] == pytest.approx(run.summary["best"]["test_accuracy"])
    Image.new("RGB", (80, 80), (200, 150, 120)).save(tmp_path / "a.png")
    photos = predict_photos(load_predictor(run.best_checkpoint), [tmp_path / "a.png"], TemplateDetector())
    assert len(photos.faces) == 1 and set(photos.faces[0]["probabilities"]) == set(result["classes"])
    out = export(run.best_checkpoint, "onnx", tmp_path / "student.onnx")
    assert out["max_abs_diff"] <= 1e-4 and out["image_size"] == 32
    from qcslib.export import export_int8
    int8 = export_int8(run.best_checkpoint, tmp_path / "student.int8.onnx", test_images=8)
    # auto: a student is quantised statically, calibrated on the default 64 train images (or all, when fewer)
    assert int8["mode"] == "static" and int8["calibration_images"] == min(64, len(load_split("synthfer", root, "train")))


def test_the_student_reads_a_video(world, tmp_path):
    _, _, _, _, run, _ = world
    from qcslib.data.synthfer.video import ClipFaces, ClipSettings, write_clips
    from qcslib.faces import load_predictor
    from qcslib.video import VideoFile, predict_video
    clip = write_clips(tmp_path, ClipSettings(seed=1, fps=4, seconds=1.5, size=48))[0]
    summary = predict_video(load_predictor(run.best_checkpoint), VideoFile(clip["video"]), tmp_path / "out",
                            ClipFaces(clip["truth"]), every=2, smooth=0.3, progress=False)
    assert summary["frames"] == 6 and summary["frames_without_face"] == 0
    records = [json.loads(line) for line in open(tmp_path / "out" / "predictions.jsonl")]
    rounding = 0.5e-4 * len(records[0]["probabilities"])  # each probability is written to 4 decimals
    assert len(records) == 6 and all(math.isclose(sum(r["probabilities"].values()), 1, abs_tol=rounding)
                                     for r in records)


def test_bad_teachers_and_students_are_one_line_errors(world, tmp_path, capsys):
    _, _, _, teacher_path, _, overrides = world
    sets = [a for o in overrides for a in ("--set", o)]
    eight = QCSNet(QCSConfig.sized("tiny", num_classes=8))
    save_checkpoint(tmp_path / "eight.pt", eight, classes=[f"c{i}" for i in range(8)])
    teacher, report = load_checkpoint(teacher_path)
    save_checkpoint(tmp_path / "ferplus.pt", teacher, classes=report.meta["classes"],
                    train_config={"transform": "ferplus", "dataset": "synthfer"})
    for teacher, student, message in [(teacher_path, "no_such_net", "'no_such_net' is not a timm model name"),
                                      (tmp_path / "absent.pt", STUDENT, "absent.pt: no such file"),
                                      (tmp_path / "eight.pt", STUDENT, r"model.num_classes is 8 \(the teacher's"),
                                      (tmp_path / "ferplus.pt", STUDENT, "ferplus transform recipe, the config has "
                                                                         "rafdb; --set transform=ferplus")]:
        code = main(["distill", "--teacher", str(teacher), "--student", student, "--profile", "smoke", *sets,
                     "--run-dir", str(tmp_path / "run")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert re.search(message, err), err


def test_an_interrupted_distillation_resumes_to_the_same_result(world, monkeypatch):
    config, _, _, teacher_path, _, _ = world
    config = config.replace(epochs=2)
    kwargs = dict(temperature=2.0, alpha=0.5, beta=0.5, progress=False)
    whole = distill(config.replace(name="whole"), teacher_path, STUDENT, **kwargs)
    calls, evaluate = [], loop.evaluate

    def interrupt_in_the_second_epoch(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kw)

    monkeypatch.setattr(loop, "evaluate", interrupt_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        distill(config.replace(name="resumed"), teacher_path, STUDENT, **kwargs)
    monkeypatch.setattr(loop, "evaluate", evaluate)
    run_dir = whole.dir.parent / "resumed"
    with pytest.raises(ConfigError, match="already holds a run"):
        distill(config.replace(name="resumed"), teacher_path, STUDENT, **kwargs)
    with pytest.raises(ConfigError, match=r"another recipe \(distill: "):
        distill(config.replace(name="resumed"), teacher_path, STUDENT, resume=run_dir / "last.pt",
                **{**kwargs, "alpha": 0.0})
    resumed = distill(config.replace(name="resumed"), teacher_path, STUDENT, resume=run_dir / "last.pt", **kwargs)
    timing = ["train_seconds", "eval_seconds", "samples_per_s"]
    assert len(resumed.metrics()) == 2
    assert resumed.metrics().drop(columns=timing).equals(whole.metrics().drop(columns=timing))
    assert resumed.summary["best"] == whole.summary["best"]


def test_teacher_online_runs_the_teacher_on_every_training_batch_instead_of_the_cache(world, monkeypatch):
    from qcslib.train import distillation as distill_module
    config, _, _, teacher_path, _, _ = world
    monkeypatch.setattr(distill_module, "teacher_targets", lambda *a, **k: pytest.fail("the cache was built"))
    seen, outputs = [], distill_module.teacher_outputs
    monkeypatch.setattr(distill_module, "teacher_outputs", lambda t, x, f: (seen.append(len(x)), outputs(t, x, f))[1])
    run = distill(config.replace(name="online"), teacher_path, STUDENT, teacher_online=True, progress=False)
    assert sum(seen) == len(load_split("synthfer", config.data_root, "train"))  # one epoch: every image once
    assert run.metrics().loss_kd[0] > 0 and run.config.distill.teacher_online


def test_students_augmented_on_the_device_train_reproducibly_from_the_cache(world):
    config, _, _, teacher_path, _, _ = world
    runs = [distill(config.replace(name=f"dev{i}", augment_on_device=True), teacher_path, STUDENT, progress=False)
            for i in range(2)]
    plain = distill(config.replace(name="per-image"), teacher_path, STUDENT, progress=False)
    a, b, c = (r.metrics().drop(columns=["train_seconds", "eval_seconds", "samples_per_s"]) for r in (*runs, plain))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)  # the same recipe, drawn differently
    assert np.isfinite(a["loss"]).all() and runs[0].config.augment_on_device


def test_cached_images_gather_a_batch_of_cached_pixels_with_labels_and_indices():
    split = Split("synthfer", "train", Path("."), ["a", "b"], np.array([0, 1, 1, 0]), ["0", "1", "2", "3"], None, None)
    cache = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    images, labels, index = CachedImages(split, cache).__getitems__([(2, 11), (0, 12)])
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 2, 2)
    assert torch.equal(images[0], torch.from_numpy(cache[2]).permute(2, 0, 1))
    assert labels.tolist() == [1, 0] and index.tolist() == [2, 0]
    with pytest.raises(ValueError, match="the image cache holds 3 images, the split 4"):
        CachedImages(split, cache[:3])


def test_the_distill_command_names_its_run_after_the_profile_and_the_student(world, capsys):
    config, _, _, teacher_path, _, overrides = world
    sets = [a for o in overrides + ["name=cli", "augment_on_device=true", "hue=0.5"] for a in ("--set", o)]
    assert main(["distill", "--teacher", str(teacher_path), "--student", STUDENT, "--profile", "smoke", *sets,
                 "--alpha", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_dir"] == str(config.run_dir.parent / f"cli-{STUDENT}") and printed["distill"]["alpha"] == 0
    stored = yaml.safe_load(open(Path(printed["run_dir"]) / "config.yaml"))
    assert stored["augment_on_device"] is True and stored["hue"] == 0.5  # kept


def test_distill_resume_goes_on_in_the_folder_of_its_last_pt(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import qcslib.__main__ as cli
    seen = []
    monkeypatch.setattr(cli, "distill", lambda config, *args, **kwargs: (
        seen.append((config.run_dir, kwargs["resume"])), SimpleNamespace(dir=config.run_dir, summary={}))[1])
    last = tmp_path / "mine" / "last.pt"
    base = ["distill", "--teacher", "teacher.pt", "--student", STUDENT, "--profile", "smoke"]
    assert main([*base, "--resume", str(last)]) == 0
    assert main([*base, "--resume", str(last), "--run-dir", str(tmp_path / "elsewhere")]) == 0
    assert seen == [(last.parent, str(last)), (tmp_path / "elsewhere", str(last))]


def test_a_kd_config_names_the_student_and_the_teacher_apart_and_round_trips(world, tmp_path):
    config, _, _, teacher_path, _, _ = world
    kd = distill_config(config, teacher_path, config.model, STUDENT, temperature=2.0, alpha=0.5)
    assert kd.objective == "kd" and kd.model.timm_name == STUDENT and kd.model.image_size == config.model.image_size
    assert kd.distill.teacher == str(teacher_path) and kd.backbone_weights is None
    values = yaml.safe_load(yaml.safe_dump(kd.to_dict()))
    assert TrainConfig.from_dict(values) == kd
    assert load_profile("smoke", [f"{k}={json.dumps(v)}" for k, v in values.items() if k in ("objective", "model",
                                  "distill")] + ["augment_on_device=false", "distill.alpha=0.25"]).distill.alpha == 0.25
    for changes, message in [({"oversample": True}, "oversample=True: objective kd does not support"),
                             ({"objective": "quadruplet"}, f"model: objective quadruplet trains a QCS model, got a "
                                                           f"{STUDENT} student"),
                             ({"model": config.model}, "model: objective kd trains a timm student"),
                             ({"distill": None}, "distill: objective kd needs the distill section"),
                             ({"hue": 0.7}, "hue must be in [0, 0.5] (a fraction of the hue circle; the recipes' is "
                                            "0.1), got 0.7"),
                             ({"transform": "ferplus", "hue": 0.5}, "hue=0.5: the ferplus recipe has no colour "
                                                                    "jitter to widen")]:
        with pytest.raises(ConfigError, match=re.escape(message)) as error:
            kd.replace(**changes)
        assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="distill: is for objective kd only"):
        config.replace(distill=kd.distill)


def test_teacher_online_with_the_feature_term_trains_resumes_mid_epoch_and_exports(world, monkeypatch, tmp_path,
                                                                                    capsys):
    """The online teacher's features are a target the feature term's backward saves: inference tensors could not be.
    6 steps per epoch (42 images, batches of 8): Ctrl-C after call 8 is step 2 of epoch 2."""
    config, _, _, teacher_path, _, _ = world
    config = config.replace(epochs=2)
    kwargs = dict(temperature=2.0, alpha=0.5, beta=0.5, teacher_online=True, progress=False)
    whole = distill(config.replace(name="online-whole"), teacher_path, STUDENT, **kwargs)
    cut = config.replace(name="online-cut")
    real, calls = loop.train_step, []

    def step(*args, **kw):
        out = real(*args, **kw)
        calls.append(1)
        if len(calls) == 8:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    with monkeypatch.context() as m:
        m.setattr(loop, "train_step", step)
        with pytest.raises(KeyboardInterrupt):
            distill(cut, teacher_path, STUDENT, **kwargs)
    state = torch.load(cut.run_dir / "last.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (1, 2) and state["projection"] is not None
    resumed = distill(cut, teacher_path, STUDENT, resume=cut.run_dir / "last.pt", **kwargs)
    timing = ["train_seconds", "eval_seconds", "samples_per_s"]
    assert resumed.metrics().drop(columns=timing).equals(whole.metrics().drop(columns=timing))
    assert resumed.metrics().loss_feature.gt(0).all()
    out = tmp_path / "student.onnx"
    assert main(["export", "--checkpoint", str(resumed.best_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["max_abs_diff"] <= 1e-4 and out.is_file()


@pytest.mark.parametrize("objective", ["kd", "quadruplet"])
def test_every_epoch_and_seed_augments_anew_whatever_the_workers(world, objective):
    """Every training image is one image here, so batches differ only by their augmentation draws: a loader whose
    workers were seeded alike every epoch (or for every seed) would repeat them."""
    config, _, _, teacher_path, _, _ = world
    if objective == "kd":
        config, build = distill_config(config, teacher_path, config.model, STUDENT), DistillationTask
    else:
        build = QuadrupletTask
    data = load_data(config)
    data = data._replace(train=dataclasses.replace(data.train, paths=[data.train.paths[0]] * len(data.train)))

    def images(seed, epoch, workers):
        task = build(config.replace(seed=seed, num_workers=workers), data, World(), torch.device("cpu"), False)
        task.sampler.set_epoch(epoch)
        return torch.cat([batch[0] for batch in task.loader])

    first = images(0, 0, 1)
    assert torch.equal(first, images(0, 0, 0))  # the worker process draws what the main one would
    for other in (images(0, 1, 1), images(1, 0, 1)):
        assert (first - other).flatten(1).abs().amax(1).gt(0).all()  # every image drawn anew


def test_distillation_runs_under_torchrun_in_two_processes(world, tmp_path):
    config, root, _, teacher_path, _, overrides = world
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "ddp"
    sets = [a for o in overrides for a in ("--set", o)]
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", str(port), "-m", "qcslib",
                           "distill", "--teacher", str(teacher_path), "--student", STUDENT, "--profile", "smoke", *sets,
                           "--beta", "0.5", "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1",
                                             "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"run_dir"') == 1  # only rank 0 reports
    assert {p.name for p in run_dir.iterdir()} == {"config.yaml", "metrics.csv", "last.pt", "best.pt",
                                                    "confusion.csv", "summary.json", "data.json", "version.json"}
    train = len(load_split("synthfer", root, "train"))
    assert pd.read_csv(run_dir / "metrics.csv")["steps"].tolist() == [-(-(-(-train // 2)) // 8)]  # a shard each
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["variant"] == summary["student"] == STUDENT and summary["teacher"] == str(teacher_path)
