"""Ablation bookkeeping: variant configs and the matched budget, run reuse, parallel runs, mean ± std, paired
intervals and their verdicts, bias-conflicting accuracy, and the findings text."""
import dataclasses
import json
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from qcslib import ablation
from qcslib.analysis import findings
from qcslib.analysis.stats import compare, holm, verdict, with_holm
from qcslib.data.sources import load_split
from qcslib.data.synthfer import SynthFERSettings, generate
from qcslib.models.backbone import IRBackbone
from qcslib.train import fit, load_profile
from qcslib.train import rundir
from qcslib.train.loop import work_units


def fake_runs(values: dict[str, list[float]], converged=True) -> pd.DataFrame:
    rows = []
    for variant, accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append({"variant": variant, "seed": seed, "selection": "val", "converged": converged,
                         "stopped_early": True, "still_improving_at_limit": False, "stopped_epoch": 9,
                         "max_epochs": 12, "best_epoch": 7,
                         "backbone_images": 1.2e6, "train_seconds": 40.4,
                         **{f"{w}_{m}": acc + (0.01 if w == "best" else 0) for w in ("best", "last")
                            for m in ablation.METRICS}})
    return pd.DataFrame(rows)


def test_variant_configs_change_only_the_model_and_the_name():
    base = load_profile("smoke")
    c = ablation.variant_config(base, "qcs_s", 3)
    assert (c.name, c.runs_dir, c.seed) == ("qcs_s-s3", "runs/smoke", 3)
    assert c.model.csa == "s" and c.model.variant == "qcs"
    assert ablation.variant_config(base, "baseline", 0).model.csa is None
    assert {k: v for k, v in c.to_dict().items() if k not in ("name", "runs_dir", "seed", "model")} == \
        {k: v for k, v in base.to_dict().items() if k not in ("name", "runs_dir", "seed", "model")}
    with pytest.raises(ValueError, match="unknown variant 'qcs_x'"):
        ablation.variant_config(base, "qcs_x", 0)


def test_the_matched_baseline_gets_qcs_steps_and_image_budget():
    base = load_profile("smoke", ["epoch_fraction=0.5"])
    matched, qcs = (ablation.variant_config(base, v, 0) for v in ("baseline_matched", "qcs"))
    assert matched.model.variant == "baseline"
    assert (matched.batch_size, matched.epoch_fraction) == (4 * qcs.batch_size, 4 * qcs.epoch_fraction)
    assert work_units(matched) == work_units(qcs) == 4 * work_units(ablation.variant_config(base, "baseline", 0))


def count_backbone_images(monkeypatch) -> dict:
    counts, real = {"images": 0}, IRBackbone.forward

    def forward(self, x):
        if self.training:
            counts["images"] += len(x)
        return real(self, x)

    monkeypatch.setattr(IRBackbone, "forward", forward)
    return counts


def test_the_matched_baseline_pushes_as_many_images_through_the_backbone_as_qcs(tmp_path, monkeypatch, smoke_data):
    """Counted in the backbone itself, over one epoch, SAM's two passes included."""
    data = smoke_data
    base = load_profile("smoke", [f"runs_dir={tmp_path}", f"data_root={data}", "epochs=1", "sam=true"])
    seen = {}
    for variant in ("baseline", "baseline_matched", "qcs"):
        counts = count_backbone_images(monkeypatch)
        run = fit(ablation.variant_config(base, variant, 0), progress=False)
        seen[variant] = counts["images"]
        assert run.summary["backbone_images"] == counts["images"]
        monkeypatch.undo()
    n_train = 12 * 28
    assert seen["qcs"] == 1 * 2 * 4 * n_train  # epochs × SAM passes × branches × anchors
    assert seen["baseline_matched"] == seen["qcs"] == 4 * seen["baseline"]
    steps = {v: pd.read_csv(tmp_path / "smoke" / f"{v}-s0" / "metrics.csv")["steps"].tolist()
             for v in ("baseline_matched", "qcs")}
    assert steps["baseline_matched"] == steps["qcs"]  # as many optimizer steps


