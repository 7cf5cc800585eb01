import json

import pytest

from qcslib import ablation, frontpage
from qcslib.train import load_profile
from tests.test_paper import write_run

QCS_AHEAD = {"baseline": [0.60, 0.62, 0.61], "baseline_matched": [0.70, 0.71, 0.69], "dcs": [0.72, 0.74, 0.73],
             "qcs": [0.75, 0.77, 0.76]}


def pipeline_output(tmp_path, accuracies=QCS_AHEAD, failed=None, converged=True):
    """reports/cpu/timings.json and runs/cpu as the pipeline leaves them: 04's runs, 02's run under ablation/'s
    absence being 04's qcs-s0, and one of 08's domain runs."""
    config = load_profile("cpu").replace(runs_dir=str(tmp_path / "runs"))
    for variant, values in accuracies.items():
        for seed, accuracy in enumerate(values):
            write_run(ablation.variant_config(config, variant, seed), accuracy, converged=converged)
    write_run(config.replace(runs_dir=str(tmp_path / "runs/cpu/domains/pose"), name="qcs-s0"), 0.5, converged=False)
    for path in (tmp_path / "runs").rglob("summary.json"):  # the commit that trained each run, from its version
        path.write_text(json.dumps({**json.loads(path.read_text()), "version": {"commit": "abc1234"}}))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/timings.json").write_text(json.dumps(
        {"profile": "cpu", "seconds": {"01_data_prep": 25.0, "04_ablations": 1330.4}, "total": 1355.4,
         "failed": failed, "runs_at_start": 0, "machine": {"cpu": "AMD EPYC", "cores": 2, "fp32_matmul_gflops": 92.4}}))
    return tmp_path / "reports", tmp_path / "runs/cpu"


def test_collect_reads_every_run_and_knows_04s_by_their_folder(tmp_path):
    record = frontpage.collect("cpu", *pipeline_output(tmp_path))
    assert record["seconds"]["04_ablations"] == 1330.4 and record["runs_at_start"] == 0 and record["only"]
    assert record["commit"] == "abc1234"  # what trained the runs, not the checkout that publishes them
    variants = {r["run"]: r["variant"] for r in record["runs"]}
    assert len(variants) == 13 and variants["baseline_matched-s2"] == "baseline_matched"
    assert variants["domains/pose/qcs-s0"] is None  # 08's, not a seed of 04's qcs


def test_collect_refuses_a_pipeline_that_stopped_or_never_ran(tmp_path):
    with pytest.raises(frontpage.FrontPageError, match="timings.json: not found; run the pipeline first"):
        frontpage.collect("cpu", tmp_path / "none", tmp_path / "none")
    with pytest.raises(frontpage.FrontPageError, match=r"the pipeline stopped \(04 failed\)"):
        frontpage.collect("cpu", *pipeline_output(tmp_path, failed="04 failed"))


def test_results_block_gives_each_variant_the_comparisons_and_how_runs_ended(tmp_path):
    block = frontpage.results_block(frontpage.collect("cpu", *pipeline_output(tmp_path)))
    assert block.startswith("**The `cpu` profile** (commit abc1234):")
    assert "| `qcs` | 76.00 ± 1.00 | 3 | 3 of 3 |" in block and "| `baseline` | 61.00 ± 1.00 | 3 | 3 of 3 |" in block
    assert "checkpoint chosen on the **val** split" in block
    assert "04's paired comparisons of test accuracy, one family of 5: each interval is an unadjusted 95 %" in block
    assert "*does QCS beat the baseline at equal compute (as many backbone images)?* qcs is ahead of " \
           "baseline_matched by 6.00 points" in block
    assert "*do the negatives help (QCS against DCS)?* qcs − dcs: +3.00 points on 3 seeds, interval undefined" in block
    assert "04's 12 runs: 12 stopped by patience before their epoch limit, 0 reached it" in block
    assert "all of the profile's (08's domain runs and 10's students too) 13 runs" in block and "12 converged." in block
    assert "did not converge" not in block
    unconverged = frontpage.results_block(frontpage.collect("cpu", *pipeline_output(tmp_path / "b", converged=False)))
    assert "**12 of 04's runs did not converge**" in unconverged and "are not conclusions" in unconverged


