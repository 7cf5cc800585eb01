"""The training engine: profiles, SAM, the loss, fit (learning, determinism, resume, non-finite loss, DDP) and evaluate."""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from qcslib import QCSConfig, QCSNet, TrainOutput
from qcslib.__main__ import main
from qcslib.analysis.metrics import classification_metrics
from qcslib.models.weights import CheckpointError, load_checkpoint
from qcslib.train import SAM, ConfigError, Run, TrainingError, fit, head_names, load_profile, quadruplet_loss
from qcslib.data.sources import DataError, Split, load_split
from qcslib.train import evaluation, load_data, loop, tasks
from qcslib.train.config import PROFILE_DIR, TrainConfig, parse_overrides, synthfer_domain
from qcslib.train.evaluation import evaluate_checkpoint
from qcslib.train import rundir
from qcslib.train.loop import lr_factor, should_stop
from tests.official_reference import official_forward, random_official_state_dict, write_official_checkpoint

TIMING = ["train_seconds", "eval_seconds", "samples_per_s"]


def smoke(tmp_path, data, *overrides):
    return load_profile("smoke", [f"runs_dir={tmp_path}", f"data_root={data}", *overrides])


def without_timing(run_dir):
    return pd.read_csv(Path(run_dir) / "metrics.csv").drop(columns=TIMING)


# ------------------------------------------------------------------------------------------------ config

def test_every_profile_loads_and_the_paper_ones_follow_the_official_mains():
    names = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
    assert names == ["affectnet7", "affectnet8", "cpu", "ferplus", "rafdb", "smoke", "study"]
    configs = {n: load_profile(n) for n in names}
    official = {  # main_QCS_*.py defaults and models/QCS_*.py drop ratios
        "rafdb": dict(lr=3e-6, batch_size=24, epochs=200, transform="rafdb", negatives="data", oversample=False),
        "ferplus": dict(lr=3.5e-6, batch_size=24, epochs=150, transform="ferplus", negatives="data"),
        "affectnet7": dict(lr=4e-6, batch_size=24, epochs=150, transform="affectnet", negatives="balanced",
                           oversample=True, epoch_fraction=1 / 12),
        "affectnet8": dict(lr=4e-6, batch_size=24, epochs=100, transform="affectnet", negatives="balanced",
                           oversample=True, epoch_fraction=1 / 12),
    }
    for name, expected in official.items():
        c = configs[name]
        assert {k: getattr(c, k) for k in expected} == pytest.approx(expected), name
        assert (c.sam, c.rho, c.optimizer, c.weight_decay, c.lr_gamma) == (True, 0.05, "adam", 0.0, 0.98)
        m = c.model
        assert (m.variant, m.dim, m.image_size) == ("qcs", 768, 224)
    assert [configs[n].model.num_classes for n in official] == [7, 8, 7, 8]
    assert [configs[n].model.cross_drop for n in official] == [0.0, 0.2, 0.4, 0.0]
    assert [configs[n].model.attn_proj_drop for n in official] == [False, True, False, True]
    # checkpoints chosen on val: RAF-DB and AffectNet hold part of train out, FERPlus has its own val split
    assert [(configs[n].selection, configs[n].val_fraction) for n in official] == \
        [("val", 0.1), ("val", 0.0), ("val", 0.05), ("val", 0.05)]
    assert all(configs[n].selection == "val" for n in names)


def test_a_profile_can_start_from_another():
    study, cpu = load_profile("study"), load_profile("cpu")
    assert study.name == "study" and study.replace(name="cpu") == cpu
    from qcslib.notebook import notebook_parameters
    assert notebook_parameters("study").seeds == [0, 1, 2, 3, 4]
    assert notebook_parameters("study").tsne_points == notebook_parameters("cpu").tsne_points  # merged


def test_overrides_reach_nested_fields_and_parse_as_yaml():
    c = load_profile("cpu", ["lr=1e-4", "sam=false", "model.csa=s", "model.units=[1, 1, 1]",
                             "synthfer.bias_strength=0.9"])
    assert (c.lr, c.sam, c.model.csa, c.model.units) == (1e-4, False, "s", (1, 1, 1))
    assert c.synthfer.bias_strength == 0.9
    assert parse_overrides(["name=a=b"]) == {"name": "a=b"}


