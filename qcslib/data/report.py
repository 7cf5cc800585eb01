"""The data report: what a split holds, and what was left out and why."""
from __future__ import annotations

from .sources import Split


def data_report(split: Split) -> dict:
    """``{"dataset", "split", "root", "classes", "counts", "total", "excluded", "skipped"}``: counts per
    class name, protocol exclusions by reason, and unreadable images with their reasons."""
    return {"dataset": split.dataset, "split": split.split, "root": str(split.root), "classes": list(split.classes),
            "counts": split.counts(), "total": len(split), "excluded": dict(split.excluded),
            "skipped": list(split.skipped)}
