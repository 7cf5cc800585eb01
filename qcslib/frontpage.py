"""The README's generated blocks: what the pipeline and the test suite measured, published by a command, never typed.

``python -m qcslib.frontpage --profile cpu`` reads ``reports/<profile>/timings.json`` and every run's
``summary.json`` under ``runs/<profile>`` and writes them, flattened, to ``docs/results/<profile>.json`` (the
record a reader can check, committed with the README). ``python -m qcslib.frontpage --time-test`` runs the test
suite as ``make test`` does after its set-up (pytest, then nbval over the notebooks with the smoke profile) and
writes its seconds to ``docs/results/test.json``, only when every test passed. Either then rewrites each block of
the README between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` from the records in
``docs/results/``:

- ``quickstart``: how long ``make test`` and ``make reproduce`` took, on which machine;
- ``results``: for the cpu and study profiles, per main variant of 04, test accuracy of the checkpoint chosen on the selection split, mean ± std
  over seeds; QCS against each baseline and DCS paired over seeds (``ablation.comparisons``, one Holm family); and
  how every run of the profile ended (patience, its epoch limit, still improving there) and how many converged;
- ``notebooks``: each notebook's title and seconds under every published profile, the pipeline's total, and a
  link to its page in the study gallery.

It also draws ``docs/qcs.svg``, the README's picture of the method (``plots.method_diagram``).

``render`` is a pure function of the records, so a test re-renders the README's blocks from the committed
records and fails when the two have drifted apart.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from . import ablation
from .analysis.plots import method_diagram
from .analysis.stats import family_sentence
from .train.rundir import git_commit
from .pipeline import notebooks
from .train.runtime import cpu_name, describe_machine, machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
HEADLINE = ("baseline", "baseline_matched", "dcs", "qcs")  # 04's main variants, the rows of the results table
REPORTED = ("cpu", "study")  # the profiles whose results the front page gives (smoke's runs are not results)
ASKED = (("qcs", "baseline_matched"), ("qcs", "baseline"), ("qcs", "dcs"))  # the comparisons on the front page
FAMILY = "04's paired comparisons of test accuracy"


class FrontPageError(ValueError):
    """A missing or unfinished pipeline output, or a README without the blocks to fill."""


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s" if seconds >= 60 else f"{seconds:.0f} s"


def _machine(recorded: dict | None) -> str:
    """The machine the pipeline ran on, as its timings.json recorded it (else this one's CPU and cores)."""
    if not recorded:
        return f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, matmul rate not recorded"
    return describe_machine(recorded)


def collect(profile: str, reports: Path | None = None, runs: Path | None = None) -> dict:
    """The record of one profile's pipeline: its notebooks' seconds (``timings.json``, which must say that every
    notebook ran; ``only`` when some were timed by earlier ``--only`` calls), the commits that trained its runs
    (their ``version.json``), and one row per run under ``runs`` (``ablation.read_run``'s columns, with the run's
    folder, variant and seed). 04's runs are the ``<variant>-s<seed>`` folders under ``runs`` (or ``runs/ablation``,
    where ``ablation_overrides`` send them, and then only those); the variant of the others is None."""
    reports, runs = Path(reports or ROOT / "reports" / profile), Path(runs or ROOT / "runs" / profile)
    timings_file = reports / "timings.json"
    if not timings_file.is_file():
        raise FrontPageError(f"{timings_file}: not found; run the pipeline first (make reproduce PROFILE={profile})")
    timings = json.loads(timings_file.read_text())
    if timings.get("failed"):
        raise FrontPageError(f"{timings_file}: the pipeline stopped ({timings['failed']}); publish a run that finished")
    rows = []
    for path in sorted(runs.rglob("summary.json")):
        summary = json.loads(path.read_text())
        folder = path.parent.relative_to(runs).as_posix()
        where, _, name = folder.rpartition("/")
        variant, _, seed = name.rpartition("-s")
        ablations = where in ("", "ablation") and variant in ablation.VARIANTS and seed.isdigit()
        rows.append({"run": folder, "variant": variant if ablations else None, "seed": summary["seed"],
                     "stop_reason": summary.get("stop_reason"), "commit": (summary.get("version") or {}).get("commit"),
                     **ablation.read_run(summary)})
    if not rows:
        raise FrontPageError(f"{runs}: no finished runs (summary.json) to publish")
    if any(r["variant"] and r["run"].startswith("ablation/") for r in rows):  # 02's run is not one of 04's
        rows = [{**r, "variant": None} if r["variant"] and "/" not in r["run"] else r for r in rows]
    commits = sorted({r["commit"] for r in rows if r["commit"]})
    return {"profile": profile, "date": date.today().isoformat(), "commit": ", ".join(commits) or "not recorded",
            "machine": _machine(timings.get("machine")),
            "seconds": timings["seconds"], "total": timings["total"], "runs_at_start": timings.get("runs_at_start"),
            "only": sorted(timings["seconds"]) != [nb.stem for nb in notebooks()],
            "runs": rows}


def notebook_titles() -> dict[str, str]:
    """``{stem: title}`` of the pipeline's notebooks, the title being their first line after ``# NN · ``."""
    titles = {}
    for path in notebooks():
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"]
        titles[path.stem] = "".join(first).splitlines()[0].lstrip("# ").split(" · ", 1)[-1]
    return titles


def notebooks_block(records: list[dict], titles: dict[str, str], gallery: Path = ROOT / "docs" / "study") -> str:
    """A table: one row per notebook (its title, linked to its gallery page when there is one), one column per
    published profile (its seconds), and the pipeline's total; then the machine each profile ran on."""
    header = "| notebook | " + " | ".join(f"`{r['profile']}`" for r in records) + " |"
    lines = [header, "|---|" + "---|" * len(records)]
    for stem, title in titles.items():
        page = f"docs/study/{stem}.html"
        name = f"[{stem[:2]} · {title}]({page})" if (gallery / f"{stem}.html").exists() else f"{stem[:2]} · {title}"
        cells = [_minutes(r["seconds"][stem]) if stem in r["seconds"] else "not run" for r in records]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **all, in one pipeline** | " + " | ".join(f"**{_minutes(r['total'])}**" for r in records) + " |")
    lines.append("")
    lines.append("Each column is one `make reproduce PROFILE=…`: " + "; ".join(
        f"`{r['profile']}` on {r['date']} ({r['machine']}, commit {r['commit']}, {_start(r)})" for r in records) + ".")
    return "\n".join(lines)


def quickstart_block(records: list[dict], test: dict | None) -> str:
    """The two commands with how long each took here (``make test`` after its set-up; ``make reproduce`` of the
    cpu profile), and the machine."""
    cpu = next((r for r in records if r["profile"] == "cpu"), None)
    seconds = test["seconds"] if test else {}
    timed = [f"`make test` took **{_minutes(test['total'])}** after its set-up (pytest {_minutes(seconds['pytest'])}, "
             f"nbval {_minutes(seconds['nbval'])}; {test['date']}, {test['machine']}, commit {test['commit']})"
             if test else "`make test`: its time is not recorded yet (`python -m qcslib.frontpage --time-test`)"]
    timed.append(f"`make reproduce` ran the cpu profile's pipeline in **{_minutes(cpu['total'])}** ({cpu['date']}, "
                 f"{cpu['machine']}, {_start(cpu)})" if cpu else "`make reproduce`: not recorded yet")
    return "; ".join(timed) + "."


def _start(record: dict) -> str:
    """What was on disk when the pipeline began, as the timings say."""
    start = {None: "runs on disk at the start: not recorded", 0: "no runs on disk at the start"}.get(
        record["runs_at_start"], f"{record['runs_at_start']} finished runs on disk at the start, reused")
    return start + ("; some notebooks timed in earlier calls (--only)" if record["only"] else "")


def _state_counts(runs: pd.DataFrame) -> str:
    ended = runs["stopped_early"].map({True: "patience", False: "limit"})
    improving = int(runs["still_improving_at_limit"].sum())
    return (f"{len(runs)} runs: {int((ended == 'patience').sum())} stopped by patience before their epoch limit, "
            f"{int((ended == 'limit').sum())} reached it ({improving} of them still improving there); "
            f"{int(runs['converged'].sum())} converged")


def results_block(record: dict) -> str:
    """04's main variants (test accuracy, %, mean ± std over seeds, checkpoint chosen on the selection split), QCS
    against each baseline and DCS paired over seeds, and how the profile's runs ended."""
    runs = pd.DataFrame(record["runs"])
    main = runs[runs["variant"].isin(HEADLINE)]
    if main.empty:
        raise FrontPageError(f"profile {record['profile']}: none of 04's runs ({', '.join(HEADLINE)}) to publish")
    selection = ", ".join(sorted(main["selection"].unique()))
    table = ablation.format_mean_std(ablation.summarize(main))
    counts = main.groupby("variant").size()
    lines = [f"**The `{record['profile']}` profile** (commit {record['commit']}):", "",
             "| variant | test accuracy % | seeds | converged |", "|---|---|---|---|"]
    for v in [v for v in HEADLINE if v in counts]:
        done = main[main["variant"] == v]["converged"]
        lines.append(f"| `{v}` | {table.loc[v, 'best_test_accuracy']} | {counts[v]} | {int(done.sum())} of {len(done)} |")
    family = ablation.comparisons(runs[runs["variant"].notna()])  # all of 04's, as its report corrects them
    compared = family[[(v, r) in ASKED for v, r in zip(family["variant"], family["reference"])]]
    lines += ["", f"Profile `{record['profile']}`: each run's checkpoint chosen on the **{selection}** split, test "
              f"scored once after it stopped.", "",
              f"{family_sentence(family.to_dict('records'), FAMILY)}. {len(compared)} of them:"]
    lines += [f"- *{row.question}* {row.verdict}." for row in compared.itertuples()]
    lines += ["", f"How the runs ended: 04's {_state_counts(main)}; all of the profile's (08's domain runs and "
              f"10's students too) {_state_counts(runs)}."]
    if not main["converged"].all():
        lines[-1] += (f" **{int((~main['converged']).sum())} of 04's runs did not converge** (the profile's "
                      f"`index.html` lists them): the comparisons that use them are not conclusions.")
    return "\n".join(lines)


def render(records: list[dict], test: dict | None = None, titles: dict[str, str] | None = None) -> dict[str, str]:
    """``{block name: markdown}`` from the published pipeline records (the results of the ``REPORTED`` profiles, or
    else of the first record) and the test suite's (``test``, or None)."""
    reported = [r for r in records if r["profile"] in REPORTED] or records[:1]
    return {"quickstart": quickstart_block(records, test),
            "results": "\n\n".join(results_block(r) for r in reported),
            "notebooks": notebooks_block(records, notebook_titles() if titles is None else titles)}


def fill(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each ``<!-- generated: NAME -->…<!-- end generated: NAME -->`` holding ``blocks[NAME]``."""
    for name, block in blocks.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end generated: {name} -->)", re.S)
        if not pattern.search(text):
            raise FrontPageError(f"README.md: no '<!-- generated: {name} -->' … '<!-- end generated: {name} -->' block")
        text = pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(2), text)
    return text


def published(results: Path = RESULTS) -> tuple[list[dict], dict | None]:
    """The pipeline records in ``docs/results/`` (cpu first, then smoke, then the others by name) and the test
    suite's (``test.json``, or None)."""
    order = {"cpu": 0, "smoke": 1}
    paths = sorted((p for p in results.glob("*.json") if p.stem != "test"), key=lambda p: (order.get(p.stem, 2), p.stem))
    test = results / "test.json"
    return [json.loads(p.read_text()) for p in paths], json.loads(test.read_text()) if test.exists() else None


def time_test() -> dict:
    """Run ``make test``'s two commands here (pytest; nbval over the notebooks, smoke profile) → their seconds, with
    the date, machine and commit; a FrontPageError if either fails (a failing suite has no time to publish)."""
    seconds = {}
    for name, argv, env in (("pytest", [], {}), ("nbval", ["--nbval-lax", "notebooks"], {"QCS_PROFILE": "smoke"})):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", *argv], cwd=ROOT, env={**os.environ, **env})
        seconds[name] = round(time.perf_counter() - start, 1)
        if done.returncode != 0:
            raise FrontPageError(f"{name} failed (exit {done.returncode}): nothing published")
    return {"date": date.today().isoformat(), "commit": git_commit(), "machine": _machine(machine()),
            "seconds": seconds, "total": round(sum(seconds.values()), 1)}


def write_diagram(path: Path = ROOT / "docs" / "qcs.svg") -> None:
    """``plots.method_diagram`` as an SVG whose bytes depend only on the drawing (text kept as text, no date)."""
    with matplotlib.rc_context({"svg.hashsalt": "qcs-fer", "svg.fonttype": "none"}):
        fig = method_diagram()
        fig.savefig(path, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qcslib.frontpage", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="publish this profile's pipeline output first (reports/ and runs/)")
    parser.add_argument("--time-test", action="store_true", help="run and time the test suite first, and publish it")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args(argv)
    try:
        RESULTS.mkdir(parents=True, exist_ok=True)
        if args.profile:
            (RESULTS / f"{args.profile}.json").write_text(json.dumps(collect(args.profile), indent=1) + "\n")
        if args.time_test:
            (RESULTS / "test.json").write_text(json.dumps(time_test(), indent=1) + "\n")
        records, test = published()
        if not records:
            raise FrontPageError(f"{RESULTS}: no published pipeline record; run with --profile cpu first")
        readme = Path(args.readme)
        readme.write_text(fill(readme.read_text(encoding="utf-8"), render(records, test)), encoding="utf-8")
        write_diagram()
    except FrontPageError as e:
        print(f"frontpage: {e}", file=sys.stderr)
        return 2
    print(f"wrote the generated blocks of {args.readme} from {', '.join(p.name for p in sorted(RESULTS.glob('*.json')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
