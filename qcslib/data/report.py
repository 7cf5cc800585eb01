"""The data report: what a split holds, what was left out and why, and how it compares with the published counts."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from .manifest import item_ids
from .published import Published, published_counts
from .sources import Split


def expected_counts(split: Split) -> Published | None:
    """The published size `split` is compared with (`published_counts`), or None: none is published, or (FERPlus
    read from its folders or a list file) the fer2013.csv rows it is published as cannot be counted, because those
    layouts leave out the rows without an image."""
    if split.dataset == "ferplus" and split.pixels is None:
        return None
    return published_counts(split.dataset, split.split)


def duplicate_groups(ids: list[str], digests: Mapping[str, str | None]) -> list[list[str]]:
    """The items (``ids``) whose content (``digests``, id → SHA-256 or None if unread) is the same as another's:
    one list per content held more than once, in order of first occurrence."""
    groups: dict[str, list[str]] = {}
    for name in ids:
        if (digest := digests.get(name)) is not None:
            groups.setdefault(digest, []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def count_deviations(split: Split, expected: Published, duplicates: Mapping[str, int] | None = None) -> list[dict]:
    """Where ``split`` differs from ``expected`` → ``[{"class", "expected", "found", "difference", "likely_cause"}]``
    with ``difference = found - expected``.

    With per-class ``expected.counts``: one entry per class whose count differs (the classes of either side; a
    class one side lacks counts 0 there). With a total only (FERPlus: fer2013.csv rows): one entry, ``class`` None,
    if the rows the split accounts for (kept + excluded + unreadable) differ. ``duplicates``: class → images of
    that class whose content repeats an earlier image's (see `data_report`); None when not checked.
    """
    if expected.counts is None:
        rows = len(split) + len(split.skipped) + sum(split.excluded.values())
        if rows == expected.total:
            return []
        cause = (f"{expected.total - rows} fewer" if rows < expected.total else f"{rows - expected.total} more")
        return [_deviation(None, expected.total, rows, f"{cause} {expected.unit} than published: a truncated, "
                                                       f"edited or other version of the file")]
    found = split.counts()
    unreadable = Counter(s.get("class") for s in split.skipped)
    names = list(expected.counts) + [c for c in split.classes if c not in expected.counts]
    deviations = []
    for name in names:
        e, f = expected.counts.get(name, 0), found.get(name, 0)
        if e != f:
            cause = _likely_cause(split, name, e, f, unreadable[name], (duplicates or {}).get(name, 0))
            deviations.append(_deviation(name, e, f, cause))
    return deviations


def _deviation(name, expected: int, found: int, cause: str) -> dict:
    return {"class": name, "expected": expected, "found": found, "difference": found - expected, "likely_cause": cause}


def _likely_cause(split: Split, name: str, expected: int, found: int, unreadable: int, duplicated: int) -> str:
    """The likeliest reason why class ``name`` holds ``found`` images where ``expected`` are published, from what
    the split records: contempt present or absent (7 vs 8 classes), a held-out val part, unreadable files, the
    FERPlus protocol, duplicated content, or else images missing from or added to the copy."""
    if name == "contempt" and expected == 0:
        return (f"contempt present: {found} contempt images where the published split has 7 classes and no "
                f"contempt (an 8-class copy or list read as a 7-class dataset; AffectNet-7 leaves contempt out)")
    if name == "contempt" and found == 0:
        return (f"contempt absent: the published split has {expected} contempt images, this one none (a 7-class "
                f"copy or list read as the 8-class dataset?)")
    if expected == 0:
        return "a class the published split does not have: another label map, or another dataset"
    majority = {k: v for k, v in split.excluded.items() if k.startswith("FERPlus majority")}  # ferplus._DROPS
    protocol = (f"FERPlus protocol difference: the majority rule here excluded {sum(majority.values())} images ("
                + ", ".join(f"{k.split(': ', 1)[-1]} {v}" for k, v in majority.items())
                + "); the published counts may come from another rule (ties kept, plurality, unknown kept)")
    held_out = sum(v for k, v in split.excluded.items() if k.startswith("held out as val"))  # split.hold_out
    if found < expected:
        missing = expected - found
        if held_out:
            return f"held out: {held_out} images of this split went to a held-out val split (see excluded)"
        if unreadable:
            more = f"; {missing - unreadable} more are not listed" if unreadable < missing else ""
            return f"missing files: {unreadable} image(s) of this class cannot be read (see skipped){more}"
        if majority:
            return protocol
        if found == 0:
            return ("missing class: no image of this class is listed (a class left out of the label file, or "
                    "another label map)")
        return f"missing files: {missing} fewer images listed than published (label lines or files left out)"
    extra = found - expected
    if duplicated:
        more = f"; {extra - duplicated} more are unexplained" if duplicated < extra else ""
        return f"duplicates: {duplicated} image(s) of this class repeat another image's content (see duplicates){more}"
    if majority:
        return protocol
    return f"{extra} more images than published: extra label lines, or another release of the dataset"


def data_report(split: Split, digests: Mapping[str, str | None] | None = None,
                expected: Published | None = None) -> dict:
    """``{"dataset", "split", "root", "classes", "counts", "total", "excluded", "skipped", "expected",
    "deviations", "duplicates"}``: counts per class name, protocol exclusions by reason, unreadable images with
    their reasons, the size it is compared with (``expected``, default the published one, `expected_counts`; null
    where there is none), how the split deviates from it (`count_deviations`; warnings, not errors), and, given
    ``digests`` (item id → SHA-256, see `manifest.hash_items`), the groups of items with the same content (null
    when not checked)."""
    expected = expected or expected_counts(split)
    groups = None if digests is None else duplicate_groups(item_ids(split), digests)
    repeats = None
    if groups is not None:
        label = dict(zip(item_ids(split), (split.classes[k] for k in split.labels)))
        repeats = Counter(label[name] for group in groups for name in group[1:])
    return {"dataset": split.dataset, "split": split.split, "root": str(split.root), "classes": list(split.classes),
            "counts": split.counts(), "total": len(split), "excluded": dict(split.excluded),
            "skipped": list(split.skipped),
            "expected": None if expected is None else {"counts": expected.counts, "total": expected.total,
                                                       "unit": expected.unit, "source": expected.source},
            "deviations": [] if expected is None else count_deviations(split, expected, repeats),
            "duplicates": groups}


def deviation_warning(report: dict) -> str | None:
    """One line summing up a report's deviations (None if it has none): what the CLI prints on stderr."""
    if not report["deviations"]:
        return None
    parts = [f"{d['class'] or 'total'} {d['found']} vs {d['expected']}" for d in report["deviations"]]
    return (f"{report['dataset']}/{report['split']}: {len(parts)} count(s) differ from the published ones "
            f"({', '.join(parts)}); see \"deviations\" for the likely causes")


def write_data_reports(splits, path: str | Path) -> dict[str, dict]:
    """``data_report`` of every split (a None split, one the run has not, is left out), by split name, written
    to ``path`` as JSON (its folder created) → the reports."""
    reports = {s.split: data_report(s) for s in splits if s is not None}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(reports, indent=1))
    return reports
