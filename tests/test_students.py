"""Notebook 10's study (qcslib.students): the teacher chosen on val, the student plan and its reuse, the paired
comparisons, the int8 students and the cost table; qcslib.latency's timing loop."""

import numpy as np
import pandas as pd
import pytest
import torch

from qcslib import QCSNet, save_checkpoint, students
from qcslib.analysis import findings
from qcslib.data.sources import load_split
from qcslib.latency import timed
from qcslib.notebook import NotebookParameters
from qcslib.train import ConfigError, Run, load_profile

STUDENT = "mobilenetv3_small_050"


def test_the_teacher_is_chosen_on_val_never_on_test():
    candidates = pd.DataFrame({"seed": [0, 1, 2], "best_val_accuracy": [0.60, 0.72, 0.70],
                               "best_test_accuracy": [0.90, 0.50, 0.80], "run_dir": ["r/qcs-s0", "r/qcs-s1", "r/qcs-s2"]})
    teacher = students.pick_teacher(candidates)
    assert teacher["seed"] == 1 and str(teacher["checkpoint"]) == "r/qcs-s1/best.pt" and teacher["chosen_by"] == "val"
    assert teacher["test_accuracy"] == 0.50 and teacher["candidates"] == 3
    given = students.pick_teacher(candidates, "mine.pt")
    assert str(given["checkpoint"]) == "mine.pt" and given["chosen_by"] == "given"


def test_comparisons_pair_the_variants_by_seed_and_hold_the_teacher_fixed():
    acc = {"labels": [0.50, 0.52, 0.54], "kd": [0.55, 0.58, 0.57], "kd_feature": [0.55, 0.58, 0.57]}
    runs = pd.DataFrame([{"variant": v, "seed": s, "best_test_accuracy": a[s], "teacher_test_accuracy": 0.70}
                         for v, a in acc.items() for s in range(3)])
    compared = students.comparisons(runs).set_index("comparison")
    kd = compared.loc["kd − labels"]
    assert kd["mean_diff"] == pytest.approx(np.mean([0.05, 0.06, 0.03])) and kd["seeds"] == 3 and kd["ahead"] == 3
    assert kd["ci_low"] > 0 and "kd is ahead of labels" in kd["verdict"]
    same = compared.loc["kd_feature − kd"]  # identical on every seed: the interval is the point 0
    assert same["mean_diff"] == 0 and "no detectable difference" in same["verdict"]
    gap = compared.loc["kd − teacher"]
    assert gap["mean_diff"] == pytest.approx(np.mean([0.55, 0.58, 0.57]) - 0.70) and gap["ci_high"] < 0


def test_timed_calls_warm_up_then_times_each_run():
    calls = []
    result = timed(lambda: calls.append(1), runs=7, warmup=3)
    assert len(calls) == 10 and result["runs"] == 7 and 0 <= result["p50_ms"] <= result["p95_ms"]
    with pytest.raises(ValueError, match="runs ≥ 1"):
        timed(lambda: None, runs=0)


def test_the_student_parameters_are_checked_in_one_line():
    for changes, message in [({"student": "no_such_net"}, "student: 'no_such_net' is not a timm model name"),
                             ({"int8": "int4"}, "int8 must be one of auto, static, dynamic"),
                             ({"alpha": 1.5}, "need 0 ≤ alpha ≤ 1"),
                             ({"distill_overrides": ["model.dim=8"]}, "distill_overrides: model.dim is not"),
                             ({"distill_overrides": ["distill.alpha=0"]}, "distill_overrides: distill.alpha is not"),
                             ({"distill_overrides": ["epochs"]}, "distill_overrides: override 'epochs' is not")]:
        with pytest.raises(ConfigError, match=message) as error:
            NotebookParameters(**changes)
        assert "\n" not in str(error.value)


