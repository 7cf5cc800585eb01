"""The notebooks and the papermill pipeline: clean committed notebooks, a full smoke run, a failing notebook."""
import json
import os
import tempfile

import nbformat
import papermill
import pytest
from latex2mathml.converter import convert as latex_to_mathml

from qcslib import pipeline, progress
from qcslib.train import ConfigError, rundir
from qcslib.train.rundir import code_fingerprint

REQUIRED = {"profile", "dataset", "data_root", "run_dir", "seeds", "device"}


def test_there_are_ten_numbered_notebooks():
    assert [nb.name for nb in pipeline.notebooks()] == [
        "01_data_prep.ipynb", "02_train_qcs.ipynb", "03_evaluate.ipynb", "04_ablations.ipynb", "05_tsne.ipynb",
        "06_gradcam.ipynb", "07_predict.ipynb", "08_paper_tables.ipynb", "09_video.ipynb",
        "10_distillation.ipynb"]


@pytest.mark.parametrize("path", pipeline.notebooks(), ids=lambda p: p.stem)
def test_committed_notebooks_are_clean_and_follow_the_conventions(path):
    assert all("id" in c for c in json.loads(path.read_text())["cells"]), "a cell without an id (nbformat 4.5)"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "stored with outputs"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "What this shows" in nb.cells[0].source
    assert code[0].metadata.get("tags") == ["parameters"]
    assert REQUIRED <= set(papermill.inspect_notebook(str(path)))  # papermill can parse every parameter
    assert nb.cells[-2].cell_type == "markdown" and nb.cells[-2].source == "## What we found"
    assert "display(Markdown(" in nb.cells[-1].source  # computed from the results, not typed in
    assert all(len(c.source.splitlines()) <= 25 for c in code), "logic belongs in qcslib"


def test_the_pipeline_passes_each_notebook_the_parameters_it_declares_and_renders_it(tmp_path):
    """The notebooks themselves run once per test run, under nbval (``make test``); here each is checked against what
    the pipeline would inject, and rendered as the pipeline renders an executed one."""
    params = pipeline.parameters("smoke", {"run_dir": str(tmp_path / "runs")})
    for path in pipeline.notebooks():
        declared = set(papermill.inspect_notebook(str(path)))
        assert declared <= set(params), f"{path.name} declares parameters the pipeline never passes"
        pipeline.render_html(path, tmp_path / f"{path.stem}.html")
        page = (tmp_path / f"{path.stem}.html").read_text()
        has_math = any("$" in c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        assert "What we found" in page and ("<math" in page) == has_math and "mathjax" not in page.lower(), path.name


def test_a_report_leaves_out_widgets_and_loads_nothing_from_the_network(tmp_path):
    nb = nbformat.v4.new_notebook()
    note, widget = nbformat.v4.new_markdown_cell("Pick another image"), nbformat.v4.new_code_cell("explorer.widget()")
    for cell in (note, widget):
        cell.metadata["tags"] = ["interactive"]
    widget.outputs = [nbformat.v4.new_output("display_data", {pipeline.WIDGET: {"model_id": "abc", "version_major": 2}})]
    shown = nbformat.v4.new_code_cell("explorer.view(sample)")
    shown.outputs = [nbformat.v4.new_output("display_data", {pipeline.WIDGET: {"model_id": "def"}, "text/plain": "bar"})]
    nb.cells = [nbformat.v4.new_markdown_cell("## What we found"), note, widget, shown]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"abc": {"model_name": "VBoxModel", "state": {}}}, "version_major": 2, "version_minor": 0}}
    nbformat.write(nb, tmp_path / "w.ipynb")
    pipeline.render_html(tmp_path / "w.ipynb", tmp_path / "w.html")
    page = (tmp_path / "w.html").read_text()
    assert "What we found" in page and '<span class="n">sample</span>' in page  # the untagged cell stays
    assert [s for s in ("Pick another", "explorer.widget", "widget-state", "unpkg", "embed-amd") if s in page] == []


