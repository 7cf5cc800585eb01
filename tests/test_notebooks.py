"""What the notebooks share: no logic in their cells, their parameters and the checks on them, the set-up call,
reading a finished run back, their tables and their "What we found" texts."""
import ast
import json
import os

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
import yaml

from qcslib import ablation, notebook, pipeline
from qcslib.analysis import cam, embedding, findings, tables
from qcslib.data.sources import Split, class_mapping
from qcslib.faces import PhotoPredictions
from qcslib.notebook import NotebookParameters, notebook_parameters
from qcslib.train import ConfigError, Run, Scores, load_profile
from qcslib.train import rundir

LOGIC = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
         ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.If, ast.IfExp)


def logic_in(source: str) -> list[str]:
    """The loops, comprehensions, definitions and branches of a code cell (IPython's % and ! lines left out)."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    return [type(node).__name__ for node in ast.walk(ast.parse(code)) if isinstance(node, LOGIC)]


def test_the_logic_check_finds_loops_definitions_and_branches():
    assert logic_in("%matplotlib inline\nx = f(a, b=[1, 2])\nx.round(2)") == []
    assert logic_in("for i in x:\n    pass") == ["For"]
    assert logic_in("y = [v for v in x]") == ["ListComp"]
    assert logic_in("y = {k: v for k, v in x.items()}") == ["DictComp"]
    assert logic_in("f = lambda v: v") == ["Lambda"]
    assert logic_in("def f():\n    return 1") == ["FunctionDef"]
    assert logic_in("if a:\n    b()\nelse:\n    c()") == ["If"]
    assert logic_in("y = a if b else c") == ["IfExp"]


WORK = {"fit", "distill", "reuse_or_fit", "train_variants", "fit_all", "open", "read_csv", "to_csv", "savefig",
        "load_checkpoint", "generate", "notebook"}  # what a teaching cell never calls: training, I/O, the runs


def called_names(source: str) -> set[str]:
    """Every name a cell calls or reads attributes from, as written (``notebook.setup(...)`` gives notebook, setup)."""
    tree = ast.parse(source)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


def assigned_names(source: str) -> set[str]:
    """The names a cell binds: assignment and loop targets."""
    targets = [t for n in ast.walk(ast.parse(source)) for t in
               (n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.For) else [])]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


@pytest.mark.parametrize("path", pipeline.notebooks(), ids=lambda p: p.stem)
def test_notebook_cells_hold_no_logic(path):
    """Logic lives in qcslib. Two kinds of cell are allowed a few lines of it: a teaching cell (tagged
    ``teaching``: toy numbers through a formula, no training, no I/O, no runs) and an interactive cell (tagged
    ``interactive``: one function a widget calls)."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    tags = {i: c.metadata.get("tags", []) for i, c in enumerate(cells)}
    offences = {i: logic_in(c.source) for i, c in enumerate(cells) if "teaching" not in tags[i]}
    offences = {i: [n for n in found if not ("interactive" in tags[i] and n == "FunctionDef")]
                for i, found in offences.items()}
    assert {i: found for i, found in offences.items() if found} == {}
    for i, c in enumerate(cells):
        if "teaching" in tags[i]:
            assert not called_names(c.source) & WORK, f"teaching cell {i} trains, reads or writes"
            others = set().union(*(called_names(o.source) for j, o in enumerate(cells) if j != i and "%" not in o.source))
            assert not assigned_names(c.source) & others, f"teaching cell {i} reuses a name the notebook's cells use"
            assert len(c.source.splitlines()) <= 16  # a few lines, not a module
            last = ast.parse(c.source).body[-1]  # it ends by checking itself against the qcslib code it mirrors
            assert isinstance(last, ast.Assert) or "assert" in ast.unparse(last), f"teaching cell {i} checks nothing"


