"""FERPlus in either of Microsoft's layouts, labelled by the FERPlus majority protocol."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import FERPLUS_CLASSES
from .files import int_values, read_table, require_dir, require_file
from .split import DataError, Split

CSV_LAYOUT = ("<root>/fer2013.csv (emotion,pixels,Usage) and <root>/fer2013new.csv (Usage,Image name,neutral,"
              "happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF), rows aligned by position")
FOLDERS_LAYOUT = ("<root>/FER2013Train|FER2013Valid|FER2013Test/ with the PNGs and a header-less label.csv "
                  "(name,\"(x, y, w, h)\",10 vote counts) as Microsoft's generate_training_data.py writes")
LAYOUT = f"{CSV_LAYOUT} or {FOLDERS_LAYOUT}"

FERPLUS_VOTES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
_DROPS = {-1: "FERPlus majority: no class above 50%", 8: "FERPlus majority: unknown", 9: "FERPlus majority: NF"}
_EMPTY_NAME = "FERPlus: empty image name"


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """FERPlus majority labels for (N, 10) vote counts in fer2013new.csv column order: 0..7 an emotion, 8 unknown,
    9 NF, -1 no majority (Microsoft's reader forces that case to unknown).

    As in Microsoft's `FERPlusReader._process_data` (src/ferplus.py, mode 'majority'): first every count of 1 is set
    to 0 (outlier removal, applied to all ten columns, unconditionally); then the top column is the label if its count
    is more than half of the remaining votes (strictly), else there is no majority.
    """
    v = np.where(votes <= 1, 0, votes)
    top = v.argmax(axis=1)
    has_majority = 2 * v.max(axis=1) > v.sum(axis=1)
    return np.where(has_majority, top, -1)


def load(dataset: str, root: Path, split: str, layout: str | None = None) -> Split:
    """FERPlus in either of Microsoft's layouts (`layout="csv"` or `"folders"`; None picks the csv files when either
    of them is under root, else the folders). Splits: Training -> train, PublicTest -> val, PrivateTest -> test.
    Labels are the 8 emotions by `ferplus_majority`; rows without an image name and majorities of unknown, NF or
    nothing are counted in `excluded`."""
    if layout is None:
        has_csv = (root / "fer2013new.csv").exists() or (root / "fer2013.csv").exists()
        has_folders = any((root / f).is_dir() for f in _FOLDERS.values())
        if not (has_csv or has_folders):
            raise FileNotFoundError(f"{root}: no FERPlus data found; expected {CSV_LAYOUT}, or {FOLDERS_LAYOUT}")
        layout = "csv" if has_csv else "folders"
    if layout == "csv":
        return _load_csv(dataset, root, split)
    if layout == "folders":
        return _load_folders(dataset, root, split)
    raise ValueError(f"unknown FERPlus layout {layout!r}; expected 'csv' or 'folders'")


def _load_csv(dataset: str, root: Path, split: str) -> Split:
    """fer2013.csv (emotion, pixels, Usage; pixels = 2304 space-separated 0-255 grey values, row-major 48x48) and
    fer2013new.csv (Usage, Image name, ten vote counts), both with a header row, rows aligned by position. The
    images come back as `pixels`, each named by its line in fer2013.csv (``names``, "fer2013.csv:LINE")."""
    fer_file = require_file(root / "fer2013.csv", CSV_LAYOUT)
    new_file = require_file(root / "fer2013new.csv", CSV_LAYOUT)
    fer, fer_lines = read_table(fer_file, ("emotion", "pixels", "Usage"), CSV_LAYOUT)
    new, new_lines = read_table(new_file, ("Usage", "Image name") + FERPLUS_VOTES, CSV_LAYOUT)
    if len(fer) != len(new):
        raise DataError(f"{new_file} has {len(new)} data rows but {fer_file} has {len(fer)}; expected {CSV_LAYOUT}")
    usage = fer["Usage"].str.strip()
    known = usage.isin(list(_USAGE.values())).to_numpy()
    if not known.all():
        i = int(np.argmin(known))
        raise DataError(f"{fer_file}:{fer_lines[i]}: Usage is {usage.iloc[i]!r}; expected Training, PublicTest or "
                        f"PrivateTest")
    same = (new["Usage"].str.strip() == usage).to_numpy()
    if not same.all():
        i = int(np.argmin(same))
        raise DataError(f"{new_file}:{new_lines[i]}: Usage {new['Usage'].iloc[i]!r} differs from {usage.iloc[i]!r} "
                        f"on line {fer_lines[i]} of {fer_file}; expected {CSV_LAYOUT}")
    votes = _vote_counts(new, new_file, new_lines, CSV_LAYOUT)
    mine = (usage == _USAGE[split]).to_numpy()
    labels, keep, excluded = _labels(new["Image name"].to_numpy()[mine], votes[mine])
    rows = np.flatnonzero(mine)[keep]
    pixels = _parse_pixels(fer["pixels"].iloc[rows].tolist(), fer_file, fer_lines[rows])
    return Split(dataset, split, root, list(FERPLUS_CLASSES), labels, None, pixels, None, excluded=excluded,
                 names=[f"fer2013.csv:{line}" for line in fer_lines[rows]])


def _load_folders(dataset: str, root: Path, split: str) -> Split:
    """<root>/FER2013Train|FER2013Valid|FER2013Test/label.csv: no header; name, "(x, y, w, h)", ten vote counts;
    the PNGs beside it. The face box is validated but not kept: in Microsoft's files it is the whole 48x48 image."""
    folder = require_dir(root / _FOLDERS[split], FOLDERS_LAYOUT)
    label_file = require_file(folder / "label.csv", FOLDERS_LAYOUT)
    table, lines = read_table(label_file, ("name", "box") + FERPLUS_VOTES, FOLDERS_LAYOUT, header=False)
    box_ok = table["box"].str.fullmatch(r"\s*\(\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*\)\s*").to_numpy()
    if not box_ok.all():
        i = int(np.argmin(box_ok))
        raise DataError(f"{label_file}:{lines[i]}: face box {table['box'].iloc[i]!r} is not \"(x, y, w, h)\"; "
                        f"expected {FOLDERS_LAYOUT}")
    votes = _vote_counts(table, label_file, lines, FOLDERS_LAYOUT)
    names = table["name"].to_numpy()
    labels, keep, excluded = _labels(names, votes)
    base = str(folder)
    paths = [Path(f"{base}/{n.strip()}") for n in names[keep]]
    return Split(dataset, split, root, list(FERPLUS_CLASSES), labels, paths, None, None, excluded=excluded)


