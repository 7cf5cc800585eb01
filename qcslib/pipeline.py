"""``python -m qcslib.pipeline --profile NAME``: run the numbered notebooks in order into HTML reports.

Each ``notebooks/NN_*.ipynb`` runs with papermill in a fresh kernel, from the project root, with the
profile's parameters (``parameters``: checked, with any ``-p key value`` given, before the first notebook
starts); the executed copy and its HTML (``render_html``) go to ``reports/<profile>/``. A failing
notebook (or one whose kernel dies) stops the pipeline, naming the notebook, the cell and the error; the reports
rendered before it stay, and the partly executed notebook is saved (and rendered) too. ``reports/<profile>/index.html``
links the reports and tabulates every run's ``summary.json`` with the environment it ran in. ``timings.json``
holds each notebook's seconds, written also when a notebook fails or Ctrl-C stops the pipeline; ``--only`` adds its
notebooks' to those already there. Data and finished runs are reused on reruns (SynthFER is cached; the notebooks
skip finished runs), unless other code, libraries or data trained them (``rundir.version_change``): those are
trained again, or with ``--reuse-stale`` reused and named in the reports.

Exit codes: 0 every notebook ran; 1 a notebook failed; 2 a bad profile, parameter or ``--out`` (nothing ran);
130 interrupted (Ctrl-C).

While a notebook trains, the terminal shows which run of how many, its epoch and val accuracy, and an
estimate of the time left (``qcslib.progress``: the kernel writes to a file that a thread here reads).
Kernels talk to papermill over IPC sockets in a private temporary directory, not over TCP.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import html
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml
from jupyter_client.manager import AsyncKernelManager
from latex2mathml.converter import convert as latex_to_mathml

from . import progress
from .notebook import ROOT, RUN_PARAMETERS, notebook_parameters
from .train.config import ConfigError, load_profile
from .train.rundir import code_fingerprint, git_commit
from .train.runtime import describe_machine, machine

NOTEBOOK_DIR = ROOT / "notebooks"
PACKAGES = ("torch", "torchvision", "timm", "grad-cam", "scikit-learn", "papermill", "nbconvert", "numpy", "pandas",
            "matplotlib", "seaborn")
WIDGET = "application/vnd.jupyter.widget-view+json"


def notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def parameters(profile: str, extra: dict | None = None) -> dict:
    """What the notebooks get: profile, dataset, data_root, run_dir and device from the profile's config, every
    ``NotebookParameters`` field from its ``notebooks:`` mapping, then ``extra`` (``-p``). All are checked here,
    before any notebook runs: a bad key or value is a one-line ConfigError."""
    config = load_profile(profile)
    run = {"profile": profile, "dataset": config.dataset, "data_root": config.data_root,
           "run_dir": str(config.run_dir), "device": config.device}
    extra = dict(extra or {})
    if "profile" in extra:
        raise ConfigError("-p profile: choose the profile with --profile")
    given = {k: v for k, v in extra.items() if k not in RUN_PARAMETERS}
    params = notebook_parameters(profile).override(given, "-p ")
    return {**run, **{k: v for k, v in extra.items() if k in RUN_PARAMETERS}, **dataclasses.asdict(params)}


MATH = re.compile(r"(?<!\\)\$\$(.+?)\$\$|(?<![\\$])\$(?!\$)(.+?)(?<!\\)\$", re.S)  # $$display$$ or $inline$
MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


def math_to_mathml(markdown: str, unreadable: list[str] | None = None) -> str:
    """``markdown`` with each ``$…$`` and ``$$…$$`` (not ``\\$``) replaced by its MathML (latex2mathml), which
    browsers draw without a script or the network. LaTeX that latex2mathml cannot read, or a command it does not
    know, is a ValueError naming it; with an ``unreadable`` list, it is left as LaTeX in a code span instead and
    its message appended there."""
    def convert(match: re.Match) -> str:
        tex, display = (match.group(1), "block") if match.group(1) is not None else (match.group(2), "inline")
        try:
            mathml = latex_to_mathml(tex, display=display)
            error = None
        except Exception as e:  # latex2mathml raises its own exception types, and IndexError on some input
            error = f"cannot render the math ${tex}$: {type(e).__name__}: {e}"
        if error is None and (unknown := re.findall(r"\\[A-Za-z]+", mathml)):  # an unknown command comes out as text
            error = f"cannot render the math ${tex}$: latex2mathml does not know {', '.join(unknown)}"
        if error is None:
            return mathml
        if unreadable is None:
            raise ValueError(error)
        unreadable.append(error)
        return f"`{match.group(0)}`"
    return MATH.sub(convert, markdown)


def render_html(notebook: Path, out: Path) -> None:
    """nbconvert's HTML of an executed notebook, for a reader: the inputs of ``hide-input`` cells and the
    ``parameters`` cell (papermill's injected cell below it shows the values that ran) are left out, and so are
    ``interactive`` cells (widgets, for JupyterLab), stderr streams and widget outputs (progress bars, which have
    nothing to show once run), with the widgets' saved state, so that the page loads no widget manager. The math
    of the markdown cells is MathML (``math_to_mathml``), so the page loads no MathJax and needs no network; a
    formula it cannot render stays as LaTeX, and a line on stderr names it. The executed notebook beside the HTML
    keeps everything."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(notebook, as_version=4)
    nb.metadata.pop("widgets", None)  # their saved state: nbconvert would load the widget manager from a CDN
    unreadable = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr" and WIDGET not in o.get("data", {})]
        elif cell.cell_type == "markdown":
            cell.source = math_to_mathml(cell.source, unreadable)
    for error in unreadable:  # the report is still written, that formula as LaTeX
        print(f"{notebook.name}: {error}; left as LaTeX in the HTML", file=sys.stderr)
    exporter = HTMLExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"hide-input"},
                                                         remove_cell_tags={"parameters", "interactive"}), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    out.write_text(MATHJAX.sub("", body), encoding="utf-8")