def test_notebooks_block_puts_profiles_side_by_side_and_says_what_was_on_disk(tmp_path):
    record = frontpage.collect("cpu", *pipeline_output(tmp_path))
    smoke = {**record, "profile": "smoke", "seconds": {"01_data_prep": 12.0}, "total": 12.0, "runs_at_start": 3,
             "only": False}
    (tmp_path / "gallery").mkdir()
    (tmp_path / "gallery" / "04_ablations.html").write_text("<html></html>")
    titles = {"01_data_prep": "Data preparation", "04_ablations": "Ablations: does QCS help, and why?"}
    block = frontpage.notebooks_block([record, smoke], titles, tmp_path / "gallery")
    assert "| notebook | `cpu` | `smoke` |" in block and "| 01 · Data preparation | 25 s | 12 s |" in block
    assert "| [04 · Ablations: does QCS help, and why?](docs/study/04_ablations.html) | 22 min 10 s | not run |" in block
    assert "| **all, in one pipeline** | **22 min 35 s** | **12 s** |" in block
    assert "no runs on disk at the start; some notebooks timed in earlier calls (--only)" in block
    assert "3 finished runs on disk at the start, reused)" in block
    assert "`cpu` on " in block and "(AMD EPYC, 2 cores, fp32 matmul 92 GFLOP/s, commit" in block
    assert frontpage.notebook_titles()["06_gradcam"] == "Where the models look: Grad-CAM and CSA maps"


def test_quickstart_says_how_long_the_two_commands_took(tmp_path):
    record = frontpage.collect("cpu", *pipeline_output(tmp_path))
    test = {"date": "2026-12-07", "machine": "AMD EPYC, 2 cores", "commit": "abc1234",
            "seconds": {"pytest": 400.0, "nbval": 150.5}, "total": 550.5}
    text = frontpage.quickstart_block([record], test)
    assert text.startswith("`make test` took **9 min 10 s** after its set-up (pytest 6 min 40 s, nbval 2 min 30 s; "
                           "2026-12-07, AMD EPYC, 2 cores, commit abc1234); `make reproduce` ran the cpu profile's "
                           "pipeline in **22 min 35 s** (")
    assert "no runs on disk at the start" in text
    assert "its time is not recorded yet" in frontpage.quickstart_block([record], None)


def test_fill_rewrites_only_the_generated_blocks_and_refuses_a_readme_without_them():
    text = "intro\n<!-- generated: times -->\nold\n<!-- end generated: times -->\nrest\n"
    assert frontpage.fill(text, {"times": "new\ntable"}) == (
        "intro\n<!-- generated: times -->\nnew\ntable\n<!-- end generated: times -->\nrest\n")
    empty = "<!-- generated: times -->\n<!-- end generated: times -->"
    assert frontpage.fill(empty, {"times": "t"}) == "<!-- generated: times -->\nt\n<!-- end generated: times -->"
    with pytest.raises(frontpage.FrontPageError, match="no '<!-- generated: results -->'"):
        frontpage.fill(text, {"results": "x"})


def test_the_readme_holds_what_the_published_records_give():
    records, test = frontpage.published()
    assert records, "docs/results/ holds no published record: python -m qcslib.frontpage --profile cpu"
    readme = (frontpage.ROOT / "README.md").read_text(encoding="utf-8")
    assert frontpage.fill(readme, frontpage.render(records, test)) == readme, \
        "README.md's generated blocks differ from docs/results/: python -m qcslib.frontpage"


def test_the_results_are_the_cpu_and_study_profiles_never_smoke_beside_them(tmp_path):
    cpu = frontpage.collect("cpu", *pipeline_output(tmp_path))
    smoke, study = {**cpu, "profile": "smoke"}, {**cpu, "profile": "study"}
    results = frontpage.render([cpu, smoke, study], None, titles={})["results"]
    assert results.index("**The `cpu` profile**") < results.index("**The `study` profile**")
    assert "`smoke` profile" not in results
    assert frontpage.render([smoke], None, titles={})["results"].startswith("**The `smoke` profile**")  # all there is