def _vote_counts(table: pd.DataFrame, path: Path, lines: np.ndarray, layout: str) -> np.ndarray:
    """The ten vote-count columns as an (N, 10) int64 array, each count ≥ 0."""
    return np.stack([int_values(table[c], path, lines, c, layout, 0, None) for c in FERPLUS_VOTES], axis=1)


def _labels(names: np.ndarray, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(labels of the kept rows, kept-row mask, exclusions). Rows without an image name never became images in
    Microsoft's data; the others keep their majority label if it is one of the 8 emotions."""
    named = pd.Series(names, dtype=object).str.strip().to_numpy() != ""
    majority = ferplus_majority(votes)
    keep = named & (majority >= 0) & (majority < len(FERPLUS_CLASSES))
    excluded = {_EMPTY_NAME: int((~named).sum())}
    for code, reason in _DROPS.items():
        excluded[reason] = int((named & (majority == code)).sum())
    return majority[keep].astype(np.int64), keep, {k: v for k, v in excluded.items() if v}


def _parse_pixels(rows: list[str], path: Path, lines: np.ndarray) -> np.ndarray:
    """Space-separated 48x48 grey values -> (N, 48, 48) uint8, parsed in one pass; a bad row is an error with its
    line. A sentinel after each row lets one flat parse recover the row boundaries."""
    n, size, end = len(rows), 48 * 48, -1000
    flat = None
    if n:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                flat = np.fromstring(f" {end} ".join(rows) + f" {end}", dtype=np.int32, sep=" ")
            except (ValueError, DeprecationWarning):
                flat = None
    if flat is not None:
        ends = np.flatnonzero(flat == end)
        if len(ends) == n and np.all(np.diff(ends, prepend=-1) == size + 1):
            values = np.delete(flat, ends).reshape(n, 48, 48)
            if values.min() >= 0 and values.max() <= 255:
                return values.astype(np.uint8)
    for row, line in zip(rows, lines):  # error path: find the first bad row
        tokens = row.split()
        bad = [t for t in tokens if not (t.isdigit() and int(t) <= 255)]
        if len(tokens) != size or bad:
            found = f"{len(tokens)} values" + (f", {bad[0]!r} among them" if bad else "")
            raise DataError(f"{path}:{line}: pixels holds {found}; expected {size} (48x48) space-separated "
                            f"integers 0-255")
    return np.zeros((0, 48, 48), np.uint8)