@pytest.mark.parametrize("override, message", [
    ("learning_rate=1", "unknown key 'learning_rate'"),
    ("model.depth=3", "unknown key(s) model.depth"),
    ("synthfer.hue=3", "unknown key(s) synthfer.hue"),
    ("lr.x=1", "'lr' has no sub-keys"),
    ("lr=fast", "lr must be float"),
    ("model.units=[1, 1]", "model.units must be a list of 3 int, got [1, 1]"),
    ("model.heads=many", "model.heads must be int"),
    ("synthfer.size=big", "synthfer.size must be int"),
    ("model.size=huge", "model.size must be one of paper, tiny"),
    ("epochs=true", "epochs must be int"),
    ("optimizer=sgd", "optimizer must be one of adam, adamw"),
    ("model.csa=bogus", "csa must be one of"),
    ("epoch_fraction=0", "epoch_fraction must be > 0"),
    ("selection=best", "selection must be one of val, test"),
    ("val_fraction=1", "val_fraction must be in [0, 1)"),
    ("schedule=step", "schedule must be one of exponential, cosine"),
    ("patience=-1", "need patience ≥ 0"),
    ("test_split=val", "must be three different splits"),
    ("lr", "is not key=value"),
    ("data_options.bogus=1", "data_options for synthfer: unknown option(s) bogus; it takes classes, image_root"),
])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_profile("smoke", [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_config_survives_its_yaml_and_names_the_override_in_errors():
    config = load_profile("cpu", ["model.csa=s", "synthfer.bias_strength=0.9"])
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config
    assert isinstance(config.model, QCSConfig) and config.model.units == (1, 1, 2)  # the tiny size's, kept
    with pytest.raises(ConfigError, match=r"smoke\.yaml with lr set: lr must be float"):
        load_profile("smoke", ["lr=fast"])
    with pytest.raises(ConfigError, match="model must be QCSConfig"):
        TrainConfig(model={"size": "tiny"})  # sections are typed: build them with from_dict


def test_a_synthfer_domain_is_a_profile_key_or_an_override_between_the_profile_and_the_rest(tmp_path):
    smoke = load_profile("smoke")
    pose = load_profile("smoke", ["synthfer_domain=pose"])
    assert pose.data_root == "data/synthfer-smoke-pose" and pose.synthfer.max_rotation == 15.0
    assert pose.synthfer.noise == smoke.synthfer.noise == 0.0 and pose.replace(data_root=smoke.data_root,
                                                                               synthfer=smoke.synthfer) == smoke
    assert synthfer_domain(smoke, "pose") == pose and synthfer_domain(smoke, "studio") == smoke
    assert load_profile("smoke", ["synthfer_domain=studio"]) == smoke
    later = load_profile("smoke", ["synthfer_domain=pose", "synthfer.max_rotation=10", "data_root=elsewhere"])
    assert (later.synthfer.max_rotation, later.synthfer.max_shift, later.data_root) == (10.0, 0.05, "elsewhere")
    profile = tmp_path / "grey.yaml"
    profile.write_text(yaml.safe_dump({"base": "smoke", "synthfer_domain": "style"}))
    grey = load_profile(profile)
    assert (grey.synthfer.saturation, grey.data_root) == (0.0, "data/synthfer-smoke-style")
    assert load_profile(profile, ["synthfer_domain=studio"]) == smoke  # the override's domain wins
    for profile_name in ("smoke", "cpu", "study"):  # what the profiles generate is unchanged: studio, colour
        assert load_profile(profile_name).synthfer.saturation == 1.0
    with pytest.raises(ConfigError, match=r"smoke\.yaml with synthfer_domain set: synthfer_domain must be one of "
                                          r"studio, identities, lighting, pose, occluded, style, got 'night'"):
        load_profile("smoke", ["synthfer_domain=night"])
    with pytest.raises(ConfigError, match="synthfer_domain 'pose' applies to dataset synthfer only, not rafdb"):
        load_profile("rafdb", ["synthfer_domain=pose"])


def test_a_malformed_profile_is_one_line_with_its_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nlr: 0.1\nmodel: {size: tiny\nepochs: 3\n")
    with pytest.raises(ConfigError) as e:
        load_profile(path)
    message = str(e.value)
    assert message.startswith(f"{path}, line ") and ", column " in message and "not valid YAML" in message
    assert "\n" not in message
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))  # a profile saved in another encoding
    with pytest.raises(ConfigError, match=f"^{path}: not UTF-8 text"):
        load_profile(path)
    base = tmp_path / "child.yaml"  # the message names the file at fault, a base profile too
    base.write_text(f"base: {path}\n")
    with pytest.raises(ConfigError, match=f"^{path}: not UTF-8 text"):
        load_profile(base)


def test_a_bad_data_option_stops_the_train_command_before_any_data_is_made(tmp_path, capsys):
    data = tmp_path / "never"
    assert main(["train", "--profile", "smoke", "--set", f"data_root={data}", "--set", "data_options.bogus=1"]) == 2
    assert "data_options for synthfer: unknown option(s) bogus" in capsys.readouterr().err and not data.exists()


def test_train_resume_goes_on_in_the_folder_of_its_last_pt(tmp_path, monkeypatch):
    import qcslib.__main__ as cli
    seen = []
    monkeypatch.setattr(cli, "fit", lambda config, resume, overwrite: (seen.append((config.run_dir, resume)),
                                                                        Run(config.run_dir, config, {}))[1])
    last = tmp_path / "mine" / "last.pt"
    assert cli.main(["train", "--profile", "smoke", "--resume", str(last)]) == 0
    assert cli.main(["train", "--profile", "smoke", "--resume", str(last), "--run-dir", str(tmp_path / "other")]) == 0
    assert seen == [(last.parent, str(last)), (tmp_path / "other", str(last))]


def test_unknown_profile_lists_the_built_in_ones():
    with pytest.raises(ConfigError, match="the built-in profiles are affectnet7, affectnet8, cpu"):
        load_profile("imagenet")


# ------------------------------------------------------------------------------------------------ SAM and loss

def test_sam_perturbs_by_rho_along_the_gradient_then_steps_from_the_original_weights():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    v = torch.nn.Parameter(torch.randn(3))
    sam = SAM([w, v], torch.optim.SGD, rho=0.05, lr=0.1)
    w0, v0 = w.detach().clone(), v.detach().clone()

    def loss_fn():
        return (w ** 3).sum() + (v ** 2).sum() * w.sum()

    loss_fn().backward()
    g = torch.cat([w.grad, v.grad])
    sam.first_step()
    e = torch.cat([w.detach() - w0, v.detach() - v0])
    torch.testing.assert_close(e, 0.05 * g / g.norm())
    assert w.grad is None  # zeroed for the second pass
    loss_fn().backward()
    g_adv = torch.cat([w.grad, v.grad]).clone()
    sam.second_step()
    torch.testing.assert_close(torch.cat([w.detach(), v.detach()]), torch.cat([w0, v0]) - 0.1 * g_adv)


def test_sam_with_a_grad_scaler_takes_the_unscaled_step():
    """The fp16 path (GradScaler), checked with torch's CPU scaler: a scaled first backward gives the same
    perturbation (only the direction counts), and the scaler unscales the second gradient before the step."""
    def run(scaler):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(6))
        sam = SAM([w], torch.optim.SGD, rho=0.05, lr=0.1)
        for first in (True, False):
            loss = (w ** 3).sum()
            (scaler.scale(loss) if scaler else loss).backward()
            if first:
                sam.first_step()
        sam.second_step(scaler=scaler)
        return w.detach()

    torch.testing.assert_close(run(torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)), run(None))


