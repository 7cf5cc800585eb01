"""The data report: what a split holds, and what was left out and why."""
from __future__ import annotations

import json
from pathlib import Path

from .sources import Split


def data_report(split: Split) -> dict:
    """``{"dataset", "split", "root", "classes", "counts", "total", "excluded", "skipped"}``: counts per
    class name, protocol exclusions by reason, and unreadable images with their reasons."""
    return {"dataset": split.dataset, "split": split.split, "root": str(split.root), "classes": list(split.classes),
            "counts": split.counts(), "total": len(split), "excluded": dict(split.excluded),
            "skipped": list(split.skipped)}


def write_data_reports(splits, path: str | Path) -> dict[str, dict]:
    """``data_report`` of every split (a None split, one the run has not, is left out), by split name, written
    to ``path`` as JSON (its folder created) → the reports."""
    reports = {s.split: data_report(s) for s in splits if s is not None}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(reports, indent=1))
    return reports