class ProgressPrinter(threading.Thread):
    """Prints ``progress.describe`` of the file the kernel reports to: a run's first report at once, the
    others at most every ``every`` seconds (runs trained in parallel take turns in that file)."""

    def __init__(self, path: Path, prefix: str, every: float = 10.0):
        super().__init__(daemon=True)
        self.path, self.prefix, self.every, self.done = path, prefix, every, threading.Event()

    def run(self) -> None:
        last, runs, printed = None, set(), 0.0
        while not self.done.wait(1.0):
            state = progress.read(self.path)
            if not state or state.get("time") == last:
                continue
            if state.get("run") not in runs or time.monotonic() - printed >= self.every:
                print(f"      {self.prefix} · {progress.describe(state)}", flush=True)
                last, printed = state.get("time"), time.monotonic()
                runs.add(state.get("run"))

    def stop(self) -> None:
        self.done.set()
        self.join()


def _kernel_manager(socket_dir: str) -> type:
    """A kernel manager class whose kernels talk over IPC sockets in ``socket_dir`` (TCP on localhost would
    work too, but each kernel then warns that its traffic is unencrypted)."""
    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", ip=os.path.join(socket_dir, "kernel"), **kwargs)
    return IPCKernelManager


def execute(nb: Path, executed: Path, params: dict, sockets: str) -> str | None:
    """Run notebook ``nb`` with papermill into ``executed``, given the ``params`` it declares, its kernel talking
    over IPC sockets in ``sockets``, its progress printed → None, or what failed: a cell (its error's first line),
    or the kernel, which died. Cells tagged ``interactive`` (widgets, for JupyterLab) are left out: a report has
    no kernel to drive them, and a widget's comm messages once left a batch run waiting for good (nbval still runs
    them under ``make test``)."""
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    declared = papermill.inspect_notebook(str(nb))
    report = Path(sockets) / "progress.json"
    report.unlink(missing_ok=True)
    printer = ProgressPrinter(report, nb.stem)
    printer.start()
    try:
        notebook = nbformat.read(nb, as_version=4)
        notebook.cells = [c for c in notebook.cells if "interactive" not in c.metadata.get("tags", [])]
        batch = Path(sockets) / nb.name  # the notebook as it runs here, beside the kernel's sockets
        nbformat.write(notebook, batch)
        papermill.execute_notebook(str(batch), str(executed),
                                   parameters={k: v for k, v in params.items() if k in declared},
                                   kernel_name="python3", cwd=str(ROOT), progress_bar=False,
                                   kernel_manager_class=_kernel_manager(sockets))
    except PapermillExecutionError as e:
        return f"{nb.name} failed in cell [{e.exec_count}]: {e.ename}: {e.evalue.splitlines()[0] if e.evalue else ''}"
    except DeadKernelError as e:
        return f"{nb.name} failed: its kernel died ({e})"
    finally:
        printer.stop()
    return None