def write_notebook(path, sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_a_failing_notebook_stops_the_pipeline_and_keeps_what_ran(tmp_path, monkeypatch, capsys):
    books = tmp_path / "notebooks"
    books.mkdir()
    write_notebook(books / "01_fine.ipynb", ["profile = 'x'", "print('fine')"])
    write_notebook(books / "02_broken.ipynb", ["profile = 'x'", "print('before')", "raise ValueError('no data here')"])
    write_notebook(books / "03_never.ipynb", ["profile = 'x'", "print('never')"])
    monkeypatch.setattr(pipeline, "NOTEBOOK_DIR", books)
    out = tmp_path / "reports"
    status = pipeline.run("smoke", {"run_dir": str(tmp_path / "runs")}, out_dir=out)
    assert status == 1
    err = capsys.readouterr().err
    assert "pipeline stopped: 02_broken.ipynb failed in cell [4]: ValueError: no data here" in err
    assert (out / "01_fine.html").exists() and (out / "02_broken.ipynb").exists() and (out / "02_broken.html").exists()
    assert not (out / "03_never.ipynb").exists()
    partial = nbformat.read(out / "02_broken.ipynb", as_version=4)
    assert any("before" in o.get("text", "") for c in partial.cells for o in c.get("outputs", []))
    assert "Stopped: 02_broken.ipynb failed" in (out / "index.html").read_text()
    assert pipeline._kernel_manager(str(tmp_path))().transport == "ipc"  # the kernels talk over sockets in a folder


def test_the_pipeline_leaves_interactive_cells_unexecuted(tmp_path, monkeypatch):
    books = tmp_path / "notebooks"
    books.mkdir()
    write_notebook(books / "01_widget.ipynb", ["profile = 'x'", "print('shown')", "raise RuntimeError('a widget')"])
    nb = nbformat.read(books / "01_widget.ipynb", as_version=4)
    nb.cells[2].metadata["tags"] = ["interactive"]
    nbformat.write(nb, books / "01_widget.ipynb")
    monkeypatch.setattr(pipeline, "NOTEBOOK_DIR", books)
    assert pipeline.run("smoke", {"run_dir": str(tmp_path / "runs")}, out_dir=tmp_path / "out") == 0
    executed = nbformat.read(tmp_path / "out" / "01_widget.ipynb", as_version=4)
    assert "shown" in str(executed.cells) and "a widget" not in str(executed.cells)


def test_progress_describes_the_run_and_estimates_the_time_left(tmp_path, monkeypatch, capsys):
    state = {"run_index": 2, "runs": 5, "run": "qcs-s1", "epoch": 3, "max_epochs": 10, "score": 0.612,
             "selection": "val", "epoch_seconds": 12.0, "epoch_units": 4.0, "later_units": 80.0}
    # 7 epochs of 12 s left in this run, then 80 units at 3 s each
    assert progress.seconds_left(state) == 7 * 12 + 80 * 3
    assert progress.describe(state) == "run 2/5 qcs-s1 · epoch 3/10 · val accuracy 61.2 % · up to ~5 min left"
    assert progress.describe({"run": "qcs-s0"}) == "run qcs-s0" and progress.seconds_left({}) is None
    path = tmp_path / "progress.json"
    report = {k: v for k, v in state.items() if k not in ("run_index", "runs", "later_units")}
    progress.report(**report)  # QCS_PROGRESS unset: nothing is written
    assert not path.exists()
    monkeypatch.setenv(progress.ENV, str(path))
    progress.context(run_index=2, runs=5, later_units=80.0)
    try:
        progress.report(**report)
    finally:
        progress.context(run_index=None, runs=None, later_units=None)
    assert {k: v for k, v in progress.read(path).items() if k != "time"} == state
    printer = pipeline.ProgressPrinter(path, "04_ablations")
    printer.start()
    import time
    time.sleep(1.5)
    printer.stop()
    assert "04_ablations · run 2/5 qcs-s1 · epoch 3/10" in capsys.readouterr().out


def test_the_gallery_copies_the_reports_with_smaller_figures_and_the_css_once(tmp_path):
    import base64
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (500, 300), (200, 30, 30)).save(buffer, "PNG")
    figure = base64.b64encode(buffer.getvalue()).decode()
    reports, runs, gallery = tmp_path / "reports", tmp_path / "runs", tmp_path / "gallery"
    reports.mkdir()
    css = "<style type='text/css'>body{margin:0}</style>\n<style>.x{color:red}</style>\n"
    table = "<style>#T_1 td{color:blue}</style>"  # a styled table's own block, in 04 only
    for name, own in (("04_ablations", table), ("05_tsne", "")):
        (reports / f"{name}.html").write_text(f'<html><head>{css}</head><p>{name}</p>{own}<img '
                                              f'src="data:image/png;base64,{figure}"></html>')
    (reports / "index.html").write_text("<html><head><style>td{border:1px}</style></head></html>")
    (reports / "04_ablations.ipynb").write_text("{}")
    (reports / "timings.json").write_text('{"total": 5.0}')
    written = pipeline.write_gallery(reports, gallery, runs, scale=0.5)
    assert sorted(p.name for p in gallery.iterdir()) == ["04_ablations.html", "05_tsne.html", "index.html",
                                                          "style.css", "timings.json"]
    assert written == sum(len(p.read_text()) for p in gallery.iterdir())  # what it says it wrote is the files
    assert (gallery / "style.css").read_text() == "body{margin:0}\n.x{color:red}"
    page = (gallery / "04_ablations.html").read_text()
    assert page.count("<style") == 1 and table in page  # the table's own block stays where it was
    assert page.count('<link rel="stylesheet" href="style.css">') == 1 and page.index("style.css") < page.index(table)
    other = (gallery / "05_tsne.html").read_text()
    assert "<style" not in other and other.count('<link rel="stylesheet" href="style.css">') == 1
    assert "<style>td{border:1px}</style>" in (gallery / "index.html").read_text()  # its own, kept inline
    small = Image.open(io.BytesIO(base64.b64decode(page.split("base64,")[1].split('"')[0])))
    assert small.size == (250, 150) and "<p>04_ablations</p>" in page
    run = runs / "qcs-s0"
    run.mkdir(parents=True)
    summary = {"variant": "qcs", "seed": 0, "selection": "val", "stopped_epoch": 7, "max_epochs": 12,
               "stopped_early": True, "converged": True, "train_seconds": 9.0, "last": {"test_accuracy": 0.73},
               "best": {"epoch": 5, "val_accuracy": 0.7, "test_accuracy": 0.75, "test_mean_class_accuracy": 0.74},
               "version": {"code": code_fingerprint(), "commit": "abc1234"}}
    (run / "summary.json").write_text(json.dumps(summary))
    pipeline.write_gallery(reports, gallery, runs)  # this code's run: written
    (run / "summary.json").write_text(json.dumps({**summary, "version": {"code": "0" * 12, "commit": "0ld0000"}}))
    with pytest.raises(ConfigError, match=r"1 run\(s\) under .* were not trained by this code \(first: qcs-s0, "
                                          r"other code \(0ld0000\)\)"):
        pipeline.write_gallery(reports, gallery, runs)