@pytest.mark.parametrize("path", pipeline.notebooks(), ids=lambda p: p.stem)
def test_every_notebook_parameter_is_declared_and_has_a_schema(path):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets]
    declared = list(papermill.inspect_notebook(str(path)))
    assert declared == assigned  # papermill parses every line, so the pipeline can inject each one
    fields = {f for f in NotebookParameters.__dataclass_fields__}
    assert set(declared) - fields == set(notebook.RUN_PARAMETERS)
    setup = next(c.source for c in nb.cells if "notebook.setup(" in c.source)
    assert all(f"{name}={name}" in setup for name in set(declared) - {"profile"})  # each one reaches setup
    assert 'os.environ.get("QCS_PROFILE", "cpu")' in cell.source
    for line in cell.source.splitlines():  # one short comment each, says what the parameter is for
        if "=" in line.split("#")[0]:
            assert "  # " in line and len(line.split("  # ", 1)[1]) >= 10 and len(line) <= 120, line


@pytest.mark.parametrize("profile", sorted(p.stem for p in notebook.ROOT.glob("qcslib/profiles/*.yaml")))
def test_every_profile_has_valid_notebook_parameters(profile):
    params = notebook_parameters(profile)
    assert isinstance(params, NotebookParameters) and params.seeds


def test_profile_notebook_parameters_override_the_defaults_and_merge_with_the_base():
    assert notebook_parameters("study").seeds == [0, 1, 2, 3, 4]
    assert (notebook_parameters("study").student_seeds, notebook_parameters("cpu").student_seeds) == ([0, 1, 2], [])
    assert notebook_parameters("study").tsne_points == notebook_parameters("cpu").tsne_points == 1000  # merged
    smoke = notebook_parameters("smoke")
    assert (smoke.ablation_overrides, smoke.tsne_points) == (["epochs=1"], 112)
    assert smoke.localisation_images == NotebookParameters().localisation_images  # not in the profile: the default


def profile_with(tmp_path, notebooks) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": "smoke", "notebooks": notebooks}))
    return str(path)