def write_run(config, summary, version=None):
    """A finished run as fit leaves it, with what reuse reads: config.yaml, summary.json and version.json (this
    code's, unless ``version``)."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    (config.run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    (config.run_dir / "summary.json").write_text(json.dumps(summary))
    (config.run_dir / "version.json").write_text(json.dumps(version or rundir.version(config)))


def test_the_code_fingerprint_ignores_documentation_and_sees_a_changed_statement(tmp_path):
    package = Path(rundir.__file__).parents[1]
    copy = tmp_path / "qcslib"
    for name in rundir.TRAINING_CODE:
        shutil.copytree(package / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    assert rundir.code_fingerprint(copy) == rundir.code_fingerprint()
    losses = copy / "train" / "losses.py"
    source = losses.read_text()
    losses.write_text(source.replace('"""', '"""A new first line of documentation.\n', 1) + "\n# a comment\n")
    rundir.code_fingerprint.cache_clear()
    assert rundir.code_fingerprint(copy) == rundir.code_fingerprint()  # docstrings and comments: the same code
    losses.write_text(source + "\nSCALE = 2.0\n")  # a statement
    rundir.code_fingerprint.cache_clear()
    assert rundir.code_fingerprint(copy) != rundir.code_fingerprint()


def test_the_data_fingerprint_sees_regenerated_images_and_relabelled_lists(tmp_path):
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "train" / "a.png").write_bytes(b"x" * 10)
    (root / "labels.csv").write_text("a.png,0\n")
    (root / ".cache.npy").write_bytes(b"ignored")
    first = rundir.data_fingerprint(root)
    (root / ".cache.npy").write_bytes(b"hidden files are not data")
    assert rundir.data_fingerprint(root) == first
    (root / "labels.csv").write_text("a.png,1\n")
    relabelled = rundir.data_fingerprint(root)
    (root / "train" / "a.png").write_bytes(b"x" * 11)
    assert len({first, relabelled, rundir.data_fingerprint(root)}) == 3
    assert rundir.data_fingerprint(tmp_path / "nothing") == "missing"


def test_a_run_of_other_code_is_trained_again_unless_reuse_stale(tmp_path, monkeypatch, capsys):
    config = load_profile("smoke", [f"runs_dir={tmp_path}", f"data_root={tmp_path / 'data'}"])
    c = ablation.variant_config(config, "qcs", 0)
    write_run(c, {"stopped_epoch": 2}, {**rundir.version(c), "code": "0123456789ab"})
    assert not ablation.finished(c)
    assert f"{c.run_dir}: trained by other code (code 0123456789ab there, {rundir.code_fingerprint()} here)" in \
        capsys.readouterr().err
    assert ablation.finished(c, reuse_stale=True)
    monkeypatch.setattr(ablation, "run_all", lambda calls, jobs: None)  # what would train, without training
    assert ablation.fit_all([c]) == [c] and ablation.fit_all([c], reuse_stale=True) == []
    assert ablation.stale(c, [], reuse_stale=True)  # reused though trained by other code: the reports name it
    assert not ablation.stale(c, [c], reuse_stale=True) and not ablation.stale(c, [], reuse_stale=False)
    runs = fake_runs({"qcs": [0.5, 0.6, 0.7]}).assign(other_code=[True, False, False])
    assert "**Trained by other code** (1: qcs-s0), reused as asked (reuse_stale)" in findings.convergence(runs)
    write_run(c, {"stopped_epoch": 2}, {k: v for k, v in rundir.version(c).items() if k != "data"})
    assert not ablation.finished(c)  # the data it trained on is not recorded
    (c.run_dir / "version.json").unlink()  # a run from before runs recorded their code
    assert not ablation.finished(c)
    assert "records no version" in capsys.readouterr().err


def test_a_run_is_reused_only_when_its_config_matches_and_it_stopped(tmp_path):
    c = ablation.variant_config(load_profile("smoke", [f"runs_dir={tmp_path}"]), "qcs", 0)
    assert not ablation.finished(c)
    c.run_dir.mkdir(parents=True)
    (c.run_dir / "config.yaml").write_text(yaml.safe_dump(c.to_dict()))
    assert not ablation.finished(c)                                     # still training: no summary yet
    write_run(c, {"stopped_epoch": 2})
    assert ablation.finished(c)
    assert not ablation.finished(c.replace(lr=0.5))                      # another config


def test_an_interrupted_run_of_this_config_and_code_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    config = load_profile("smoke", [f"runs_dir={tmp_path}", f"data_root={tmp_path / 'data'}"])
    c = ablation.variant_config(config, "qcs", 0)
    calls = []
    monkeypatch.setattr(ablation, "fit", lambda config, **kw: calls.append(kw))
    ablation.resume_or_fit(c)  # nothing there: a new run
    write_run(c, {"stopped_epoch": 2})
    (c.run_dir / "summary.json").unlink()  # stopped by Ctrl-C or a crash: last.pt, no summary
    (c.run_dir / "last.pt").write_bytes(b"")
    ablation.resume_or_fit(c)
    assert calls == [{"overwrite": True, "progress": True}, {"resume": c.run_dir / "last.pt", "progress": True}]
    assert f"resuming the unfinished run {c.run_dir} from last.pt" in capsys.readouterr().out
    assert ablation.interrupted(c.replace(lr=0.5)) is None  # another config's run: started afresh
    (c.run_dir / "version.json").write_text(json.dumps({**rundir.version(c), "code": "0123456789ab"}))
    assert ablation.interrupted(c) is None  # trained by other code
    write_run(c, {"stopped_epoch": 2})
    assert ablation.interrupted(c) is None  # it finished: reused, not resumed


def test_a_run_written_before_a_setting_existed_is_reused_at_its_default(tmp_path):
    c = ablation.variant_config(load_profile("smoke", [f"runs_dir={tmp_path}"]), "qcs", 0)
    write_run(c, {"stopped_epoch": 2})
    old = c.to_dict()
    del old["synthfer"]["saturation"]  # config.yaml from before SynthFER had the setting
    (c.run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    assert ablation.finished(c)
    assert not ablation.finished(c.replace(synthfer=dataclasses.replace(c.synthfer, saturation=0.0)))


def test_the_plan_gives_the_main_variants_their_seeds_and_the_rest_theirs():
    plan = ablation.plan([0, 1, 2], [0])
    assert list(plan) == list(ablation.VARIANTS)
    assert {v: s for v, s in plan.items() if s == [0, 1, 2]}.keys() == set(ablation.MAIN)
    assert plan["qcs_sdpa"] == [0]


def test_parallel_runs_train_what_one_thread_trains_alone(tmp_path, smoke_data):
    data = smoke_data
    config = load_profile("smoke", [f"data_root={data}", "epochs=1", "patience=0"])
    plan = {"baseline": [0], "dcs": [0, 1]}
    parallel = ablation.train_variants(config.replace(runs_dir=str(tmp_path / "parallel")), plan, jobs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of the two worker processes used
    try:
        alone = ablation.train_variants(config.replace(runs_dir=str(tmp_path / "alone")), plan, progress_bars=False)
    finally:
        torch.set_num_threads(threads)
    assert parallel[["variant", "seed"]].values.tolist() == [["baseline", 0], ["dcs", 0], ["dcs", 1]]
    timing = ["train_seconds", "reused", "run_dir"]
    pd.testing.assert_frame_equal(parallel.drop(columns=timing), alone.drop(columns=timing))
    again = ablation.train_variants(config.replace(runs_dir=str(tmp_path / "parallel")), plan, jobs=2)
    assert again["reused"].all()


def test_parallel_runs_find_their_synthfer_generated_before_they_start(tmp_path, monkeypatch):
    """Two workers that each generated a missing SynthFER would write into one partial folder and collide."""
    root = tmp_path / "data"
    config = load_profile("smoke", [f"data_root={root}", f"runs_dir={tmp_path / 'runs'}"])
    started = []
    monkeypatch.setattr(ablation, "run_all", lambda calls, jobs: started.append(
        ((root / "settings.json").is_file(), len(calls), jobs)))
    ablation.fit_all([ablation.variant_config(config, "qcs", seed) for seed in (0, 1)], jobs=2)
    assert started == [(True, 2, 2)]


def _touch_after(path, seconds):  # module level: worker processes must unpickle it
    time.sleep(seconds)
    Path(path).touch()


def _fail():
    raise ValueError("worker failed")


def test_a_workers_error_stops_the_calls_not_started_yet(tmp_path):
    later = [tmp_path / f"later{i}" for i in range(8)]
    calls = [partial(_touch_after, tmp_path / "first", 3), _fail, *[partial(_touch_after, p, 2) for p in later]]
    with pytest.raises(ValueError, match="worker failed"):
        ablation.run_all(calls, jobs=2)
    assert (tmp_path / "first").exists()  # running when the error came: it ends
    # those already handed to a worker still run; before, all 8 ran
    assert sum(p.exists() for p in later) < len(later)


def test_summary_is_mean_and_sample_std_over_seeds():
    runs = fake_runs({"baseline": [0.5, 0.6, 0.7], "qcs": [0.6, 0.6, 0.9]})
    table = ablation.summarize(runs)
    assert list(table.index) == ["baseline", "qcs"] and table["n"].tolist() == [3, 3]
    assert table.loc["qcs", "last_test_accuracy_mean"] == pytest.approx(0.7)
    assert table.loc["qcs", "last_test_accuracy_std"] == pytest.approx(np.std([0.6, 0.6, 0.9], ddof=1))
    assert table.loc["baseline", "best_test_accuracy_mean"] == pytest.approx(0.61)
    text = ablation.format_mean_std(table)
    assert text.loc["baseline", "last_test_accuracy"] == "60.00 ± 10.00"


def test_the_paired_interval_on_known_numbers():
    """Differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, so 0.02 ± t(0.975, 2) · 0.01 / √3."""
    runs = fake_runs({"baseline": [0.50, 0.60, 0.70], "qcs": [0.51, 0.62, 0.73]})
    c = compare(runs, "qcs", "baseline")
    half = stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)
    assert stats.t.ppf(0.975, 2) == pytest.approx(4.3027, abs=1e-4)
    assert (c["seeds"], c["ahead"]) == (3, 3)
    assert c["mean_diff"] == pytest.approx(0.02)
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert c["p_value"] == pytest.approx(stats.ttest_rel([0.51, 0.62, 0.73], [0.5, 0.6, 0.7]).pvalue)
    assert verdict(c) == ("qcs − baseline: no detectable difference (+2.00 points; 95 % interval [-0.48, +4.48] "
                          "points, 3 seeds)")


def test_a_verdict_follows_its_interval():
    ahead = compare(fake_runs({"b": [0.5, 0.6, 0.7, 0.6], "a": [0.6, 0.71, 0.79, 0.7]}), "a", "b")
    assert ahead["ci_low"] > 0
    assert verdict(ahead).startswith("a is ahead of b by 10.00 points (95 % interval [+")
    behind = compare(fake_runs({"b": [0.6, 0.71, 0.79, 0.7], "a": [0.5, 0.6, 0.7, 0.6]}), "a", "b")
    assert behind["ci_high"] < 0 and verdict(behind).startswith("a is behind b by 10.00 points")
    with pytest.raises(ValueError, match="no 'c' runs"):
        compare(fake_runs({"b": [0.5], "a": [0.6]}), "c", "b")


@pytest.mark.parametrize("b, a, reason", [
    ([0.5], [0.6], "fewer than 3 paired seeds"),
    ([0.5, 0.6], [0.6, 0.75], "fewer than 3 paired seeds"),           # a t-interval exists, on one dof
    ([0.5, 0.6, 0.7], [0.6, 0.7, 0.8], "every one of the seeds gives the same difference"),
])
def test_an_interval_from_too_few_seeds_or_identical_differences_is_undefined(b, a, reason):
    """A zero-width interval from identical differences must not read "ahead"; nor may one from 2 seeds."""
    c = compare(fake_runs({"b": b, "a": a}), "a", "b")
    assert np.isnan(c["ci_low"]) and np.isnan(c["ci_high"]) and np.isnan(c["p_value"])
    assert verdict(c) == (f"a − b: {100 * (np.mean(a) - np.mean(b)):+.2f} points on {len(a)} seeds, interval "
                          f"undefined ({reason}), so no conclusion")


def test_the_interval_label_follows_the_confidence_level():
    runs = fake_runs({"b": [0.5, 0.6, 0.7, 0.6], "a": [0.6, 0.71, 0.79, 0.7]})
    c = compare(runs, "a", "b", confidence=0.9)
    low, high = stats.ttest_rel([0.61, 0.72, 0.8, 0.71], [0.51, 0.61, 0.71, 0.61]).confidence_interval(0.9)
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert f"(90 % interval [{100 * low:+.2f}, {100 * high:+.2f}] points, 4 seeds)" in verdict(c)


def test_holm_adjusts_a_family_and_leaves_undefined_comparisons_out():
    """p = 0.01, 0.04, 0.03 and one undefined (m = 3): 3 · 0.01, max(0.03, 2 · 0.03), max(0.06, 1 · 0.04)."""
    assert holm([0.01, 0.04, 0.03, np.nan]) == pytest.approx([0.03, 0.06, 0.06, np.nan], nan_ok=True)
    assert holm([0.9, 0.02]) == pytest.approx([0.9, 0.04]) and holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_a_difference_that_does_not_survive_holm_is_not_declared():
    runs = fake_runs({"b": [0.5, 0.6, 0.7, 0.6], "a": [0.6, 0.71, 0.79, 0.7], "c": [0.55, 0.6, 0.71, 0.6]})
    c, d = with_holm([compare(runs, "a", "b"), compare(runs, "c", "b")])
    assert c["ci_low"] > 0 and c["p_value"] < 0.05 and c["family"] == 2
    assert c["p_holm"] == pytest.approx(min(1, 2 * c["p_value"]) if c["p_value"] < d["p_value"] else
                                        max(min(1, 2 * d["p_value"]), c["p_value"]))
    text = verdict({**c, "p_holm": 0.2})
    assert text.startswith("a − b: no detectable difference after Holm's correction (+10.00 points; 95 % interval, "
                           "unadjusted [+") and text.endswith("Holm-adjusted p = 0.200 over 2 comparisons)")
    assert verdict({**c, "p_holm": 0.01}).startswith("a is ahead of b by 10.00 points (95 % interval, unadjusted [+")


def test_comparisons_answer_the_listed_questions_for_the_variants_that_ran():
    runs = fake_runs({"baseline": [0.5, 0.6, 0.7], "baseline_matched": [0.6, 0.65, 0.72], "qcs": [0.6, 0.66, 0.75]})
    compared = ablation.comparisons(runs)
    assert compared["comparison"].tolist() == ["qcs − baseline", "qcs − baseline_matched", "baseline_matched − baseline"]
    assert "equal compute" in compared.loc[1, "question"] and compared.loc[1, "seeds"] == 3


def test_the_run_table_says_which_split_chose_each_checkpoint():
    runs = fake_runs({"baseline": [0.5], "qcs": [0.6]})
    table = ablation.run_table(runs)
    assert table.loc[1].to_dict() == {"variant": "qcs", "seed": 0, "epochs": "9/12", "ended by": "patience",
                                      "converged": "yes", "chosen on": "val", "chosen epoch": 7, "val acc %": 61.0,
                                      "test acc %": 61.0, "backbone images (M)": 1.2, "train s": 40}
    runs.loc[0, ["stopped_early", "still_improving_at_limit"]] = False, True
    assert ablation.run_table(runs)["ended by"].tolist() == ["limit, still improving", "patience"]
    runs["selection"] = "test"
    assert set(ablation.run_table(runs)["chosen on"]) == {"test (paper's protocol)"}


def test_findings_follow_the_intervals_and_flag_unconverged_runs():
    runs = fake_runs({"baseline": [0.5, 0.6, 0.7], "qcs": [0.51, 0.62, 0.73]})
    table, compared = ablation.summarize(runs), ablation.comparisons(runs)
    text = ablation.findings(runs, table, compared, None, ceiling=0.99, chance=1 / 7)
    assert "chosen on the **val** split" in text and "6 of 6 runs converged" in text
    assert "6 were stopped by patience before their epoch limit, 0 reached it" in text and "Still improving" not in text
    assert "no detectable difference" in text and "95 % interval" in text and "ceiling is 99.00 %" in text
    runs.loc[0, "converged"] = False
    assert "**Not converged** (1: baseline-s0)" in ablation.findings(runs, table, compared, None, None, 0.1)
    runs.loc[1, ["converged", "stopped_early", "still_improving_at_limit"]] = False, False, True
    text = ablation.findings(runs, table, compared, None, None, 0.1)
    assert "4 of 6 runs converged" in text and "**Still improving at their limit** (1: baseline-s1)" in text
    runs["selection"] = "test"
    assert "**Paper's protocol**" in ablation.findings(runs, table, compared, None, None, 0.1)


class Oracle(torch.nn.Module):
    """Predicts class 0 for every image: right exactly on the class-0 images."""

    def forward(self, images):
        return torch.nn.functional.one_hot(torch.zeros(len(images), dtype=torch.long), 7).float()


def test_bias_accuracy_splits_the_test_set_by_the_attribute(tmp_path):
    root = generate(tmp_path / "s", SynthFERSettings(size=32, train_identities=1, val_identities=1, test_identities=2,
                                                      images_per_identity=14, bias_strength=0.9))
    test = load_split("synthfer", root, "test")
    result = ablation.bias_accuracy(Oracle(), test, root / "meta.csv", 32, progress=False)
    meta = pd.read_csv(root / "meta.csv").query("split == 'test'")
    conflicting = meta["bias_conflicting"].astype(bool).to_numpy()
    right = (meta["label"] == 0).to_numpy()
    assert result["n_conflicting"] == conflicting.sum() and result["n_aligned"] == (~conflicting).sum()
    assert result["conflicting"] == pytest.approx(right[conflicting].mean())
    assert result["aligned"] == pytest.approx(right[~conflicting].mean())
    assert result["accuracy"] == pytest.approx(right.mean())


def test_bias_summary_gives_mean_and_std_of_each_accuracy_and_of_the_gap():
    bias = pd.DataFrame({"variant": ["qcs", "qcs", "baseline"], "seed": [0, 1, 0],
                         "aligned": [0.9, 0.8, 0.95], "conflicting": [0.7, 0.7, 0.45]})
    summary = ablation.bias_summary(bias)
    assert list(summary.index) == ["qcs", "baseline"] and list(summary["n"]) == [2, 1]
    assert summary.loc["qcs", "aligned"] == "85.00 ± 7.07" and summary.loc["qcs", "conflicting"] == "70.00 ± 0.00"
    assert summary.loc["qcs", "gap"] == "15.00 ± 7.07"
    assert summary.loc["baseline", "gap"] == "50.00"  # one seed: no std to show
    runs = fake_runs({"baseline": [0.5], "qcs": [0.6, 0.7]})
    text = ablation.findings(runs, ablation.summarize(runs), ablation.comparisons(runs), bias, None, 0.1)
    assert "baseline 45.00 %; qcs 70.00 ± 0.00 %" in text


def test_bias_comparisons_pair_the_gaps_of_qcs_and_each_baseline_over_seeds():
    """Gaps (aligned − conflicting) per seed: qcs 0.10, 0.12, 0.08; baseline_matched 0.30, 0.35, 0.28, so the
    per-seed differences are −0.20, −0.23, −0.20; dcs did not run, so its comparison is left out."""
    bias = pd.DataFrame({"variant": ["qcs"] * 3 + ["baseline_matched"] * 3, "seed": [0, 1, 2] * 2,
                         "aligned": [0.9, 0.92, 0.88, 0.95, 0.95, 0.93],
                         "conflicting": [0.8, 0.8, 0.8, 0.65, 0.6, 0.65]})
    compared = ablation.bias_comparisons(bias)
    assert compared["comparison"].tolist() == ["qcs − baseline_matched"]
    row = compared.iloc[0]
    diff = np.array([-0.20, -0.23, -0.20])
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    assert (row["mean_diff"], row["ci_low"], row["ci_high"]) == (pytest.approx(diff.mean()),
                                                                  pytest.approx(diff.mean() - half),
                                                                  pytest.approx(diff.mean() + half))
    assert row["family"] == 1 and row["p_holm"] == pytest.approx(row["p_value"])
    assert row["verdict"].startswith("qcs has a smaller gap than baseline_matched by 21.00 points (95 % interval, "
                                     "unadjusted [")
    assert ablation.bias_comparisons(None) is None and ablation.comparison_table(None) is None
    table = ablation.comparison_table(compared, "bias gap")
    assert table.index.name == "comparison (points of bias gap)"
    assert list(table.columns) == ["question", "seeds", "ahead on", "mean difference", "95 % interval (unadjusted)",
                                   "Holm p (of 1)"]
    runs = fake_runs({"baseline_matched": [0.5, 0.6, 0.7], "qcs": [0.51, 0.62, 0.73]})
    text = ablation.findings(runs, ablation.summarize(runs), ablation.comparisons(runs), bias, None, 0.1)
    assert ("- Paired comparisons of the bias gap (aligned − conflicting accuracy), one family of 1: each interval "
            "is an unadjusted 95 % interval; a difference is declared only where its Holm-adjusted p (over the 1 "
            "comparisons with an interval) is below 0.05.\n  - *does QCS lean less on the background hue than the "
            "baseline at equal compute?* qcs has a smaller gap than") in text
