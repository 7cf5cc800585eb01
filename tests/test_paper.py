"""Notebook 08's tables: our runs found by recipe, best of N and mean ± std beside the paper's numbers, cells that
say where missing data goes, official checkpoints, the ablation table, the domain runs and the cross-domain
matrix (with fakes, and once end to end on a tiny SynthFER), and the findings."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from qcslib import paper
from qcslib.ablation import variant_config
from qcslib.analysis.stats import compare
from qcslib.models.weights import CheckpointError
from qcslib.train import ConfigError, Run, load_profile
from tests.test_ablation import fake_runs


def write_run(config, accuracy, converged=True, selection="val", finished=True):
    """A run directory as fit leaves it, with only what the tables read: config.yaml and summary.json."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    (config.run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    scores = {"epoch": 3, "val_accuracy": accuracy - 0.01, "test_accuracy": accuracy,
              "test_mean_class_accuracy": accuracy, "test_macro_f1": accuracy}
    summary = {"name": config.name, "seed": config.seed, "variant": config.model.variant, "selection": selection,
               "stopped_epoch": 5, "max_epochs": 8, "stopped_early": converged, "converged": converged,
               "still_improving_at_limit": False, "slope": 0.0,
               "best": scores, "last": scores, "train_seconds": 1.0, "backbone_images": 10}
    if finished:
        (config.run_dir / "summary.json").write_text(json.dumps(summary))
    return config.run_dir


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory as the cwd: no data, no runs (the profiles' paths are relative)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def smoke_runs(config, accuracies, **kwargs):
    return [write_run(variant_config(config, "qcs", seed), a, **kwargs) for seed, a in enumerate(accuracies)]


def test_our_runs_are_those_of_the_profiles_recipe_one_a_seed(project):
    config = load_profile("smoke")
    smoke_runs(config, [0.3, 0.5, 0.4])
    write_run(variant_config(config, "qcs_s", 0), 0.9)                                   # another network
    write_run(variant_config(config.replace(runs_dir="runs/smoke", name="ablation", epochs=1), "qcs", 0), 0.9)
    write_run(config.replace(name="smoke-cli", seed=3, data_root="/elsewhere", device="cuda"), 0.45)  # train CLI
    write_run(config.replace(name="smoke-dup"), 0.99)                                       # seed 0 again
    write_run(variant_config(config, "qcs", 4), 0.9, finished=False)                       # still training
    student = write_run(config.replace(name="smoke-resnet10t", seed=5), 0.9) / "summary.json"  # distill CLI
    student.write_text(json.dumps({**json.loads(student.read_text()), "variant": "resnet10t", "student": "resnet10t"}))
    runs = paper.qcs_runs(config)
    assert [r.config.seed for r in runs] == [0, 1, 2, 3]
    assert str(runs[0].dir) == "runs/smoke/qcs-s0" and runs[3].config.data_root == "/elsewhere"


def test_the_main_table_gives_best_of_n_and_mean_std_beside_the_papers_numbers(project):
    config = load_profile("smoke")
    smoke_runs(config, [0.3, 0.5, 0.4])
    write_run(variant_config(config, "qcs", 3), 0.2, converged=False)
    write_run(variant_config(load_profile("rafdb"), "qcs", 0), 0.9, selection="test")  # runs count without the data
    (project / "data" / "ferplus").mkdir(parents=True)
    numbers = paper.main_numbers(config)
    assert list(numbers.index) == ["rafdb", "ferplus", "affectnet7", "affectnet8", "synthfer"]
    synthfer = numbers.loc["synthfer"]
    assert (synthfer["best"], synthfer["n"], synthfer["seeds"], synthfer["converged"]) == (50.0, 4, [0, 1, 2, 3], 3)
    assert synthfer["mean"] == pytest.approx(35.0)
    assert synthfer["std"] == pytest.approx(np.std([30, 50, 40, 20], ddof=1))
    table = paper.main_table(numbers)
    qcs, pretrained = paper.PAPER_COLUMNS
    assert table.loc["SynthFER"].to_dict() == {
        qcs: "not in the paper", pretrained: "not in the paper", "ours: best of N %": "50.00",
        "ours: mean ± std %": "35.00 ± 12.91", "seeds (N)": "0, 1, 2, 3 (4)", "chosen on": "val",
        "converged": "3 of 4", "official checkpoint %": "none given"}
    raf = table.loc["RAF-DB"]
    assert (raf[qcs], raf[pretrained], raf["ours: best of N %"], raf["ours: mean ± std %"]) == \
        ("92.50", "93.02", "90.00", "90.00")  # one seed: no std to show
    assert (raf["seeds (N)"], raf["chosen on"]) == ("0 (1)", "test (paper's protocol)")
    assert table.loc["FERPlus", "ours: best of N %"] == "no runs yet: run the pipeline with --profile ferplus"
    assert table.loc["AffectNet-8", "ours: mean ± std %"] == "not available: put AffectNet-8 at data/affectnet"
    assert table.loc["AffectNet-7", [qcs, pretrained]].tolist() == ["67.94", "not reported"]


def fake_evaluate(accuracies: dict, calls: list):
    """evaluate_checkpoint's stand-in: the accuracy of (checkpoint, root) from ``accuracies``; a missing pair is
    the CheckpointError of a class mismatch."""
    def evaluate(checkpoint, dataset, root, split, **options):
        calls.append((str(checkpoint), dataset, str(root), split))
        if (str(checkpoint), str(root)) not in accuracies:
            raise CheckpointError(f"{checkpoint}: was trained on other classes")
        return {"accuracy": accuracies[str(checkpoint), str(root)]}
    return evaluate


def test_official_checkpoints_are_scored_where_their_data_is(project, monkeypatch):
    calls = []
    monkeypatch.setattr(paper, "evaluate_checkpoint", fake_evaluate({("raf.pth", "data/rafdb"): 0.875}, calls))
    (project / "data" / "rafdb").mkdir(parents=True)
    (project / "data" / "affectnet").mkdir()
    numbers = paper.main_numbers(load_profile("smoke"), {"rafdb": "raf.pth", "ferplus": "fer.pth",
                                                         "affectnet7": "an7.pth"})
    column = paper.main_table(numbers)["official checkpoint %"]
    assert column["RAF-DB"] == "87.50" and column["AffectNet-8"] == "none given"
    assert column["FERPlus"] == "not available: put FERPlus at data/ferplus"
    assert column["AffectNet-7"] == "not scored: an7.pth: was trained on other classes"
    assert calls == [("raf.pth", "rafdb", "data/rafdb", "test"), ("an7.pth", "affectnet7", "data/affectnet", "test")]


def test_the_ablation_table_lists_components_and_the_paired_difference_to_qcs():
    runs = fake_runs({"baseline": [0.5, 0.6, 0.55], "qcs": [0.6, 0.7, 0.62], "qcs_sdpa": [0.61], "dcs": [0.58, 0.6]})
    table = paper.ablation_table(load_profile("smoke"), runs)
    assert list(table.index) == ["baseline", "qcs", "qcs_sdpa", "dcs"]
    parts = ["branches", "cross attention", "φ(S)", "φ(D)", "cross residual", "min / max"]
    assert table.loc["qcs", parts].tolist() == [4, "CSA", "✓", "✓", "✓", "batch"]
    assert table.loc["dcs", ["branches", "φ(S)", "φ(D)"]].tolist() == [2, "✓", "✗"]
    assert table.loc["baseline", ["branches", "cross attention", "φ(D)", "compute"]].tolist() == \
        [1, "—", "—", "its own"]
    assert table.loc["qcs_sdpa", ["cross attention", "φ(S)"]].tolist() == ["SDPA", "—"]
    c = compare(runs, "baseline", "qcs")
    assert table.loc["baseline", "Δ vs QCS (points)"] == f"{100 * c['mean_diff']:+.2f} (3 seeds)"
    assert table.loc["baseline", "95 % interval"] == f"[{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"
    assert table.loc["baseline", "test acc % (mean ± std)"] == "56.00 ± 5.00"
    assert table.loc["qcs", "best of N %"] == "71.00"
    assert table.loc["qcs_sdpa", ["N", "95 % interval"]].tolist() == [1, "n/a"]  # one seed: no interval
    assert table.loc["qcs", "Δ vs QCS (points)"] == "—"


def test_the_domain_runs_reuse_02s_run_for_studio_and_refuse_data_overrides():
    config = load_profile("smoke", ["runs_dir=runs/x", "name=p"])
    plain = paper.domain_configs(config, ["studio", "pose"], 1)
    assert plain["studio"] == variant_config(config, "qcs", 1)  # notebook 02's run
    assert str(plain["pose"].run_dir) == "runs/x/p/domains/pose/qcs-s1"
    assert (plain["pose"].data_root, plain["pose"].synthfer.max_rotation) == ("data/synthfer-smoke-pose", 15.0)
    short = paper.domain_configs(config, ["studio", "style"], 0, ["epochs=1"])
    assert str(short["studio"].run_dir) == "runs/x/p/domains/studio/qcs-s0" and short["studio"].epochs == 1
    assert short["studio"].data_root == config.data_root and short["studio"].synthfer == config.synthfer
    assert short["style"].synthfer.saturation == 0.0 and short["style"].epochs == 1
    assert paper.domain_configs(load_profile("rafdb"), ["studio", "pose"], 0) == {}  # SynthFER domains only
    assert paper.domain_table({}) is None
    for override in ("synthfer.size=64", "data_root=elsewhere", "synthfer_domain=pose"):
        with pytest.raises(ConfigError, match=f"domain_overrides: {override.split('=')[0]} changes the data"):
            paper.domain_configs(config, ["studio"], 0, [override])


def domain_run(config, domain, converged=True, seed=0) -> Run:
    return Run(config.run_dir / domain, config, {"selection": "val", "converged": converged, "stopped_epoch": 2,
                                                  "max_epochs": 2, "still_improving_at_limit": False,
                                                  "best": {"test_accuracy": 0.5}})


def test_the_cross_matrix_scores_every_row_on_every_column_and_says_what_is_missing(project, monkeypatch):
    config = load_profile("smoke")
    configs = paper.domain_configs(config, ["studio", "pose", "style"], 0, ["epochs=1"])
    runs = {d: Run(c.run_dir, c, {}) for d, c in configs.items()}
    accuracies = {(str(runs[r].best_checkpoint), configs[c].data_root): a
                  for (r, c), a in {("studio", "studio"): 0.8, ("studio", "pose"): 0.5, ("studio", "style"): 0.7,
                                    ("pose", "studio"): 0.6, ("pose", "pose"): 0.75, ("pose", "style"): 0.55,
                                    ("style", "studio"): 0.7, ("style", "pose"): 0.4}.items()}
    monkeypatch.setattr(paper, "evaluate_checkpoint", fake_evaluate(accuracies, []))
    rows, columns = paper.cross_entries(config, runs, {"ferplus": "fer.pth"})
    assert list(rows) == ["SynthFER · studio", "SynthFER · pose", "SynthFER · style", "RAF-DB", "FERPlus",
                          "AffectNet-7", "AffectNet-8", "official FERPlus checkpoint"]
    assert list(columns) == list(rows)[:7]
    matrix = paper.cross_matrix(rows, columns, "cpu")
    assert matrix.loc["SynthFER · pose", "SynthFER · studio"] == 0.6
    assert matrix.loc["SynthFER · style", "SynthFER · style"].startswith("not scored: ")
    assert (matrix.loc["RAF-DB"] == "not available: put RAF-DB at data/rafdb").all()  # no run and no data
    assert matrix.loc["SynthFER · studio", "AffectNet-7"] == "not available: put AffectNet-7 at data/affectnet"
    assert matrix.loc["official FERPlus checkpoint", "FERPlus"] == "not available: put FERPlus at data/ferplus"
    assert paper.cross_table(matrix).loc["SynthFER · studio", "SynthFER · pose"] == "50.00"
    numeric = matrix.copy()
    numeric.loc["SynthFER · style", "SynthFER · style"] = 0.65
    shift = paper.domain_shift(numeric)
    assert shift["domains"] == ["studio", "pose", "style"]
    assert shift["in_domain"] == pytest.approx(np.mean([0.8, 0.75, 0.65]))
    assert shift["cross_domain"] == pytest.approx(np.mean([0.5, 0.7, 0.6, 0.55, 0.7, 0.4]))
    assert shift["drop"][:2] == ("studio", "pose") and shift["drop"][2] == pytest.approx(30.0)
    assert paper.domain_shift(numeric.iloc[:1, :1]) is None


def test_domain_runs_train_score_and_are_reused_on_a_tiny_synthfer(project):
    """End to end: two domains generated and trained (a few images, one epoch), each scored on both test splits."""
    tiny = ["synthfer.train_identities=2", "synthfer.val_identities=1", "synthfer.test_identities=1",
            "synthfer.images_per_identity=7", "synthfer.size=32", "data_root=data/tiny", "batch_size=4"]
    config = load_profile("smoke", tiny + ["runs_dir=runs", "name=t"])
    configs = paper.domain_configs(config, ["studio", "style"], 0, ["epochs=1", "sam=false"])
    runs = paper.domain_runs(configs)
    assert (project / "data" / "tiny-style" / "settings.json").exists()
    rows, columns = paper.cross_entries(config, runs)
    matrix = paper.cross_matrix(rows, columns, "cpu")
    block = matrix.iloc[:2, :2].to_numpy(dtype=float)
    # in-domain cells are each run's best.pt on its own test split: its recorded test accuracy
    assert np.diag(block) == pytest.approx([runs[d].summary["best"]["test_accuracy"] for d in ("studio", "style")])
    assert matrix.loc["SynthFER · style", "FERPlus"] == "not available: put FERPlus at data/ferplus"
    table = paper.domain_table(runs)
    assert table["changes"].to_dict() == {"studio": "nothing (the profile's)", "style": "saturation 0.0"}
    before = {d: (r.dir / "summary.json").stat().st_mtime_ns for d, r in runs.items()}
    again = paper.domain_runs(configs)
    assert {d: (r.dir / "summary.json").stat().st_mtime_ns for d, r in again.items()} == before  # reused


def test_the_findings_give_seeds_the_selection_split_and_no_claim_from_unconverged_runs(project):
    config = load_profile("smoke")
    smoke_runs(config, [0.3, 0.5, 0.4])
    numbers = paper.main_numbers(config)
    numbers.loc["rafdb", "official"] = 0.9
    ablation = fake_runs({"baseline": [0.5, 0.6], "qcs": [0.6, 0.7]})
    ablation.loc[0, "converged"] = False
    names = ["SynthFER · studio", "SynthFER · pose"]
    matrix = pd.DataFrame([[0.8, 0.5], [0.6, 0.7]], index=names, columns=names)
    domains = {"studio": domain_run(config, "studio"), "pose": domain_run(config, "pose", converged=False)}
    text = paper.findings(numbers, ablation, matrix, domains)
    assert "chosen on the **val** split" in text
    assert "- **SynthFER**: best of 3 seeds (0, 1, 2) 50.00 % test accuracy, mean ± std 40.00 ± 10.00 %: the best " \
           "seed is 10.00 points above the mean (not in the paper)." in text
    assert "No runs of ours on RAF-DB, FERPlus, AffectNet-7, AffectNet-8" in text
    assert "The official RAF-DB checkpoint: **90.00 %** test accuracy here (the authors report 92.50 %)." in text
    assert "seeds per variant: baseline 2, qcs 2." in text
    assert ("*Does QCS beat the baseline?* qcs − baseline: +10.00 points on 2 seeds, interval undefined (fewer than 3 "
            "paired seeds), so no conclusion") in text  # +10 on both seeds: no spread, and too few seeds
    assert "**Not converged** (1: baseline-s0)" in text
    assert "in-domain accuracy 75.00 % on average, cross-domain 55.00 % (chance 14.29 %); the largest drop is " \
           "trained on *studio*, tested on *pose*: 30.00 points" in text
    assert "**Not converged** (1 of 2 domain runs: pose): these numbers are not results." in text
    even = pd.DataFrame([[0.5, 0.6], [0.7, 0.7]], index=names, columns=names)
    assert "no model scores lower on another domain's test split than on its own" in \
        paper.findings(numbers, ablation, even, domains)
    smoke_runs(config, [0.3], converged=False, selection="test")
    text = paper.findings(paper.main_numbers(config), ablation, matrix, domains)
    assert "**Paper's protocol** in some runs" in text
    assert "; **1 of 3 runs did not converge**: not a result." in text