def test_rendered_math_is_mathml_and_needs_no_mathjax(tmp_path, capsys):
    assert pipeline.math_to_mathml("costs \\$5, or $k = 1 + \\tanh\\theta$") == (
        "costs \\$5, or " + latex_to_mathml("k = 1 + \\tanh\\theta", display="inline"))
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in pipeline.math_to_mathml("$$x^2$$")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("The gate $A_a = \\varphi(S)$.")])
    nbformat.write(nb, tmp_path / "m.ipynb")
    pipeline.render_html(tmp_path / "m.ipynb", tmp_path / "m.html")
    page = (tmp_path / "m.html").read_text()
    assert "<math" in page and "mathjax" not in page.lower() and "$A_a" not in page
    with pytest.raises(ValueError, match=r"cannot render the math \$x\^\$"):
        pipeline.math_to_mathml("a broken $x^$ power")
    with pytest.raises(ValueError, match=r"latex2mathml does not know \\arg"):
        pipeline.math_to_mathml("$\\arg\\max_c p$")
    unreadable = []
    assert pipeline.math_to_mathml("keep $\\arg\\max_c p$ here", unreadable) == "keep `$\\arg\\max_c p$` here"
    assert unreadable == ["cannot render the math $\\arg\\max_c p$: latex2mathml does not know \\arg"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("bad $x^$")]), tmp_path / "b.ipynb")
    pipeline.render_html(tmp_path / "b.ipynb", tmp_path / "b.html")  # the report is written all the same
    assert "$x^$" in (tmp_path / "b.html").read_text()
    assert capsys.readouterr().err == ("b.ipynb: cannot render the math $x^$: MissingSuperScriptOrSubscriptError: ; "
                                       "left as LaTeX in the HTML\n")