@pytest.mark.parametrize("notebooks, message", [
    ({"tsne": 10}, "notebooks.tsne: not a notebook parameter; known: seeds,"),
    ({"tsne_points": "many"}, "notebooks.tsne_points must be int, got 'many'"),
    ({"seeds": [0, "1"]}, "notebooks.seeds must be a list of int, got [0, '1']"),
    ({"force": 1}, "notebooks.force must be bool, got 1"),
    ({"cam_images": True}, "notebooks.cam_images must be int, got True"),
    ({"cam_images": 0}, "notebooks.cam_images must be at least 1, got 0"),
    ({"seeds": []}, "notebooks.seeds must be a non-empty list of seeds"),
    ({"student_seeds": [0, -1]}, "notebooks.student_seeds must be seeds ≥ 0 (empty: seeds), got [0, -1]"),
    ({"classes": "raf"}, "notebooks.classes must be empty or one of rafdb,"),
    ({"eval_dataset": "raf", "eval_root": "d"}, "notebooks.eval_dataset must be empty or one of rafdb,"),
    ({"eval_dataset": "rafdb"}, "notebooks.eval_root: where rafdb's data is must be given with eval_dataset"),
    ({"eval_split": "valid"}, "notebooks.eval_split must be empty or one of train, val, test, got 'valid'"),
    ({"ablation_overrides": ["epochs=0"]}, "notebooks.ablation_overrides with epochs set: epochs must be at least 1, got 0"),
    ({"ablation_overrides": ["epoch=2"]}, "notebooks.ablation_overrides: overrides: unknown key 'epoch'"),
    ({"domains": ["studio", "night"]}, "notebooks.domains must be distinct names of studio, identities, lighting,"),
    ({"domains": ["pose", "pose"]}, "notebooks.domains must be distinct names of"),
    ({"domain_overrides": ["epoch=2"]}, "notebooks.domain_overrides: overrides: unknown key 'epoch'"),
    ({"domain_overrides": ["synthfer.size=64"]}, "notebooks.domain_overrides: synthfer.size changes the data"),
    ({"official_checkpoints": ["raf.pth"]}, "notebooks.official_checkpoints: 'raf.pth' is not DATASET=PATH with"),
    ({"official_checkpoints": ["synthfer=x.pt"]}, "is not DATASET=PATH with DATASET one of rafdb, ferplus,"),
    ({"official_checkpoints": ["rafdb=no/such.pth"]}, "notebooks.official_checkpoints: 'rafdb=no/such.pth': no file at"),
])
def test_a_bad_notebook_parameter_is_one_line_naming_the_file_and_key(tmp_path, notebooks, message):
    profile = profile_with(tmp_path, notebooks)
    with pytest.raises(ConfigError) as e:
        notebook_parameters(profile)
    assert str(e.value).startswith(f"{profile}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_official_checkpoints_are_one_existing_file_a_dataset(tmp_path):
    raf, fer = tmp_path / "raf.pth", tmp_path / "fer.pth"
    raf.write_bytes(b"x")
    fer.write_bytes(b"x")
    assert notebook.official_checkpoints([f"rafdb={raf}", f"ferplus={fer}"]) == {"rafdb": raf, "ferplus": fer}
    with pytest.raises(ConfigError, match="official_checkpoints: two checkpoints for rafdb"):
        NotebookParameters(official_checkpoints=[f"rafdb={raf}", f"rafdb={fer}"])


def test_the_pipeline_checks_the_parameters_before_any_notebook_runs(tmp_path, capsys):
    out = tmp_path / "reports"
    assert pipeline.main(["--profile", profile_with(tmp_path, {"tsne_points": "many"}), "--out", str(out)]) == 2
    assert pipeline.main(["--profile", "smoke", "-p", "tsne", "5", "--out", str(out)]) == 2
    assert pipeline.main(["--profile", "smoke", "-p", "cam_images", "x", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "notebooks.tsne_points must be int" in err[0]
    assert err[1].startswith("pipeline: -p tsne: not a notebook parameter") and "-p cam_images must be int" in err[2]
    assert not out.exists()
    params = pipeline.parameters("smoke", {"run_dir": "elsewhere", "tsne_points": 7})
    assert (params["run_dir"], params["data_root"], params["tsne_points"], params["cam_images"]) == \
        ("elsewhere", "data/synthfer-smoke", 7, 4)


def test_a_parameter_keeps_the_value_its_type_takes():
    assert isinstance(yaml.safe_load("1e-1"), str)  # YAML 1.1: no dot, so -p smooth 1e-1 arrives as a string
    params = pipeline.parameters("smoke", {"smooth": "1e-1", "smooth_sweep": ["1e-1", 1], "alpha": "5e-1"})
    assert (params["smooth"], params["smooth_sweep"], params["alpha"]) == (0.1, [0.1, 1], 0.5)
    assert isinstance(params["smooth"], float) and isinstance(params["smooth_sweep"][0], float)


def test_setup_fills_what_is_none_from_the_profile_and_sends_shortened_runs_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, params = notebook.setup("smoke", seeds=None, tsne_points=9)
    assert os.getcwd() == str(notebook.ROOT)
    assert config == load_profile("smoke") and (params.seeds, params.tsne_points) == ([0, 1], 9)
    config, _ = notebook.setup("smoke", run_dir="runs/x/y", device="cpu", data_root="data/z")
    assert (config.runs_dir, config.name, config.data_root) == ("runs/x", "y", "data/z")
    ablations, params = notebook.setup("smoke", run_dir="runs/x/y", ablation_overrides=None)
    assert params.ablation_overrides == ["epochs=1"] and ablations.epochs == 1
    assert (ablations.runs_dir, ablations.name) == ("runs/x/y", "ablation")  # never 02's run directory
    same, _ = notebook.setup("smoke", run_dir="runs/x/y", ablation_overrides=[])
    assert same == load_profile("smoke", ["runs_dir=runs/x", "name=y"])  # no overrides: 02's runs are reused
    maps, _ = notebook.setup("smoke", run_dir="runs/x/y", ablation_overrides=None,
                             map_overrides=["model.image_size=80", "model.backbone_size=80"])
    assert (maps.runs_dir, maps.name, maps.epochs) == ("runs/x/y", "maps", 1)  # on top of 04's, apart from them
    assert (maps.model.image_size, maps.model.backbone_size) == (80, 80)
    unmapped, _ = notebook.setup("smoke", run_dir="runs/x/y", ablation_overrides=None, map_overrides=None)
    assert unmapped == ablations  # the profile sets none: 04's runs
    with pytest.raises(ConfigError, match="notebook parameter tsne_points must be int"):
        notebook.setup("smoke", tsne_points="9")


def test_sample_draws_without_replacement_in_split_order():
    split = Split("synthfer", "test", notebook.ROOT, ["a", "b"], np.arange(10) % 2, [f"{i}.png" for i in range(10)],
                  None, None)
    picked = notebook.sample(split, 4, seed=3)
    assert len(picked) == 4 and picked.paths == sorted(picked.paths, key=lambda p: int(p[:-4]))
    assert len(set(picked.paths)) == 4 and notebook.sample(split, 4, seed=3).paths == picked.paths
    assert notebook.sample(split, 50).paths == split.paths


def write_run(run_dir, config, summary):
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "version.json").write_text(json.dumps(rundir.version(config)))


SUMMARY = {"variant": "qcs", "seed": 0, "selection": "val", "stopped_epoch": 6, "max_epochs": 8, "stopped_early": True,
           "converged": True, "still_improving_at_limit": False, "chosen_epoch": 4, "train_seconds": 12.0,
           "best": {"epoch": 4, "val_accuracy": 0.5, "test_accuracy": 0.45, "test_macro_f1": 0.4},
           "last": {"epoch": 6, "val_accuracy": 0.48, "test_accuracy": 0.44, "test_macro_f1": 0.41}}


def test_a_run_is_read_back_from_its_directory_with_clear_errors(tmp_path):
    config = load_profile("smoke", [f"runs_dir={tmp_path}", "name=qcs-s0"])
    with pytest.raises(FileNotFoundError, match="has no config.yaml, so it is not a run directory"):
        Run.load(tmp_path / "qcs-s0")
    write_run(config.run_dir, config, SUMMARY)
    run = Run.load(config.run_dir)
    assert (run.dir, run.config, run.summary) == (config.run_dir, config, SUMMARY)
    (config.run_dir / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no summary.json, so the run has not finished"):
        Run.load(config.run_dir)
    (config.run_dir / "summary.json").write_text(json.dumps(SUMMARY))
    (config.run_dir / "config.yaml").write_text("learning_rate: 1\n")
    with pytest.raises(ConfigError, match="config.yaml: does not describe a TrainConfig"):
        Run.load(config.run_dir)


def test_reuse_or_fit_reuses_a_finished_run_and_trains_otherwise(tmp_path, monkeypatch):
    config = load_profile("smoke", [f"runs_dir={tmp_path}", "name=qcs-s0"])
    trained = []
    monkeypatch.setattr(ablation, "fit", lambda c, overwrite, progress: trained.append(c) or "fitted")
    write_run(config.run_dir, config, SUMMARY)
    assert ablation.reuse_or_fit(config).summary == SUMMARY and trained == []
    assert ablation.reuse_or_fit(config, force=True) == "fitted" and trained == [config]
    other = config.replace(epochs=2)  # another config in the same directory is not this run
    assert ablation.reuse_or_fit(other) == "fitted" and trained[-1] == other


# ----------------------------------------------------------------------------------------------------------- tables

def toy_split(name="train", counts=(3, 1), skipped=(), excluded=None):
    labels = np.repeat(np.arange(len(counts)), counts)
    return Split("synthfer", name, notebook.ROOT / "data", ["happy", "sad"], labels,
                 [f"{name}{i}.png" for i in range(len(labels))], None, None, skipped=list(skipped),
                 excluded=excluded or {})


def test_the_data_tables_count_classes_and_what_was_left_out():
    train = toy_split(skipped=[{"path": "x.png", "reason": "truncated"}], excluded={"held out as val": 2})
    test = toy_split("test", (1, 1))
    counts = tables.class_counts([train, None, test])
    assert counts.to_dict() == {"train": {"happy": 3, "sad": 1, "total": 4}, "test": {"happy": 1, "sad": 1, "total": 2}}
    left = tables.left_out([train, None, test])
    assert left.loc["train"].tolist() == [4, 1, "x.png", "2 held out as val"]
    assert left.loc["test"].tolist() == [2, 0, "", "none"]
    assert tables.au_oracle(None) is None
    oracle = tables.au_oracle({"train_accuracy": 0.9, "test_accuracy": 0.8512, "n_train": 4, "n_test": 2,
                               "features": 14})
    assert oracle["AU oracle"].to_dict() == {"train accuracy %": 90.0, "test accuracy %": 85.12, "train images": 4,
                                             "test images": 2, "AU intensities": 14}


def test_the_run_tables_show_the_epochs_and_the_chosen_and_last_model():
    metrics = pd.DataFrame({"epoch": [1, 2], "lr": [1e-3, 9e-4], "loss": [1.23456, 1.1], "loss_base_a": [1.0, 0.9],
                            "val_accuracy": [0.3, 0.4]})
    assert list(tables.epochs(metrics)) == ["epoch", "lr", "loss", "val_accuracy"]  # per-head losses: in the curves
    chosen = tables.chosen_and_last(SUMMARY)
    assert list(chosen.index) == ["chosen on val", "last epoch"]
    assert chosen.loc["chosen on val", "epoch"] == 4 and chosen.loc["last epoch", "test_macro_f1"] == 41.0


METRICS = {"accuracy": 0.75, "mean_class_accuracy": 0.625, "macro_f1": 0.6, "n": 4,
           "confusion": [[2, 0], [1, 1]],
           "per_class": {"happy": {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2},
                         "sad": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}}}


def test_the_evaluation_tables_put_the_papers_number_beside_ours_on_its_datasets():
    assert tables.headline(METRICS, "synthfer").to_dict() == {
        "ours": {"accuracy %": 75.0, "mean class accuracy %": 62.5, "macro-F1 %": 60.0}}
    assert tables.headline(METRICS, "rafdb").loc["accuracy %", "paper (QCS, reported)"] == 92.50
    per_class = tables.per_class(METRICS)
    assert per_class.loc["happy"].tolist() == [66.7, 100.0, 80.0, 2] and per_class["support"].dtype == int
    assert tables.failures([]) is None
    assert tables.failures([{"file": "a.png", "error": "no face found"}]).to_dict("records") == \
        [{"file": "a.png", "error": "no face found"}]


def test_the_ablation_tables_show_each_claim_and_the_formatted_summary():
    plan = ablation.plan([0, 1], [0])
    variants = ablation.variant_table(plan)
    assert list(variants.index) == list(ablation.VARIANTS) and variants.loc["qcs", "seeds"] == 2
    assert variants.loc["qcs_s", "tests"] == ablation.CLAIMS["qcs_s"]
    from tests.test_ablation import fake_runs
    table = ablation.summarize(fake_runs({"baseline": [0.5, 0.6], "qcs": [0.6]}))
    shown = ablation.summary_table(table)
    assert list(shown.columns) == ["best_test_accuracy", "best_val_accuracy", "best_test_mean_class_accuracy",
                                   "best_test_macro_f1", "last_test_accuracy", "n"]
    assert shown.loc["qcs", "best_test_accuracy"] == "61.00" and shown.loc["baseline", "n"] == 2
    assert ablation.bias_check(load_profile("smoke"), fake_runs({"qcs": [0.5]})) is None  # bias_strength 0
    assert ablation.bias_summary(None) is None
    assert notebook.show(None, "why not").data == "why not" and notebook.show(shown, "why not") is shown


# ---------------------------------------------------------------------------------------------------------- findings

def test_data_findings_count_the_splits_the_imbalance_and_the_ceiling():
    train = toy_split(skipped=[{"path": "x.png", "reason": "truncated"}])
    text = findings.data(train, [train, None, toy_split("test", (1, 1))], {"test_accuracy": 0.8}, "runs/r/report.json")
    assert "4 train, 2 test images, 2 classes (happy, sad)" in text
    assert "happy (3) / sad (1), imbalance ratio 3.0" in text and "1 unreadable images skipped" in text
    assert "`runs/r/report.json`" in text and "**80.00 %** test accuracy (chance 50.00 %)" in text
    assert "AU-oracle" not in findings.data(train, [train], None, "r.json")


def test_training_findings_say_how_the_run_ended_and_what_moved():
    metrics = pd.DataFrame({"loss": [2.0, 1.5], "train_accuracy": [0.3, 0.61], "k1": [1.0, 1.1], "k2": [1.0, 0.9],
                            "k3": [1.0, 1.0]})
    run = Run(notebook.ROOT, load_profile("smoke", ["sam=true"]), SUMMARY)
    text = findings.training(run, metrics, chance=1 / 7)
    assert "optimised with SAM (ρ = 0.05) over Adam: the run was stopped by patience at epoch 6 of 8" in text
    assert "chosen on val (epoch 4) has test accuracy **45.00 %**; the last epoch 44.00 %; chance is 14.3 %" in text
    assert "from 2.000 to 1.500; train accuracy 61.0 %" in text
    assert "k = 1 + tanh θ moved from 1.000, 1.000, 1.000 to 1.100, 0.900, 1.000" in text
    unconverged = Run(notebook.ROOT, load_profile("cpu"), {**SUMMARY, "stopped_early": False, "converged": False})
    text = findings.training(unconverged, metrics[["loss", "train_accuracy"]], 0.1)
    assert "optimised with Adam: the run reached its limit of 8 epochs **without converging**" in text
    assert "k = 1" not in text
    rising = Run(notebook.ROOT, load_profile("cpu"), {**SUMMARY, "stopped_early": False, "converged": False,
                                                      "still_improving_at_limit": True, "chosen_epoch": 8})
    assert "reached its limit of 8 epochs **still improving** (it chose epoch 8)" in \
        findings.training(rising, metrics[["loss", "train_accuracy"]], 0.1)


def scores_of(split, metrics, trained_on=None, mapping=None):
    """A ``Scores`` of ``metrics`` on ``split`` (its probabilities are not read by the findings)."""
    mapping = mapping or class_mapping(split.classes, split.classes)
    return Scores(split, np.zeros((len(split), len(split.classes)), np.float32), mapping,
                  {name: 3 for name in mapping.dropped}, metrics, trained_on)


def test_evaluation_findings_name_the_hardest_class_and_the_commonest_confusion():
    test = toy_split("test", (2, 2))
    text = findings.evaluation("runs/x/best.pt", scores_of(test, METRICS))
    assert "on synthfer/test (4 images): accuracy **75.00 %**, mean class accuracy 62.50 %, macro-F1 60.00 %." in text
    assert "Hardest class: sad (recall 50.0 %); most frequent confusion: sad → happy (1 images)." in text
    assert "matched by name" not in text and "cross-dataset" not in text
    perfect = {**METRICS, "confusion": [[2, 0], [0, 2]]}
    assert "no image was misclassified" in findings.evaluation("x.pt", scores_of(test, perfect))
    rafdb = Split("rafdb", "test", notebook.ROOT, ["happy", "sad"], np.array([0, 0, 1, 1]), ["a"] * 4, None, None)
    assert "(the paper reports 92.50 % accuracy)" in findings.evaluation("x.pt", scores_of(rafdb, METRICS))
    # a model of another dataset: no paper number, and the class matching is said
    mapping = class_mapping(["sad", "contempt", "happy"], ["happy", "sad", "fear"])
    text = findings.evaluation("x.pt", scores_of(rafdb, METRICS, "affectnet8", mapping))
    assert "paper reports" not in text and "- A cross-dataset score: the model was trained on affectnet8." in text
    assert ("- Classes matched by name: scored on the 2 the model shares with the split (happy, sad); dropped, as "
            "the model lacks them: fear (3 images); the model's contempt never predicted, as the split lacks them."
            in text)


def test_embedding_and_localisation_findings_compare_qcs_with_the_baseline():
    scores = pd.DataFrame({"variant": ["baseline"] * 3 + ["qcs"] * 3, "seed": [0, 1, 2] * 2, "k": 5,
                           "silhouette": [0.1, 0.12, 0.11, 0.2, 0.2, 0.2], "knn_accuracy": [0.5, 0.52, 0.48, 0.6, 0.6, 0.6]})
    text = findings.embeddings(scores, embedding.comparisons(scores), 100, "val")
    assert ("- Each seed's runs (0, 1, 2; checkpoints chosen on the **val** split) embed 100 test images drawn with "
            "the seed; the 5-NN vote is among 100 train images (the train split, not the test images themselves).") in text
    assert ("- Mean ± std over seeds: baseline silhouette 0.110 ± 0.010, k-NN accuracy 50.0 ± 2.0 %; qcs silhouette "
            "0.200 ± 0.000, k-NN accuracy 60.0 ± 0.0 %.") in text
    assert ("QCS against the baselines, paired over seeds, one family of 2: each interval is an unadjusted 95 % "
            "interval; a difference is declared only where its Holm-adjusted p") in text
    assert "*is QCS's k-NN accuracy higher than baseline's?* qcs is ahead of baseline by 10.00 points" in text
    table = pd.DataFrame({"mean %": [20.0, 25.0, 30.0, 10.0], "std %": [5.0, 4.0, 6.0, 2.0], "images": 90,
                          "zero maps": [3, 0, 10, 0]}, index=["baseline", "baseline_matched", "qcs", "even spread"])
    text = findings.localisation(table, 7)  # the paper's size: a cell is 2.0 % of the image, the masks 10 %
    assert "a 7 × 7 token grid per scale: one cell covers 2.0 % of the image. The action-unit masks cover 10.0 %" in text
    assert "cannot localise" not in text
    assert "over 90 test images (left out: the images where a map was zero everywhere: 3 of baseline's; 10 of qcs's)" \
        in text
    assert ("baseline 20.0 ± 5.0 %, baseline_matched 25.0 ± 4.0 %, qcs 30.0 ± 6.0 %; a map spread evenly would put "
            "10.0 %") in text
    coarse = findings.localisation(table, 2)  # 32 px: a cell is a quarter of the image
    assert "one cell covers 25.0 % of the image" in coarse and "the maps **cannot localise**" in coarse
    assert "**not informative**" in coarse and "`map_overrides`" in coarse
    # QCS +10, +11, +12 points over the baseline; +5 on every seed over the matched one (no spread: undefined)
    shares = {s: table.assign(**{"mean %": [20.0, 25.0 + s, 30.0 + s, 10.0]}) for s in range(3)}
    compared = cam.compare_localisation(shares)
    assert [(c["reference"], c["seeds"], c["family"]) for c in compared] == [("baseline", 3, 1),
                                                                              ("baseline_matched", 3, 1)]
    assert compared[0]["mean_diff"] == pytest.approx(0.11) and np.isnan(compared[1]["ci_low"])
    text = findings.localisation(table, 7, compared)
    assert ("QCS against the baselines over seeds (mean share per seed, in points), one family of 2: each interval is an "
            "unadjusted 95 % interval; a difference is declared only where its Holm-adjusted p (over the 1 "
            "comparisons with an interval) is below 0.05.") in text
    assert "  - qcs is ahead of baseline by 11.00 points" in text
    assert "  - qcs − baseline_matched: +5.00 points on 3 seeds, interval undefined" in text
    assert "needs SynthFER's masks" in findings.localisation(None, 2)
    assert cam.compare_localisation({0: None}) is None


def test_prediction_findings_list_every_face_and_warn_about_synthfer_models():
    face = {"file": "/p/astronaut.png", "face": 0, "label": "happy", "probabilities": {"happy": 0.71, "sad": 0.29}}
    photos = PhotoPredictions([1, 2], [face], [{"file": "b.png", "error": "no face found"}], [None])
    text = findings.predictions("best.pt", "synthfer", photos)
    assert "read 2 image(s) and found 1 face(s); 1 file(s) gave no prediction" in text
    assert "- astronaut.png, face 0: **happy** (0.71)" in text and "not expected to be right on real faces" in text
    assert "not expected" not in findings.predictions("best.pt", "rafdb", photos)


# ------------------------------------------------------------------------------------------------------------ report

def test_the_html_report_leaves_out_set_up_parameters_stderr_and_widgets(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'default_profile'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("profile = 'injected_profile'", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("import hidden_module", metadata={"tags": ["hide-input"]}),
                nbformat.v4.new_code_cell("shown_call()")]
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stderr", text="TqdmWarning: IProgress not found"),
                           nbformat.v4.new_output("stream", name="stdout", text="printed_line"),
                           nbformat.v4.new_output("display_data", data={
                               "application/vnd.jupyter.widget-view+json": {"model_id": "m", "version_major": 2,
                                                                            "version_minor": 0},
                               "text/plain": "progress_bar_text"})]
    nbformat.write(nb, tmp_path / "n.ipynb")
    pipeline.render_html(tmp_path / "n.ipynb", tmp_path / "n.html")
    page = (tmp_path / "n.html").read_text()
    assert "injected_profile" in page and "shown_call" in page and "printed_line" in page
    for left_out in ("default_profile", "hidden_module", "TqdmWarning", "progress_bar_text", "widget-view"):
        assert left_out not in page, left_out