def earlier_timings(path: Path, profile: str) -> dict:
    """The ``seconds`` of the ``timings.json`` at ``path`` ({} if there is none), which an ``--only`` run adds to;
    a one-line ConfigError if it is not one the pipeline wrote, or another profile's."""
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: not a timings.json the pipeline wrote ({type(e).__name__}); move it away") from None
    if not (isinstance(stored, dict) and isinstance(stored.get("seconds"), dict)):
        raise ConfigError(f"{path}: not a timings.json the pipeline wrote (no \"seconds\" object); move it away")
    if stored.get("profile") != profile:
        raise ConfigError(f"{path}: holds the timings of profile {stored.get('profile')!r}, not {profile!r}; "
                          f"choose another --out")
    return stored["seconds"]


def run(profile: str, extra: dict | None = None, only: list[str] | None = None, out_dir: Path | None = None) -> int:
    """Run the pipeline → exit status (0: every notebook ran; 1: one failed or its kernel died, and the pipeline
    stopped there). ``timings.json`` gets the seconds of the notebooks that ran (with ``only``: added to the
    entries already there) and ``failed``, what stopped the pipeline (None: nothing), also when Ctrl-C stops it
    (the KeyboardInterrupt is raised again once it is written); ``total`` is this call's seconds,
    ``runs_at_start`` the finished runs (summary.json) already under the run directory when it began, and
    ``machine`` the CPU, its cores and its measured fp32 matmul rate (``runtime.matmul_gflops``), since the same
    pipeline takes about twice as long on a machine half as fast. The kernels'
    temporary folder is removed in every case. A bad ``out_dir`` is a ConfigError before any notebook runs."""
    params = parameters(profile, extra)
    out_dir = Path(out_dir or ROOT / "reports" / profile)
    folder = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    if not folder.is_dir():
        raise ConfigError(f"--out {out_dir}: {folder} is a file, not a folder; choose a folder for the reports")
    chosen = [nb for nb in notebooks() if not only or nb.name[:2] in only or nb.stem in only]
    if not chosen:
        print(f"no notebooks to run in {NOTEBOOK_DIR}" + (f" matching {only}" if only else ""), file=sys.stderr)
        return 1
    earlier = earlier_timings(out_dir / "timings.json", profile) if only else {}
    runs_at_start = sum(1 for _ in (ROOT / params["run_dir"]).rglob("summary.json"))
    measured_on = machine()  # minutes differ about 2x between machines
    out_dir.mkdir(parents=True, exist_ok=True)
    timings, failure = {}, None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qcs-kernels-") as sockets:
        os.environ[progress.ENV] = str(Path(sockets) / "progress.json")  # the kernels inherit it (see execute)
        try:
            for i, nb in enumerate(chosen, 1):
                print(f"[{i}/{len(chosen)}] {nb.name} ...", flush=True)
                t = time.perf_counter()
                executed = out_dir / nb.name
                failure = execute(nb, executed, params, sockets)
                timings[nb.stem] = round(time.perf_counter() - t, 1)
                if executed.exists():
                    render_html(executed, out_dir / f"{nb.stem}.html")
                status = "FAILED" if failure else "done"
                print(f"[{i}/{len(chosen)}] {nb.name} {status} in {timings[nb.stem]:.1f} s", flush=True)
                if failure:
                    break
        except BaseException as e:
            stopped = "interrupted (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
            failure = failure or f"{stopped} during {nb.name}".replace("\n", " ")
            raise
        finally:
            del os.environ[progress.ENV]
            total = round(time.perf_counter() - start, 1)
            (out_dir / "timings.json").write_text(json.dumps({"profile": profile, "seconds": {**earlier, **timings},
                                                              "total": total, "failed": failure,
                                                              "runs_at_start": runs_at_start, "machine": measured_on},
                                                             indent=1))
    write_index(profile, params, out_dir, timings, failure, measured_on, runs_at_start)
    print(f"pipeline {'stopped' if failure else 'finished'} in {total:.1f} s: {out_dir / 'index.html'}")
    if failure:
        print(f"pipeline stopped: {failure}", file=sys.stderr)
        return 1
    return 0


def trained_by(version: dict | None) -> str:
    """"this code" when a run's recorded training code is this checkout's, else the commit that trained it."""
    if not version:
        return "unknown (no version recorded)"
    return "this code" if version.get("code") == code_fingerprint() else f"other code ({version.get('commit')})"