def test_the_index_lists_runs_of_both_summary_formats(tmp_path):
    new = {"variant": "qcs", "seed": 0, "selection": "val", "stopped_epoch": 7, "max_epochs": 12, "stopped_early": True,
           "converged": True, "best": {"epoch": 5, "val_accuracy": 0.7, "test_accuracy": 0.75,
                                       "test_mean_class_accuracy": 0.74}, "last": {"test_accuracy": 0.73},
           "train_seconds": 9.0}
    old = {"variant": "baseline", "seed": 1, "epochs": 2, "best": {"epoch": 2, "test_accuracy": 0.2,
                                                                   "test_mean_class_accuracy": 0.19},
           "last": {"test_accuracy": 0.2}, "train_seconds": 3.0}  # written before validation selection existed
    for name, summary in (("qcs-s0", new), ("baseline-s1", old)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    new["version"] = {"code": rundir.code_fingerprint(), "commit": "abc1234"}
    (tmp_path / "qcs-s0" / "summary.json").write_text(json.dumps(new))
    rising = {**new, "stopped_epoch": 12, "stopped_early": False, "still_improving_at_limit": True, "converged": False,
              "version": {"code": "0123456789ab", "commit": "def5678"}}
    (tmp_path / "dcs-s0").mkdir()
    (tmp_path / "dcs-s0" / "summary.json").write_text(json.dumps(rising))
    rows = pipeline.run_summaries(tmp_path).set_index("run")
    assert rows.loc["qcs-s0", ["epochs", "ended by", "converged", "chosen on"]].tolist() == ["7/12", "patience", "yes", "val"]
    assert rows.loc["dcs-s0", ["epochs", "ended by", "converged"]].tolist() == ["12/12", "limit, still improving", "NO"]
    assert rows["trained by"].to_dict() == {"baseline-s1": "unknown (no version recorded)", "dcs-s0":
                                            "other code (def5678)", "qcs-s0": "this code"}
    assert rows.loc["baseline-s1", ["epochs", "converged", "chosen on"]].tolist() == ["2", "unknown", "test (older run)"]
    assert rows.loc["qcs-s0", "test acc %"] == 75.0 and rows.loc["baseline-s1", "test acc %"] == 20.0


@pytest.mark.parametrize("case", ["not UTF-8", "-p not YAML", "--out under a file"])
def test_a_bad_profile_parameter_or_out_is_one_line_before_anything_runs(tmp_path, capsys, case):
    (tmp_path / "notes.txt").write_text("keep")
    profile = tmp_path / "latin1.yaml"
    profile.write_bytes("base: smoke\n# café\n".encode("latin-1"))
    out = tmp_path / ("notes.txt" if case == "--out under a file" else "reports") / "smoke"
    argv = {"not UTF-8": ["--profile", str(profile)], "-p not YAML": ["--profile", "smoke", "-p", "seeds", "[0, 1"],
            "--out under a file": ["--profile", "smoke"]}[case]
    assert pipeline.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    expected = {"not UTF-8": f"pipeline: {profile}: not UTF-8 text (byte 17)",
                "-p not YAML": "pipeline: -p seeds '[0, 1': not a YAML value (expected ',' or ']'",
                "--out under a file": f"pipeline: --out {out}: {tmp_path / 'notes.txt'} is a file, not a folder"}[case]
    assert err.startswith(expected) and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.yaml", "notes.txt"]


def fake_papermill(monkeypatch, interrupt_at: str | None = None) -> list[str]:
    """papermill.execute_notebook replaced by a stand-in that copies the notebook (no kernel), or raises
    KeyboardInterrupt for ``interrupt_at``; → the names it ran."""
    ran = []

    def execute(source, executed, **kwargs):
        if interrupt_at and interrupt_at in source:
            raise KeyboardInterrupt
        ran.append(source)
        nbformat.write(nbformat.read(source, as_version=4), executed)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    return ran


@pytest.fixture
def three_notebooks(tmp_path, monkeypatch):
    books = tmp_path / "notebooks"
    books.mkdir()
    for name in ("01_one", "02_two", "03_three"):
        write_notebook(books / f"{name}.ipynb", ["profile = 'x'", "print(1)"])
    monkeypatch.setattr(pipeline, "NOTEBOOK_DIR", books)
    temp = tmp_path / "temp"  # where the kernels' temporary folder goes
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def test_ctrl_c_writes_the_timings_of_what_ran_and_removes_the_temporary_folder(tmp_path, monkeypatch, capsys,
                                                                               three_notebooks):
    fake_papermill(monkeypatch, interrupt_at="02_two")
    out = tmp_path / "reports"
    try:
        status = pipeline.main(["--profile", "smoke", "-p", "run_dir", str(tmp_path / "runs"), "--out", str(out)])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C went through pipeline.main as a traceback")
    assert status == 130
    assert capsys.readouterr().err.endswith("pipeline: interrupted (Ctrl-C)\n")
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings["seconds"]) == ["01_one"] and timings["failed"] == "interrupted (Ctrl-C) during 02_two.ipynb"
    assert list(three_notebooks.iterdir()) == [] and progress.ENV not in os.environ