def test_sam_restores_the_weights_exactly_and_skips_a_non_finite_gradient():
    w = torch.nn.Parameter(torch.tensor([1e8, 1e-8, 3.0]))
    w0 = w.detach().clone()
    sam = SAM([w], torch.optim.SGD, rho=0.05, lr=0.0)
    w.grad = torch.tensor([1.0, 2.0, 3.0])
    sam.first_step()
    w.grad = torch.zeros(3)
    sam.second_step()
    assert torch.equal(w.detach(), w0)  # bit for bit (w + e − e would round 1e-8 away)
    w.grad = torch.tensor([float("inf"), 1.0, 0.0])
    sam.first_step()
    assert torch.equal(w.detach(), w0)


def test_the_loss_is_the_mean_ce_of_every_head_with_the_negatives_labels():
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(6, 7, generator=g) for _ in range(8)]
    y, y_neg = torch.randint(0, 7, (6,), generator=g), torch.randint(0, 7, (6,), generator=g)
    out = TrainOutput(logits[:4], logits[4:], None)
    loss, parts = quadruplet_loss(out, y, y_neg)
    targets = [y, y, y_neg, y_neg] * 2
    expected = torch.stack([F.cross_entropy(x, t) for x, t in zip(logits, targets)])
    torch.testing.assert_close(parts, expected)
    torch.testing.assert_close(loss, expected.mean())
    assert head_names(4, True) == ["base_a", "base_p", "base_n", "base_n2", "cross_a", "cross_p", "cross_n",
                                   "cross_n2"]
    dcs_loss, dcs_parts = quadruplet_loss(TrainOutput(logits[:2], logits[4:6], None), y)
    torch.testing.assert_close(dcs_loss, torch.stack([expected[0], expected[1], expected[4], expected[5]]).mean())
    assert len(quadruplet_loss(TrainOutput(logits[:1], [], None), y)[1]) == 1


