"""Progress that reaches the terminal while a notebook trains.

papermill runs each notebook in a kernel whose output goes into the notebook, so a long training cell
is silent in the terminal. The pipeline names a file in ``QCS_PROGRESS``; ``report`` (called by ``fit``
after every epoch) writes the run's state there as JSON, together with what ``context`` set (by
``train_variants``: which run of how many, and the work after it), and the pipeline prints ``describe``'s
line whenever it changes. Outside the pipeline both do nothing.

The time left is an estimate from the epochs so far: the current run's remaining epochs at its mean
epoch time, plus the later runs' work at the current run's seconds per unit, where a unit is one pass
of the training images through the backbone (``work_units``). Early stopping can only shorten it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "QCS_PROGRESS"
_context: dict = {}


def context(**fields) -> None:
    """Fields that every later ``report`` of this process carries (a value of None removes a field)."""
    _context.update(fields)
    for k in [k for k, v in _context.items() if v is None]:
        del _context[k]


def report(**fields) -> None:
    """Write ``context`` + ``fields`` to the file named by ``QCS_PROGRESS`` (atomically), if it is set."""
    path = os.environ.get(ENV)
    if not path:
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**_context, **fields, "time": time.time()}))
    os.replace(tmp, path)


def read(path: str | Path) -> dict | None:
    """The last report in ``path``, or None (no report yet, or a file being replaced)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def seconds_left(state: dict) -> float | None:
    """(max_epochs − epoch) · epoch_seconds + later_units · epoch_seconds / epoch_units; None if unknown."""
    try:
        rate = state["epoch_seconds"] / state["epoch_units"]
        return (state["max_epochs"] - state["epoch"]) * state["epoch_seconds"] + state.get("later_units", 0) * rate
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def describe(state: dict) -> str:
    """One line: ``run 5/16 qcs-s1 · epoch 3/20 · val accuracy 61.2 % · up to ~7 min left``."""
    parts = []
    if "runs" in state:
        parts.append(f"run {state['run_index']}/{state['runs']} {state.get('run', '')}".rstrip())
    elif "run" in state:
        parts.append(f"run {state['run']}")
    if "epoch" in state:
        parts.append(f"epoch {state['epoch']}/{state['max_epochs']}")
    if "score" in state:
        parts.append(f"{state['selection']} accuracy {100 * state['score']:.1f} %")
    left = seconds_left(state)
    if left is not None:
        parts.append(f"up to ~{left / 60:.0f} min left" if left >= 90 else f"up to ~{left:.0f} s left")
    return " · ".join(parts)