def run_summaries(run_dir: Path) -> pd.DataFrame:
    """One row per ``summary.json`` under ``run_dir`` (recursively): how the run ended, the split that chose its
    checkpoint, and that checkpoint's scores. A summary from before validation selection (no ``selection``
    field) is listed as what it was: chosen on test, convergence unknown."""
    rows = []
    for path in sorted(Path(run_dir).rglob("summary.json")):
        s = json.loads(path.read_text())
        chosen, old = s["best"], "selection" not in s
        rows.append({"run": str(path.parent.relative_to(run_dir)), "model": s["variant"], "seed": s["seed"],
                     "epochs": str(s["epochs"]) if old else f"{s['stopped_epoch']}/{s['max_epochs']}",
                     "ended by": "unknown" if old else "patience" if s["stopped_early"] else
                     "limit, still improving" if s.get("still_improving_at_limit") else "limit",
                     "converged": "unknown" if old else "yes" if s["converged"] else "NO",
                     "chosen on": "test (older run)" if old else s["selection"],
                     "chosen epoch": chosen["epoch"], "val acc %": 100 * chosen.get("val_accuracy", float("nan")),
                     "test acc %": 100 * chosen["test_accuracy"],
                     "test mean class acc %": 100 * chosen["test_mean_class_accuracy"],
                     "last epoch test acc %": 100 * s["last"]["test_accuracy"], "train s": s["train_seconds"],
                     "trained by": trained_by(s.get("version"))})
    return pd.DataFrame(rows)


def environment() -> dict:
    import torch
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {"python": platform.python_version(), "device": device, "git commit": git_commit(), **versions}