def test_classification_metrics_by_hand():
    m = classification_metrics([0, 0, 0, 1, 2, 2], [0, 0, 1, 1, 2, 0], ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)  # d has no images
    assert m["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert m["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    f1s = [2 * (2 / 3 * 2 / 3) / (4 / 3), 2 / 3, 2 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(np.mean(f1s))


# ------------------------------------------------------------------------------------------------ fit

def test_epoch_sums_add_up_by_name_and_travel_as_one_tensor():
    from qcslib.train.rundir import EpochSums
    sums = EpochSums.zeros(2, torch.device("cpu"))
    sums.add(torch.tensor([1.0, 3.0]), torch.tensor(2), 4)
    sums.add(torch.tensor([2.0, 2.0]), torch.tensor(1), 2)
    assert sums.losses.tolist() == [8.0, 16.0] and (float(sums.correct), float(sums.samples)) == (3.0, 6.0)
    assert sums.mean_loss == pytest.approx(24 / 2 / 6) and sums.accuracy == pytest.approx(0.5)
    again = EpochSums.from_tensor(sums.to_tensor())
    assert again.to_tensor().tolist() == [8.0, 16.0, 3.0, 6.0]
    again.add(torch.tensor([1.0, 1.0]), torch.tensor(1), 1)
    assert sums.samples == 6  # a copy, not a view


def test_a_smoke_run_learns_and_writes_its_run_directory(tmp_path, smoke_data):
    run = fit(smoke(tmp_path, smoke_data, "patience=0"), progress=False)  # every epoch, whatever val does
    m = run.metrics()
    assert len(m) == 4 and m["epoch"].tolist() == [1, 2, 3, 4]
    assert m["loss"].iloc[-1] < m["loss"].iloc[0] - 0.1
    assert m["val_accuracy"].max() > 1 / 7 + 0.1  # chance is 1/7
    expected = ["lr", "loss_base_a", "loss_cross_n2", "k1", "k2", "k3", "train_accuracy", "val_accuracy",
                "val_mean_class_accuracy", "val_macro_f1", "train_seconds", "samples_per_s", "backbone_images"]
    assert set(expected) <= set(m.columns) and not any(c.startswith("test_") for c in m.columns)
    np.testing.assert_allclose(m["lr"], 1e-3 * 0.98 ** np.arange(4))
    names = {p.name for p in run.dir.iterdir()}
    assert names == {"config.yaml", "metrics.csv", "last.pt", "best.pt", "confusion.csv", "summary.json", "data.json",
                     "version.json"}
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["version"]["code"] == rundir.code_fingerprint() and rundir.version_change(run.dir, run.config) is None
    assert set(summary["version"]) == {"code", "torch", "timm", "data", "commit"}
    best = m.loc[m["val_accuracy"].idxmax()]
    assert summary["selection"] == "val" and summary["best"]["epoch"] == best["epoch"]
    assert summary["best"]["val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert (summary["stopped_epoch"], summary["max_epochs"], summary["last"]["epoch"]) == (4, 4, 4)
    assert summary["stop_reason"] == "epoch limit" and not summary["stopped_early"]
    assert summary["chosen_epoch"] == best["epoch"]
    window = m["val_accuracy"].iloc[-3:]  # patience 2: the last 3 epochs
    assert summary["slope"] == pytest.approx(np.polyfit(np.arange(3), window, 1)[0])
    confusion = pd.read_csv(run.dir / "confusion.csv", index_col=0)  # the chosen model on test
    assert confusion.values.sum() == 112
    assert np.trace(confusion.values) / 112 == pytest.approx(summary["best"]["test_accuracy"])
    model, report = load_checkpoint(run.best_checkpoint)
    assert report.meta["epoch"] == best["epoch"] and report.meta["classes"][0] == "neutral"
    test = load_split("synthfer", smoke_data, "test")
    assert evaluation.evaluate(model, test)["accuracy"] == pytest.approx(summary["best"]["test_accuracy"])
    loaded = Run.load(run.dir)  # read back as it was returned
    assert (loaded.dir, loaded.config, loaded.summary) == (run.dir, run.config, run.summary)
    data = json.loads((run.dir / "data.json").read_text())
    assert {k: v["n"] for k, v in data.items()} == {"train": 336, "val": 112, "test": 112}
    with pytest.raises(ConfigError, match="already holds a run"):
        fit(smoke(tmp_path, smoke_data), progress=False)


def test_early_stopping_on_known_scores():
    stop = partial(should_stop, images=100)
    assert not stop([0.5, 0.5, 0.5], patience=0, min_delta=0.0)
    assert stop([0.5, 0.6, 0.6, 0.59], patience=2, min_delta=0.0)
    assert not stop([0.5, 0.6, 0.6, 0.61], patience=2, min_delta=0.0)       # a new best resets the count
    assert stop([0.5, 0.6, 0.604, 0.605], patience=2, min_delta=0.005)  # gains below min_delta do not
    assert not stop([0.5, 0.6, 0.606, 0.605], patience=2, min_delta=0.005)
    assert not stop([0.5], patience=1, min_delta=0.0) and stop([0.5, 0.4], patience=1, min_delta=0.0)
    # min_delta None: a gain must beat the standard error of the best so far, √(0.6 · 0.4 / n)
    assert stop([0.5, 0.6, 0.62, 0.64], patience=2, min_delta=None, images=100)        # SE 0.049: noise
    assert not stop([0.5, 0.6, 0.62, 0.64], patience=2, min_delta=None, images=10_000)  # SE 0.0049: gains
    assert rundir.standard_error(0.6, 100) == pytest.approx(np.sqrt(0.24 / 100))
    assert rundir.standard_error(1.0, 100) == 0.01  # never below one image


def test_run_states_say_why_a_run_ended_and_a_still_rising_run_is_not_converged():
    state = partial(rundir.run_state, max_epochs=6, patience=2, images=300)
    # patience firing on the last epoch stops nothing: the run reached its limit
    s = state([0.5, 0.7, 0.7, 0.7, 0.7, 0.7], patience_stopped=True)
    assert (s["stop_reason"], s["stopped_early"], s["chosen_epoch"], s["converged"]) == ("epoch limit", False, 2, True)
    s = state([0.5, 0.7, 0.7, 0.69], patience_stopped=True)  # stopped before its limit
    assert (s["stop_reason"], s["stopped_early"], s["still_improving_at_limit"], s["converged"]) == \
        ("patience", True, False, True)
    # chose its last epoch (or the one before) at its limit: still improving, never converged however flat
    for scores in ([0.70, 0.70, 0.70, 0.70, 0.70, 0.701], [0.70, 0.70, 0.70, 0.70, 0.702, 0.70]):
        s = state(scores, patience_stopped=False)
        assert s["still_improving_at_limit"] and not s["converged"] and s["stop_reason"] == "epoch limit"
    # chose epoch 5 of 10, but its last 3 epochs still rise by more than the standard error (0.023 at 0.8 on 300)
    s = rundir.run_state([.5, .6, .7, .75, .8, .7, .72, .7, .74, .78], 10, 2, patience_stopped=False, images=300)
    assert not s["still_improving_at_limit"] and s["slope"] == pytest.approx(0.04) and not s["converged"]
    assert s["selection_se"] == pytest.approx(np.sqrt(0.8 * 0.2 / 300))
    s = rundir.run_state([.5, .6, .7, .75, .8, .7, .72, .7, .74, .72], 10, 2, patience_stopped=False, images=300)
    assert s["converged"]  # the same run, flat at its end
    assert not state([0.5], patience_stopped=False)["converged"]  # one epoch: nothing to test


def test_a_run_that_stops_improving_stops_early_and_stays_stopped(tmp_path, smoke_data):
    # val accuracy cannot move at this lr, so a quarter of the anchors per epoch decides as much as all of them
    config = smoke(tmp_path, smoke_data, "epochs=6", "patience=1", "lr=1e-12", "epoch_fraction=0.25")
    run = fit(config, progress=False)
    s = run.summary
    assert (s["stopped_early"], s["stop_reason"], s["stopped_epoch"], s["max_epochs"], s["converged"]) == \
        (True, "patience", 2, 6, True)
    assert len(run.metrics()) == 2 and s["best"]["epoch"] == 1
    again = fit(config, resume=config.run_dir / "last.pt", progress=False)  # nothing left to train
    assert len(again.metrics()) == 2 and again.summary == s
    # patience firing on the last epoch is no early stop
    limit = fit(config.replace(name="limit", epochs=3, patience=2), progress=False).summary
    assert (limit["stopped_early"], limit["stop_reason"], limit["stopped_epoch"]) == (False, "epoch limit", 3)


class Payload:
    """Unpickling it would create ``path``: what a crafted checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_crafted_best_pt_in_a_run_directory_never_runs(tmp_path, smoke_data):
    config = smoke(tmp_path, smoke_data, "epochs=1", "sam=false")
    fit(config, progress=False)
    marker = tmp_path / "payload-ran"
    torch.save({"state_dict": Payload(marker)}, config.run_dir / "best.pt")
    with pytest.raises(CheckpointError, match="refused"):  # resuming a finished run reads best.pt back
        fit(config, resume=config.run_dir / "last.pt", progress=False)
    assert not marker.exists()


def test_the_learning_rate_schedules_on_known_steps():
    c = load_profile("smoke", ["lr_gamma=0.5"])
    assert [lr_factor(c, 10, t) for t in (0, 9, 10, 25)] == [1, 1, 0.5, 0.25]  # γ^epoch, as ExponentialLR
    c = c.replace(schedule="cosine", warmup_epochs=1.0, epochs=3)  # 10 steps per epoch: warm 10, decay 20
    assert [lr_factor(c, 10, t) for t in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(c, 10, 10) == pytest.approx(1.0) and lr_factor(c, 10, 20) == pytest.approx(0.5)
    assert lr_factor(c, 10, 29) == pytest.approx(0.5 * (1 + np.cos(np.pi * 19 / 20)))


def test_a_cosine_run_records_the_lr_of_each_epochs_first_step(tmp_path, smoke_data):
    run = fit(smoke(tmp_path, smoke_data, "epochs=3", "schedule=cosine", "warmup_epochs=1", "sam=false"),
              progress=False)
    steps = 21
    expected = [1e-3 * lr_factor(run.config, steps, e * steps) for e in range(3)]
    np.testing.assert_allclose(run.metrics()["lr"], expected)
    assert expected[0] == pytest.approx(1e-3 / steps) and expected[1] == pytest.approx(1e-3)


def record_evaluations(monkeypatch) -> list[str]:
    """The split of every ``evaluate`` call the engine makes, in order."""
    calls, real = [], loop.evaluate

    def spy(model, split, *args, **kwargs):
        calls.append(split.split)
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", spy)
    return calls


def test_selection_never_reads_test_unless_asked(tmp_path, smoke_data, monkeypatch):
    calls = record_evaluations(monkeypatch)
    short = ("epochs=2", "epoch_fraction=0.5", "patience=0")  # two epochs of half the anchors each
    fit(smoke(tmp_path, smoke_data, *short, "name=val"), progress=False)
    assert calls == ["val", "val", "test", "test"]  # test only once training stopped: chosen and last model
    # whatever the test labels say, the run decides the same: here they are all shuffled
    shuffled = tmp_path / "shuffled"
    shutil.copytree(smoke_data, shuffled)
    lines = (shuffled / "test.txt").read_text().splitlines()
    labels = np.random.default_rng(0).permutation([line.split()[1] for line in lines])
    (shuffled / "test.txt").write_text("".join(f"{line.split()[0]} {y}\n" for line, y in zip(lines, labels)))
    other = fit(smoke(tmp_path, shuffled, *short, "name=shuffled"), progress=False)
    pd.testing.assert_frame_equal(without_timing(tmp_path / "val"), without_timing(other.dir))
    assert torch.equal(torch.load(other.best_checkpoint, weights_only=False)["state_dict"]["base.encoder.head.weight"],
                       torch.load(tmp_path / "val" / "best.pt", weights_only=False)["state_dict"]["base.encoder.head.weight"])
    calls.clear()
    paper = fit(smoke(tmp_path, smoke_data, *short, "name=paper", "selection=test"), progress=False)
    assert calls == ["test", "test"]  # the paper's protocol: the best test epoch
    m = paper.metrics()
    assert paper.summary["selection"] == "test" and "val_accuracy" not in m
    assert paper.summary["best"]["test_accuracy"] == m["test_accuracy"].max()
    assert "val" not in json.loads((paper.dir / "data.json").read_text())


def test_evaluation_runs_in_fp32_whatever_the_training_precision(tmp_path, smoke_data, monkeypatch):
    precisions, real = [], loop.evaluate

    def spy(*args, **kwargs):
        precisions.append(kwargs["precision"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", spy)
    fit(smoke(tmp_path, smoke_data, "epochs=1", "precision=bf16"), progress=False)  # bf16 autocast in training
    assert precisions == ["fp32"] * 3  # val after the epoch; test on the chosen and on the last model


def rafdb_root(tmp_path, train_per_class=4):
    from PIL import Image
    root = tmp_path / "basic"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    names = [(f"train_{i:05d}.jpg", 1 + i % 2) for i in range(2 * train_per_class)] + [("test_0001.jpg", 1)]
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {k}\n" for n, k in names))
    for n, _ in names:
        Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(root / "Image" / "aligned" / n.replace(".jpg", "_aligned.jpg"))
    return root


def test_datasets_without_a_val_split_hold_one_out_of_train(tmp_path):
    root = rafdb_root(tmp_path)
    base = ["dataset=rafdb", f"data_root={root}", "model.num_classes=7", "batch_size=2"]
    with pytest.raises(ConfigError, match="rafdb at .* has no val split .*set val_fraction"):
        load_data(load_profile("smoke", base))
    data = load_data(load_profile("smoke", base + ["val_fraction=0.5"]))
    assert (len(data.train), len(data.val), len(data.test)) == (4, 4, 1)
    assert data.val.counts()["surprise"] == data.val.counts()["fear"] == 2  # stratified
    assert not set(data.train.paths) & set(data.val.paths)
    assert data.train.excluded == {"held out as val (val_fraction 0.5, seed 0)": 4}
    assert load_data(load_profile("smoke", base + ["selection=test"])).val is None


def test_hold_out_is_stratified_seeded_and_disjoint():
    from qcslib.data.sources import DataError, Split, hold_out
    labels = np.repeat(np.arange(3), [10, 20, 30])
    split = Split("list", "train", Path("."), ["a", "b", "c"], labels, [Path(f"{i}.png") for i in range(60)], None, None)
    rest, val = hold_out(split, 0.2, seed=3)
    assert val.counts() == {"a": 2, "b": 4, "c": 6} and val.split == "val" and len(rest) == 48
    assert sorted(map(str, rest.paths + val.paths)) == sorted(map(str, split.paths))
    assert hold_out(split, 0.2, seed=3)[1].paths == val.paths != hold_out(split, 0.2, seed=4)[1].paths
    with pytest.raises(DataError, match="class c \\(1\\) has fewer than 2 images"):
        hold_out(split.subset(np.arange(31)), 0.2, seed=0)


def test_two_runs_with_one_seed_agree_and_another_seed_differs(tmp_path, smoke_data):
    runs = [fit(smoke(tmp_path, smoke_data, "epochs=2", "epoch_fraction=0.5", f"name={n}", f"seed={s}", *extra),
                progress=False).dir for n, s, extra in (("a", 0, []), ("b", 0, ["num_workers=1"]), ("c", 1, []))]
    a, b, c = (without_timing(r) for r in runs)
    pd.testing.assert_frame_equal(a, b)  # the worker processes do not change the augmentation either
    assert not a.equals(c)


def test_augmenting_on_the_device_trains_reproducibly(tmp_path, smoke_data):
    runs = [fit(smoke(tmp_path, smoke_data, "epochs=1", "augment_on_device=true", f"name=d{i}"), progress=False).dir
            for i in range(2)]
    plain = fit(smoke(tmp_path, smoke_data, "epochs=1", "name=plain"), progress=False).dir
    a, b, c = (without_timing(r) for r in (*runs, plain))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)  # the same recipe, drawn differently
    assert a["loss"].iloc[0] < 2.0 and np.isfinite(a["loss"]).all()


def test_bf16_autocast_and_channels_last_train_on_cpu(tmp_path, smoke_data):
    """The GPU path's settings, exercised on the CPU (autocast bf16 works there too); fp16 needs a GPU."""
    run = fit(smoke(tmp_path, smoke_data, "epochs=1", "precision=bf16", "channels_last=true",
                    "model.concat_branches=true"), progress=False)
    assert np.isfinite(run.metrics()["loss"]).all()
    # the recorded score is the bf16 model's own: last.pt scored again in bf16 gives it
    scored = evaluate_checkpoint(run.dir / "last.pt", "synthfer", smoke_data, "test", device="cpu", precision="bf16")
    assert run.summary["last"]["test_accuracy"] == pytest.approx(scored["accuracy"])
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        fit(smoke(tmp_path, smoke_data, "precision=fp16", "name=fp16"), progress=False)


class Boom(Exception):
    pass


def interrupt_at(monkeypatch, call: int, how: str):
    """Make the ``call``-th training step send SIGINT to this process, or crash, after it runs."""
    real, calls = loop.train_step, {"n": 0}

    def step(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == call:
            if how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise Boom()
        return out

    monkeypatch.setattr(loop, "train_step", step)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, smoke_data):
    """A 2-epoch smoke run with SAM (so that SAM's state is resumed too), trained once for the module."""
    return fit(smoke(tmp_path_factory.mktemp("ref"), smoke_data, "epochs=2", "sam=true", "name=ref"), progress=False)


@pytest.mark.parametrize("how, call", [("sigint", 25), ("crash", 25), ("sigint", 3)])
def test_a_run_stopped_anywhere_resumes_to_the_same_metrics(tmp_path, smoke_data, monkeypatch, how, call,
                                                            uninterrupted):
    """21 steps per epoch: call 25 is step 4 of epoch 2, call 3 step 3 of epoch 1."""
    reference = uninterrupted
    config = smoke(tmp_path, smoke_data, "epochs=2", "sam=true", "name=cut")
    with monkeypatch.context() as m:
        interrupt_at(m, call, how)
        with pytest.raises(KeyboardInterrupt if how == "sigint" else Boom):
            fit(config, progress=False)
    state = torch.load(config.run_dir / "last.pt", weights_only=False) if (config.run_dir / "last.pt").exists() \
        else None
    if how == "sigint":  # Ctrl-C saves the state after the step it came in
        assert (state["epoch"], state["step"]) == ((call - 1) // 21, (call - 1) % 21 + 1)
    else:  # a crash leaves the last end-of-epoch state
        assert (state["epoch"], state["step"]) == (1, 0)
    resumed = fit(config, resume=config.run_dir / "last.pt", progress=False)
    pd.testing.assert_frame_equal(without_timing(resumed.dir), without_timing(reference.dir))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, smoke_data, monkeypatch):
    real, calls = tasks.quadruplet_loss, {"n": 0}

    def poisoned(*args):
        loss, parts = real(*args)
        calls["n"] += 1
        return (loss * float("nan"), parts) if calls["n"] == 2 * 21 + 2 * 3 + 1 else (loss, parts)

    monkeypatch.setattr(tasks, "quadruplet_loss", poisoned)  # 2 SAM passes per step: step 4 of epoch 2
    config = smoke(tmp_path, smoke_data, "epochs=3", "sam=true")
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 2, step 4;.*last\.pt holds the last good"):
        fit(config, progress=False)
    state = torch.load(config.run_dir / "last.pt", weights_only=False)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["state_dict"].values()
                                       if v.is_floating_point())
    assert len(pd.read_csv(config.run_dir / "metrics.csv")) == 1


def test_a_rerun_that_crashes_before_its_first_epoch_leaves_nothing_to_reuse(tmp_path, smoke_data, monkeypatch):
    from qcslib import ablation
    first = smoke(tmp_path, smoke_data, "epochs=1")
    fit(first, progress=False)
    assert ablation.finished(first)
    second = first.replace(lr=2e-3)  # same run directory, another recipe

    def crash(*args, **kwargs):
        raise RuntimeError("killed in the first step")

    monkeypatch.setattr(loop, "train_step", crash)
    with pytest.raises(RuntimeError, match="killed"):
        fit(second, overwrite=True, progress=False)
    assert not ablation.finished(second) and not ablation.finished(first)  # the old results are not the new run's
    assert not (second.run_dir / "summary.json").exists()


@pytest.mark.parametrize("change", ["batch_size=7", "lr=0.5", "seed=3", "model.cross_drop=0.3"])
def test_resume_refuses_another_recipe_naming_the_field(tmp_path, smoke_data, change):
    config = smoke(tmp_path, smoke_data, "epochs=1")
    fit(config, progress=False)
    field = change.split("=")[0].split(".")[-1]
    with pytest.raises(ConfigError, match=rf"last\.pt: was trained with another (recipe|model) \({field}: ") as error:
        fit(smoke(tmp_path, smoke_data, "epochs=1", change), resume=config.run_dir / "last.pt", progress=False)
    assert "\n" not in str(error.value)
    # where it runs may change: another worker count and log interval resume (nothing left to train here)
    fit(config.replace(num_workers=1, log_every=3), resume=config.run_dir / "last.pt", progress=False)


def test_a_config_that_cannot_work_is_refused_before_training(tmp_path, smoke_data):
    cases = [(smoke(tmp_path, smoke_data, "model.num_classes=8"), ConfigError, "model.num_classes is 8, but synthfer"),
             (smoke(tmp_path, smoke_data, "batch_size=500"), ConfigError,
              "batch_size 500 × 1 process(es) is larger than the 336 training images"),
             (smoke(tmp_path, tmp_path / "nowhere", "dataset=list"), FileNotFoundError, "dataset root not found"),
             (smoke(tmp_path, rafdb_root(tmp_path), "dataset=rafdb"), ConfigError, "set val_fraction (e.g. 0.1)"),
             (smoke(tmp_path, smoke_data, "backbone_weights=nowhere/ir50.pth"), ConfigError,
              "backbone_weights nowhere/ir50.pth: no such file; put POSTER++'s MS-Celeb-1M IR-50")]
    for config, error, message in cases:
        with pytest.raises(error) as e:
            fit(config, progress=False)
        assert message in str(e.value)
        assert not config.run_dir.exists()


def test_only_the_second_sam_backward_all_reduces_under_ddp(tmp_path):
    """With SAM, the first backward (at w) must stay local: a step all-reduces as often as a plain step does."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from qcslib.train.distributed import World
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        reductions = {}
        for sam in (False, True):
            torch.manual_seed(0)
            net = QCSNet(QCSConfig.sized("tiny", image_size=32, backbone_size=32))
            model, calls = DistributedDataParallel(tasks.TrainForward(net)), []

            def count(state, bucket):
                calls.append(1)
                done = torch.futures.Future()
                done.set_result(bucket.buffer())
                return done

            model.register_comm_hook(None, count)
            optimizer = SAM(net.parameters(), torch.optim.Adam, lr=1e-3) if sam else torch.optim.Adam(net.parameters())
            images, labels = [torch.randn(4, 3, 32, 32) for _ in range(4)], (torch.tensor([0, 1, 2, 3]),
                                                                             torch.tensor([1, 2, 3, 0]))
            loop.train_step(model, optimizer, None, images, labels, tasks.quadruplet_objective, None, sam,
                            World(0, 0, 2))
            reductions[sam] = len(calls)
    finally:
        dist.destroy_process_group()
    assert reductions[True] == reductions[False] > 0


def test_ddp_keeps_only_epoch_boundaries_to_resume_from(tmp_path, smoke_data, monkeypatch):
    """Mid-epoch state is one process's (RNG, partial sums): a DDP run saves none, and refuses to resume one."""
    import torch.distributed as dist
    from qcslib.train.distributed import World
    config = smoke(tmp_path, smoke_data, "epochs=2", "name=single")
    with monkeypatch.context() as m:
        interrupt_at(m, 3, "sigint")
        with pytest.raises(KeyboardInterrupt):
            fit(config, progress=False)
    assert torch.load(config.run_dir / "last.pt", weights_only=False)["step"] == 3  # one process: mid-epoch is fine
    monkeypatch.setattr(loop, "init_world", lambda device_type: World(0, 0, 2))  # as rank 0 of 2
    with pytest.raises(ConfigError, match=r"last\.pt: stopped mid-epoch \(epoch 1, step 3\); a DDP run resumes only"):
        fit(config, resume=config.run_dir / "last.pt", progress=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = smoke(tmp_path, smoke_data, "epochs=2", "name=ddp")
        interrupt_at(monkeypatch, 3, "sigint")
        with pytest.raises(KeyboardInterrupt, match="a DDP run resumes from the end of its last finished epoch, 0"):
            fit(ddp, progress=False)
    finally:
        dist.destroy_process_group()
    assert not (ddp.run_dir / "last.pt").exists()  # no epoch finished: nothing to resume from, rather than a wrong state


def free_port() -> int:
    """A loopback TCP port that no one holds now, picked by the OS (a fixed port collides with another test session
    on the same machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_notebook_launch_of_torchrun_trains_while_the_default_port_is_taken(tmp_path, smoke_data):
    from qcslib.train.distributed import launch_torchrun
    config = smoke(tmp_path, smoke_data, "epochs=1", "sam=false")
    with socket.socket() as held:
        with contextlib.suppress(OSError):  # torchrun's default port, held as another job on the machine would hold it
            held.bind(("127.0.0.1", 29500))
        run = launch_torchrun(config, 2)
    assert run.summary["stopped_epoch"] == 1 and (config.run_dir / "best.pt").is_file()


def torchrun_smoke(tmp_path, data, run_dir, *launch) -> subprocess.Popen:
    """``torchrun <launch> -m qcslib train`` of the smoke profile (2 epochs) into ``run_dir``, started."""
    torchrun = Path(sys.executable).with_name("torchrun")
    return subprocess.Popen(
        [str(torchrun), *launch, "-m", "qcslib", "train", "--profile", "smoke", "--set", f"data_root={data}",
         "--set", "epochs=2", "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])})


def test_torchrun_two_processes_on_gloo_and_two_nodes_train_the_same(tmp_path, smoke_data):
    run_dir = tmp_path / "ddp"
    one = torchrun_smoke(tmp_path, smoke_data, run_dir, "--nproc-per-node", "2", "--master-port", str(free_port()))
    stdout, stderr = one.communicate(timeout=600)
    assert one.returncode == 0, stderr[-3000:]
    assert stdout.count('"run_dir"') == 1  # only rank 0 reports
    m = pd.read_csv(run_dir / "metrics.csv")
    assert m["epoch"].tolist() == [1, 2]
    assert m["steps"].tolist() == [11, 11]  # 168 quadruplets per rank in batches of 16
    assert {p.name for p in run_dir.iterdir()} == {"config.yaml", "metrics.csv", "last.pt", "best.pt",
                                                    "confusion.csv", "summary.json", "data.json", "version.json"}
    # the same run as 2 "nodes" of 1 process each, meeting through c10d rendezvous on the loopback
    nodes_dir = tmp_path / "nodes"
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                  f"127.0.0.1:{free_port()}", "--rdzv-id", "qcs-two-nodes"]
    nodes = [torchrun_smoke(tmp_path, smoke_data, nodes_dir, *rendezvous, "--node-rank", str(r)) for r in (0, 1)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert sum(out.count('"run_dir"') for out, _ in outputs) == 1
    pd.testing.assert_frame_equal(without_timing(nodes_dir), without_timing(run_dir))


# ------------------------------------------------------------------------------------------------ evaluate

def test_predict_leaves_the_model_in_its_mode_when_it_raises():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("broken forward")

    split = Split("list", "test", Path("."), ["a", "b"], np.array([0, 1]), None, np.zeros((2, 48, 48), np.uint8), None)
    model = Broken().train()
    with pytest.raises(RuntimeError, match="broken forward"):
        evaluation.predict(model, split, 32, progress=False)
    assert model.training
    working = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2)).train()
    assert evaluation.predict(working, split, 32, progress=False).shape == (2, 2) and working.training


def test_evaluate_an_official_checkpoint_on_rafdb(tmp_path):
    from PIL import Image
    root = tmp_path / "basic"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"test_000{i}.jpg" for i in range(1, 5)]
    (root / "EmoLabel" / "list_patition_label.txt").write_text(
        "".join(f"{n} {k}\n" for n, k in zip(names, [1, 4, 7, 7])) + "train_00001.jpg 2\n")
    for n in names + ["train_00001.jpg"]:
        Image.fromarray(rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(
            root / "Image" / "aligned" / n.replace(".jpg", "_aligned.jpg"), quality=95)
    sd = random_official_state_dict("qcs", 7, seed=3)
    path = tmp_path / "rafdb_qcs.pth"
    write_official_checkpoint(path, sd)
    result = evaluate_checkpoint(path, "rafdb", root, "test", batch_size=2, device="cpu")
    # the reference: the official forward on the official test transform of the same images
    from qcslib.data.sources import load_split, read_image
    from qcslib.data.transforms import build_transforms
    split = load_split("rafdb", root, "test")
    x = torch.stack([build_transforms("rafdb", 224, train=False)(read_image(split, i)) for i in range(len(split))])
    with torch.no_grad():
        logits = official_forward(sd, [x], "qcs")[0][0]
    expected = classification_metrics(split.labels, logits.argmax(1).numpy(), split.classes)
    assert {k: result[k] for k in expected} == expected
    assert result["n"] == 4 and result["skipped"] == 0 and "variant=qcs" in result["load"]
    assert result["scored"] == "4 of 4 images"
    # an unreadable test image: an error naming it, unless asked to score the rest, which the result then says
    broken = root / "Image" / "aligned" / "test_0002_aligned.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"rafdb/test: 1 of 4 images cannot be read \(.*test_0002_aligned\.jpg .*"
                                        r"pass --allow-unreadable to score the 3 readable ones"):
        evaluate_checkpoint(path, "rafdb", root, "test", batch_size=2, device="cpu")
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        partial = evaluate_checkpoint(path, "rafdb", root, "test", batch_size=2, device="cpu", allow_unreadable=True)
    assert partial["n"] == 3 and partial["scored"] == "3 of 4 images (1 unreadable, not scored)"


def test_a_run_refuses_val_or_test_splits_with_unreadable_images(tmp_path):
    root = rafdb_root(tmp_path)
    (root / "Image" / "aligned" / "test_0001_aligned.jpg").write_bytes(b"broken")
    config = load_profile("smoke", ["dataset=rafdb", f"data_root={root}", "model.num_classes=7", "batch_size=2",
                                    "val_fraction=0.5"])
    with pytest.raises(DataError, match=r"rafdb/test: 1 of 1 images cannot be read .*set allow_unreadable_eval=true"):
        load_data(config)
    with pytest.warns(UserWarning):
        data = load_data(config.replace(allow_unreadable_eval=True))
    assert len(data.test) == 0 and len(data.test.skipped) == 1


def test_evaluate_command_checks_the_classes(tmp_path, smoke_data, capsys):
    run = fit(smoke(tmp_path, smoke_data, "epochs=1"), progress=False)
    cmd = [sys.executable, "-m", "qcslib", "evaluate", "--checkpoint", str(run.best_checkpoint), "--dataset",
           "synthfer", "--device", "cpu", "--root"]
    ok = subprocess.run(cmd + [str(smoke_data)], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    metrics = json.loads(ok.stdout)
    assert metrics["accuracy"] == pytest.approx(run.summary["last"]["test_accuracy"])
    other = tmp_path / "other"
    shutil.copytree(smoke_data, other)
    (other / "classes.txt").write_text("".join(f"{c}\n" for c in
                                               ["happy", "pain", "joy", "awe", "shame", "pride", "guilt"]))
    assert main(cmd[3:] + [str(other)]) == 2  # in this process; the command ran end to end above
    err = capsys.readouterr().err
    assert "share 1 (happy); scoring needs at least 2 shared classes" in err and err.count("\n") == 1
