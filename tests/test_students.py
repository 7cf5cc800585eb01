"""Notebook 10's study (qcslib.students): the teacher chosen on val, the student plan and its reuse, the paired
comparisons, the int8 students and the cost table; qcslib.latency's timing loop."""
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import onnxruntime
import torch
from scipy import stats

from qcslib import QCSNet, load_checkpoint, save_checkpoint, students
from qcslib.analysis import findings
from qcslib.data.sources import load_split
from qcslib.export import _images
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
    same = compared.loc["kd_feature − kd"]  # identical on every seed: no interval, and out of Holm's family
    assert same["mean_diff"] == 0 and "interval undefined" in same["verdict"] and np.isnan(same["p_holm"])
    assert kd["family"] == 2 and kd["p_holm"] >= kd["p_value"]
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
        assert c.epochs == 1 and not c.sam and c.augment_on_device and c.seed == 0  # the profile's batched augmentation
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
    config, plan, runs = study
    int8 = students.int8_students(runs, "auto")
    assert list(int8["seed"]) == [0] and int8["mode"].iloc[0] == "static"
    # the agreement is int8's top-1 against the fp32 student's on every test image, measured here independently
    student, _ = load_checkpoint(Path(runs.loc[runs.variant == "kd", "run_dir"].iloc[0]) / "best.pt")
    test = load_split("synthfer", config.data_root, "test")
    images = _images(test, np.arange(len(test)), config.transform, student.config.image_size)
    with torch.no_grad():
        fp32 = student.eval()(torch.from_numpy(images)).argmax(1).numpy()
    quantised = onnxruntime.InferenceSession(int8["path"].iloc[0]).run(None, {"images": images})[0].argmax(1)
    assert int8["top1_agreement"].iloc[0] == pytest.approx((fp32 == quantised).mean())
    assert int8["int8_accuracy"].iloc[0] == pytest.approx(100 * (quantised == test.labels).mean())
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


def test_the_bias_check_scores_the_teacher_and_every_student_where_the_hue_goes_with_the_class(study, monkeypatch):
    config, plan, runs = study
    assert students.bias_check(config, {}, runs) is None  # smoke's SynthFER has bias_strength 0
    scored = []

    def bias_accuracy(model, split, meta_csv, image_size, recipe, **options):
        scored.append((type(model).__name__, split.split, image_size, recipe))
        return {"accuracy": 0.5, "aligned": 0.6, "conflicting": 0.4, "n_aligned": 8, "n_conflicting": 6}

    monkeypatch.setattr(students, "bias_accuracy", bias_accuracy)
    biased = config.replace(synthfer=dataclasses.replace(config.synthfer, bias_strength=0.9))
    bias = students.bias_check(biased, students.pick_teacher(runs, str(plan["teacher"])), runs)
    assert bias["variant"].tolist() == ["teacher", "labels", "kd", "kd_feature"]
    assert np.isnan(bias["seed"].iloc[0]) and bias["seed"].iloc[1:].tolist() == [0, 0, 0]  # a given teacher: no seed
    assert scored == [("QCSNet", "test", 32, "rafdb")] + [("StudentNet", "test", 32, "rafdb")] * 3


def test_bias_comparisons_pair_the_students_gaps_with_each_other_and_the_fixed_teacher():
    """Gaps (aligned − conflicting): teacher 0.05; labels 0.30, 0.34, 0.29 and kd 0.10, 0.12, 0.11 over seeds 0-2."""
    gaps = {"labels": [0.30, 0.34, 0.29], "kd": [0.10, 0.12, 0.11]}
    bias = pd.DataFrame([{"variant": "teacher", "seed": 1, "aligned": 0.9, "conflicting": 0.85}] +
                        [{"variant": v, "seed": s, "aligned": 0.9, "conflicting": 0.9 - g[s]}
                         for v, g in gaps.items() for s in range(3)])
    compared = students.bias_comparisons(bias).set_index("comparison")
    assert list(compared.index) == ["labels − teacher", "kd − teacher", "kd − labels"]
    labels = compared.loc["labels − teacher"]
    low, high = stats.ttest_1samp(np.array(gaps["labels"]) - 0.05, 0).confidence_interval(0.95)
    assert (labels["seeds"], labels["ci_low"], labels["ci_high"]) == (3, pytest.approx(low), pytest.approx(high))
    assert labels["family"] == 3 and labels["verdict"].startswith("labels has a larger gap than teacher by 26.00 points")
    assert compared.loc["kd − labels", "mean_diff"] == pytest.approx(-0.2)
    assert students.bias_comparisons(None) is None


def test_the_findings_give_the_verdicts_and_the_measured_hue_gaps():
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
    text = findings.distillation(teacher, runs, students.comparisons(runs), int8, costs, "resnet10t")
    assert "labels +28.0, kd +24.0, kd_feature +23.0; the teacher -2.0." in text
    assert ("kd − labels: +6.00 points on 3 seeds, interval undefined (every one of the seeds gives the same "
            "difference)") in text  # +6 on every seed: no spread, so no claim
    assert "**not met** (42.0 points behind)" in text
    assert "0.70 ms at 32 px (559× faster" in text
    assert "hue" not in text  # no bias check, no claim about the hue
    bias = pd.DataFrame([{"variant": "teacher", "seed": 0, "aligned": 0.8, "conflicting": 0.75, "n_aligned": 40,
                          "n_conflicting": 60}] +
                        [{"variant": v, "seed": s, "aligned": 0.9, "conflicting": 0.9 - g - 0.01 * s, "n_aligned": 40,
                          "n_conflicting": 60} for v, g in [("labels", 0.3), ("kd", 0.1)] for s in range(3)])
    text = findings.distillation(teacher, runs, students.comparisons(runs), int8, costs, "resnet10t", bias,
                                 students.bias_comparisons(bias))
    assert ("- Background hue, measured: on SynthFER's test split, accuracy on the 40 images whose hue is their "
            "class's (as in train and val) minus that on the 60 whose hue is another class's, in points (mean ± std "
            "over seeds): teacher +5.0 (one checkpoint); labels +31.0 ± 1.0 (3 seeds); kd +11.0 ± 1.0 (3 seeds).") in text
    assert "The gaps paired over the students’ seeds, one family of 3: each interval is an unadjusted" in text
    assert "labels has a larger gap than teacher by 26.00 points" in text