def write_index(profile: str, params: dict, out_dir: Path, timings: dict, failure: str | None,
                measured_on: dict | None = None, runs_at_start: int | None = None) -> None:
    """``index.html``: when, by which commit and on which machine (``measured_on``, as ``runtime.machine`` gives it)
    the reports were rendered, how many finished runs were on disk at the start (``runs_at_start``; their training
    is not in the times), each report with its time, every run under the run directory, the parameters and the
    environment."""
    reports = "".join(  # every rendered report, also those of earlier runs (--only)
        f"<tr><td><a href='{html.escape(nb.stem)}.html'>{html.escape(nb.stem)}</a></td>"
        f"<td>{f'{timings[nb.stem]:.1f} s' if nb.stem in timings else 'earlier run'}</td></tr>"
        for nb in notebooks() if (out_dir / f"{nb.stem}.html").exists())
    runs = run_summaries(ROOT / params["run_dir"])
    runs_html = runs.to_html(index=False, float_format=lambda v: f"{v:.2f}") if len(runs) else "<p>No runs yet.</p>"
    env = pd.Series(environment(), name="value").to_frame().to_html()
    status = f"<p class='fail'>Stopped: {html.escape(failure)}</p>" if failure else \
        f"<p>All {len(timings)} notebooks ran, in {sum(timings.values()):.1f} s.</p>"
    if runs_at_start:
        status += (f"<p>{runs_at_start} finished runs were on disk at the start and were reused (the runs table says "
                   "which code trained them): the times above do not include their training.</p>")
    status += (f"<p>Rendered on {datetime.date.today()} by commit <code>{html.escape(git_commit())}</code>, on "
               f"{html.escape(describe_machine(measured_on))}; each notebook's seconds are in "
               f"<a href='timings.json'>timings.json</a>.</p>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>qcs-fer reports: {html.escape(profile)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} .fail{{color:#b00}}</style></head><body>
<h1>qcs-fer reports: profile <code>{html.escape(profile)}</code></h1>{status}
<h2>Reports</h2><table><tr><th>notebook</th><th>time</th></tr>{reports}</table>
<h2>Runs</h2><p>Every <code>summary.json</code> under <code>{html.escape(params["run_dir"])}</code>: where each run stopped
and why (<i>ended by</i>: patience before its epoch limit, or the limit, "still improving" when it chose its last or
second-to-last epoch there), whether it converged (its selection accuracy flat over its last epochs, within one
standard error, and not still improving), and the test scores of the checkpoint chosen on the split in <i>chosen
on</i> (val; "test" marks the paper's protocol), with the last epoch's test accuracy beside them. <i>model</i> is the
network a run trains (the <code>baseline_matched</code> runs train the baseline network, with QCS's image budget);
<i>trained by</i> says whether this checkout's training code trained it.</p>{runs_html}
<h2>Parameters</h2><pre>{html.escape(yaml.safe_dump(params, sort_keys=False))}</pre>
<h2>Environment</h2>{env}</body></html>"""
    (out_dir / "index.html").write_text(page, encoding="utf-8")


STYLE = re.compile(r"<style[^>]*>(.*?)</style>\s*", re.S)


def shared_css(pages: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The ``<style>`` blocks that every notebook page (every page but ``index.html``) holds, in the first page's
    order, and the pages with those blocks taken out and ``style.css`` linked where the first of them stood. A
    page's own blocks (a styled table's, the index's few lines) stay where they are."""
    notebooks = [STYLE.findall(text) for name, text in pages.items() if name != "index.html"]
    shared = [block for block in (notebooks[0] if notebooks else []) if all(block in page for page in notebooks[1:])]

    def linked(text: str) -> str:
        found = STYLE.findall(text)
        if not shared or not all(block in found for block in shared):
            return text  # the index, which holds none of them
        kept, link = list(shared), ['<link rel="stylesheet" href="style.css">\n']

        def swap(match: re.Match) -> str:
            if match.group(1) not in kept:
                return match.group(0)
            kept.remove(match.group(1))
            return link.pop() if link else ""

        return STYLE.sub(swap, text)

    return shared, {name: linked(text) for name, text in pages.items()}


def write_gallery(out_dir: Path, gallery: Path, run_dir: Path, scale: float = 0.6) -> int:
    """Copy the HTML reports of ``out_dir`` (and its index and ``timings.json``) to ``gallery``, every embedded PNG
    downscaled by ``scale`` and reduced to 256 colours, and the notebooks' shared CSS written once to ``style.css``
    and linked, so that a rendered study can be committed → bytes written. Refused (a ConfigError) when a run under
    ``run_dir`` was trained by other code than this checkout's: a gallery shows what this code gives."""
    import base64
    import io

    from PIL import Image

    runs = run_summaries(run_dir)
    if len(runs) and (other := runs[runs["trained by"] != "this code"]).shape[0]:
        raise ConfigError(f"--gallery: {len(other)} run(s) under {run_dir} were not trained by this code (first: "
                          f"{other['run'].iloc[0]}, {other['trained by'].iloc[0]}); rerun without --reuse-stale")

    def shrink(match: re.Match) -> str:
        image = Image.open(io.BytesIO(base64.b64decode(match.group(1)))).convert("RGB")
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        buffer = io.BytesIO()
        image.resize(size, Image.LANCZOS).quantize(256).save(buffer, "PNG", optimize=True)
        return f'src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"'

    gallery.mkdir(parents=True, exist_ok=True)
    shared, pages = shared_css({page.name: page.read_text(encoding="utf-8") for page in sorted(out_dir.glob("*.html"))})
    written = (gallery / "style.css").write_text("\n".join(shared), encoding="utf-8") if shared else 0
    for name, text in pages.items():
        text = re.sub(r'src="data:image/png;base64,([A-Za-z0-9+/=\s]+)"', shrink, text)
        written += (gallery / name).write_text(text, encoding="utf-8")
    if (out_dir / "timings.json").exists():
        written += (gallery / "timings.json").write_text((out_dir / "timings.json").read_text())
    return written


def parameter_value(key: str, text: str):
    """A ``-p KEY VALUE`` value, parsed as YAML (``5`` → 5, ``[0, 1]`` → a list, ``rafdb`` → a string); a one-line
    ConfigError if it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"-p {key} {text!r}: not a YAML value ({getattr(e, 'problem', None) or type(e).__name__}); "
                          f"quote a string that holds YAML's special characters") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qcslib.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="a notebook parameter (value parsed as YAML); repeatable")
    parser.add_argument("--only", nargs="+", help="run only these notebooks (numbers like 01, or names)")
    parser.add_argument("--out", help="report directory (default: reports/<profile>)")
    parser.add_argument("--gallery", help="also copy the HTML reports here with downscaled figures (docs/study)")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="reuse finished runs trained by other code (the reports name them); default: retrain them")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else ROOT / "reports" / args.profile
    try:
        extra = {k: parameter_value(k, v) for k, v in args.p} | ({"reuse_stale": True} if args.reuse_stale else {})
        status = run(args.profile, extra, args.only, out)
    except ConfigError as e:  # a bad profile, parameter or --out, found before any notebook ran
        print(f"pipeline: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pipeline: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    if status == 0 and args.gallery:
        try:
            size = write_gallery(out, Path(args.gallery), ROOT / parameters(args.profile, extra)["run_dir"])
        except ConfigError as e:
            print(f"pipeline: {e}", file=sys.stderr)
            return 2
        print(f"gallery: {size / 1e6:.1f} MB in {args.gallery}")
    return status


if __name__ == "__main__":
    sys.exit(main())