def test_a_dead_kernel_stops_the_pipeline_with_its_timings(tmp_path, monkeypatch, capsys, three_notebooks):
    books = pipeline.NOTEBOOK_DIR
    write_notebook(books / "02_two.ipynb", ["profile = 'x'", "import os\nos._exit(1)"])
    out = tmp_path / "reports"
    assert pipeline.run("smoke", {"run_dir": str(tmp_path / "runs")}, out_dir=out) == 1
    assert "pipeline stopped: 02_two.ipynb failed: its kernel died" in capsys.readouterr().err
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings["seconds"]) == ["01_one", "02_two"] and "its kernel died" in timings["failed"]
    assert not (out / "03_three.ipynb").exists() and list(three_notebooks.iterdir()) == []


def test_only_adds_its_timings_to_those_of_earlier_runs(tmp_path, monkeypatch, capsys, three_notebooks):
    ran = fake_papermill(monkeypatch)
    out, runs = tmp_path / "reports", {"run_dir": str(tmp_path / "runs")}
    assert pipeline.run("smoke", runs, out_dir=out) == 0
    timings = json.loads((out / "timings.json").read_text())
    (out / "timings.json").write_text(json.dumps({**timings, "seconds": {**timings["seconds"], "01_one": 123.4}}))
    assert pipeline.run("smoke", runs, only=["02"], out_dir=out) == 0
    assert len(ran) == 4
    merged = json.loads((out / "timings.json").read_text())
    assert list(merged["seconds"]) == ["01_one", "02_two", "03_three"] and merged["seconds"]["01_one"] == 123.4
    assert merged["failed"] is None and merged["runs_at_start"] == 0
    assert merged["machine"]["cores"] >= 1 and merged["machine"]["fp32_matmul_gflops"] > 0
    index = (out / "index.html").read_text()
    assert f"by commit <code>{rundir.git_commit()}</code>, on " in index and "fp32 matmul" in index
    assert "<a href='timings.json'>timings.json</a>" in index and "were on disk at the start" not in index
    pipeline.write_index("smoke", runs, out, merged["seconds"], None, merged["machine"], runs_at_start=47)
    assert ("47 finished runs were on disk at the start and were reused" in (out / "index.html").read_text())
    with pytest.raises(pipeline.ConfigError, match=r"timings.json: holds the timings of profile 'smoke', not 'cpu'"):
        pipeline.run("cpu", runs, only=["02"], out_dir=out)
    assert len(ran) == 4 and json.loads((out / "timings.json").read_text()) == merged