def test_students_trained_in_parallel_find_their_synthfer_generated_first(tmp_path, monkeypatch):
    root = tmp_path / "data"
    config = load_profile("smoke", [f"data_root={root}", f"runs_dir={tmp_path / 'runs'}"])
    save_checkpoint(tmp_path / "teacher.pt", QCSNet(config.model))
    started = []

    def run_all(calls, jobs):
        started.append(((root / "settings.json").is_file(), len(calls), jobs))
        raise KeyboardInterrupt  # nothing was trained: stop before the runs are read

    monkeypatch.setattr(students, "run_all", run_all)
    with pytest.raises(KeyboardInterrupt):
        students.distill_variants(config, tmp_path / "teacher.pt", STUDENT, [0], [], 4.0, 0.9, 1.0, jobs=2)
    assert started == [(True, 3, 2)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small SynthFER, a tiny QCS teacher, and the three student variants of seed 0 distilled for one epoch."""
    from qcslib.data.synthfer import generate
    tmp = tmp_path_factory.mktemp("students")
    root = tmp / "synthfer"
    config = load_profile("smoke", [f"runs_dir={tmp / 'runs'}", f"data_root={root}", "synthfer.train_identities=3",
                                    "synthfer.val_identities=1", "synthfer.test_identities=1",
                                    "synthfer.images_per_identity=14", "batch_size=8", "augment_on_device=true"])
    generate(root, config.synthfer)
    torch.manual_seed(0)
    teacher = tmp / "teacher.pt"
    save_checkpoint(teacher, QCSNet(config.model).eval(), classes=list(load_split("synthfer", root, "train").classes))
    plan = dict(teacher=teacher, student=STUDENT, seeds=[0], overrides=["epochs=1", "sam=false"], temperature=2.0,
                alpha=0.5, beta=0.5)
    return config, plan, students.distill_variants(config, **plan)


def test_every_variant_is_distilled_with_its_own_loss_and_the_same_recipe(study):
    config, plan, runs = study
    assert list(runs["variant"]) == ["labels", "kd", "kd_feature"] and not runs["reused"].any()
    for run in runs.itertuples():
        c = students.student_config(config, plan["teacher"], config.model, STUDENT, run.variant, 0, plan["overrides"],
                                    plan["temperature"], plan["alpha"], plan["beta"])
        assert run.run_dir == str(c.run_dir) and c.run_dir.parent == config.run_dir / "students"
        assert c.epochs == 1 and not c.sam and not c.augment_on_device and c.seed == 0  # kd needs per-image
        assert Run.load(c.run_dir).config.to_dict() == c.to_dict()  # the student under model, the teacher apart
        assert (c.distill.alpha, c.distill.beta) == {"labels": (0, 0), "kd": (0.5, 0), "kd_feature": (0.5, 0.5)}[
            run.variant] and c.distill.temperature == 2.0 and c.model.timm_name == STUDENT
        metrics = pd.read_csv(c.run_dir / "metrics.csv")
        if run.variant == "labels":  # α = 0: the loss is the cross-entropy alone
            assert metrics["loss"][0] == pytest.approx(metrics["loss_ce"][0])
        assert (metrics["loss_feature"][0] > 0) == (run.variant == "kd_feature")


def test_finished_students_are_reused_and_changed_options_retrain(study, monkeypatch):
    config, plan, _ = study
    trained = []
    monkeypatch.setattr(students, "fit", lambda config, *a, **kw: trained.append(config.name))
    again = students.distill_variants(config, **plan)
    assert again["reused"].all() and trained == []
    changed = students.distill_variants(config, **{**plan, "alpha": 0.7})  # the mock trains nothing
    assert trained == [f"{STUDENT}-kd-s0", f"{STUDENT}-kd_feature-s0"]  # labels has α = 0 either way
    assert list(changed["reused"]) == [True, False, False]


def test_the_int8_students_and_the_cost_table(study):
    _, plan, runs = study
    int8 = students.int8_students(runs, "auto")
    assert list(int8["seed"]) == [0] and int8["mode"].iloc[0] == "static" and 0 <= int8["top1_agreement"].iloc[0] <= 1
    costs = students.cost_table(plan["teacher"], runs, int8, runs_timed=2)
    assert list(costs.index) == ["paper-size QCS (untrained)", "teacher: QCS, width 32",
                                 *[f"{STUDENT} · {v}" for v in ("labels", "kd", "kd_feature")],
                                 f"{STUDENT} · kd · fp32", f"{STUDENT} · kd · int8 static",
                                 f"{STUDENT} at 224 px (untrained)"]
    assert list(costs["seeds"]) == [0, 1, 1, 1, 1, 1, 1, 0] and (costs["p95 ms"] >= costs["p50 ms"]).all()
    assert costs.loc["paper-size QCS (untrained)", "GFLOPs"] == pytest.approx(16.2, abs=0.2)  # the paper's figure
    assert costs.loc[f"{STUDENT} · kd", "accuracy"] == runs.loc[runs.variant == "kd", "best_test_accuracy"].iloc[0]
    view = students.cost_view(costs)
    assert view.loc["paper-size QCS (untrained)", "test acc %"] == "— (not trained here)"


def test_the_findings_give_the_verdicts_and_flag_a_val_test_gap_on_synthfer():
    runs = pd.DataFrame([{"variant": v, "seed": s, "best_test_accuracy": test + 0.01 * s, "best_val_accuracy": val,
                          "teacher_test_accuracy": 0.77, "converged": True, "selection": "val",
                          "stopped_early": True, "still_improving_at_limit": False}
                         for v, test, val in [("labels", 0.28, 0.57), ("kd", 0.34, 0.59), ("kd_feature", 0.37, 0.61)]
                         for s in range(3)])
    teacher = {"chosen_by": "val", "seed": 0, "val_accuracy": 0.75, "test_accuracy": 0.77, "candidates": 3,
               "checkpoint": "r/qcs-s0/best.pt"}
    int8 = pd.DataFrame({"mode": ["static"] * 3, "top1_agreement": [0.9] * 3, "accuracy_delta": [-0.5] * 3})
    costs = pd.DataFrame({"p50 ms": [391.0, 1.3, 0.7, 67.0], "input px": [224, 32, 32, 224]},
                         index=["paper-size QCS (untrained)", "resnet10t · kd · fp32", "resnet10t · kd · int8 static",
                                "resnet10t at 224 px (untrained)"])
    text = findings.distillation(teacher, runs, students.comparisons(runs), int8, costs, "resnet10t", "synthfer")
    assert "labels +28.0, kd +24.0, kd_feature +23.0; the teacher -2.0." in text
    assert "learned the shortcut" in text and "kd is ahead of labels by 6.00 points" in text
    assert "**not met** (42.0 points behind)" in text
    assert "0.70 ms at 32 px (559× faster" in text
    assert "learned the shortcut" not in findings.distillation(teacher, runs, students.comparisons(runs), int8, costs,
                                                               "resnet10t", "rafdb")
