"""Dataset roots -> one split's items, labels and class names.

`load_split(dataset, root, split)` reads a dataset in its official layout and returns a `Split`: the images (paths, or
pixels for FERPlus's csv), integer labels in the dataset's own label order, the canonical names of those labels, and a
record of everything the dataset's protocol left out. `verify_images` decodes every image and moves unreadable ones to
`Split.skipped`; `read_image` returns one item as an RGB PIL image.

Supported layouts (`LAYOUTS` holds the one-line form used in error messages):

* ``rafdb``: RAF-DB basic, ``EmoLabel/list_patition_label.txt`` and ``Image/aligned/``.
* ``ferplus``: Microsoft's ``fer2013.csv`` + ``fer2013new.csv``, or the ``FER2013Train|Valid|Test`` folders that
  Microsoft's ``generate_training_data.py`` writes; labels by the FERPlus majority protocol.
* ``affectnet7`` / ``affectnet8``: AffectNet's ``Manually_Annotated_file_lists`` and ``Manually_Annotated_Images``.
* ``list`` / ``synthfer``: ``{train,val,test}.txt`` + ``classes.txt`` (what the SynthFER generator writes).
* ``folder``: ``<root>/<split>/<class name>/*.jpg``.
* the official QCS list files (``ImageName label``): pass ``list_file=`` (and ``image_root=``) to ``list`` or to a
  named dataset, which then fixes the class order.

Nothing is dropped silently: protocol exclusions are counted in `Split.excluded`, unreadable images are listed in
`Split.skipped`, and malformed input is an error naming the file, the line and the expected layout.
"""
from __future__ import annotations

import csv
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

__all__ = [
    "CLASS_NAMES", "RAFDB_CLASSES", "FERPLUS_CLASSES", "AFFECTNET_CLASSES", "DATASETS", "DATASET_CLASSES", "LAYOUTS",
    "DataError", "Split", "load_split", "hold_out", "verify_images", "read_image", "canonical_class_name",
    "ferplus_majority",
]

CLASS_NAMES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
RAFDB_CLASSES = ("surprise", "fear", "disgust", "happy", "sad", "anger", "neutral")  # RAF-DB labels 1..7 -> 0..6
FERPLUS_CLASSES = ("neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt")
AFFECTNET_CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")  # codes 0..7
DATASETS = ("rafdb", "ferplus", "affectnet7", "affectnet8", "list", "folder", "synthfer")
SPLITS = ("train", "val", "test")

# The datasets whose label order is fixed (also what `classes="rafdb"` etc. means for a QCS list file).
DATASET_CLASSES = {
    "rafdb": RAFDB_CLASSES,
    "ferplus": FERPLUS_CLASSES,
    "affectnet7": AFFECTNET_CLASSES[:7],
    "affectnet8": AFFECTNET_CLASSES,
}

# Other spellings of the canonical names (folder names, classes.txt, FERPlus/AffectNet column and code names).
_ALIASES = {
    "happiness": "happy", "sadness": "sad", "angry": "anger", "surprised": "surprise", "fearful": "fear",
    "disgusted": "disgust", "contemptuous": "contempt",
}

LAYOUTS = {
    "rafdb": "<root>/EmoLabel/list_patition_label.txt with 'train_00001.jpg 5' lines (labels 1-7) "
             "and images <root>/Image/aligned/<stem>_aligned.jpg",
    "ferplus-csv": "<root>/fer2013.csv (emotion,pixels,Usage) and <root>/fer2013new.csv (Usage,Image name,neutral,"
                   "happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF), rows aligned by position",
    "ferplus-folders": "<root>/FER2013Train|FER2013Valid|FER2013Test/ with the PNGs and a header-less label.csv "
                       "(name,\"(x, y, w, h)\",10 vote counts) as Microsoft's generate_training_data.py writes",
    "affectnet": "<root>/Manually_Annotated_file_lists/training.csv and validation.csv (subDirectory_filePath,face_x,"
                 "face_y,face_width,face_height,facial_landmarks,expression,valence,arousal) and images under "
                 "<root>/Manually_Annotated_Images/",
    "list": "<root>/train.txt, <root>/test.txt (optionally <root>/val.txt) with 'relative/path label' lines "
            "(0-based labels, no spaces in paths) and <root>/classes.txt with one class name per line",
    "qcs-list": "a list file of 'ImageName label' lines (0-based labels) with image names relative to image_root",
    "folder": "<root>/<split>/<class name>/*.jpg|jpeg|png|bmp",
}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class DataError(ValueError):
    """A dataset file that does not match its expected layout; the message names the file (and line)."""


@dataclass
class Split:
    """One split of one dataset: items, labels in the dataset's own order, and what was left out and why."""

    dataset: str
    split: str                      # "train" | "val" | "test"
    root: Path
    classes: list[str]              # canonical names in this dataset's label order
    labels: np.ndarray              # int64, shape (N,)
    paths: list[Path] | None        # absolute image paths; None when the images are `pixels`
    pixels: np.ndarray | None       # (N, 48, 48) uint8 (FERPlus read from fer2013.csv); else None
    boxes: np.ndarray | None        # (N, 4) int64 (x, y, w, h) face boxes to crop to; else None
    skipped: list[dict] = field(default_factory=list)    # [{"path", "reason"}] unreadable images (verify_images)
    excluded: dict[str, int] = field(default_factory=dict)  # protocol exclusions, reason -> count

    def __post_init__(self):
        n = len(self.labels)
        sizes = {"paths": self.paths, "pixels": self.pixels, "boxes": self.boxes}
        wrong = [f"{k} has {len(v)}" for k, v in sizes.items() if v is not None and len(v) != n]
        if wrong or (self.paths is None) == (self.pixels is None):
            raise ValueError(f"inconsistent Split for {self.dataset}/{self.split}: {n} labels, " + ", ".join(wrong)
                             + "; expected exactly one of paths/pixels, each with one entry per label")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> Split:
        """The items at ``indices`` (in that order), with the same classes and records."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(self, labels=self.labels[idx], paths=None if self.paths is None else [self.paths[i] for i in idx],
                       pixels=None if self.pixels is None else self.pixels[idx],
                       boxes=None if self.boxes is None else self.boxes[idx])

    def counts(self) -> dict[str, int]:
        """Class name -> number of items, every class listed (0 where it has none)."""
        n = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(k) for name, k in zip(self.classes, n)}


# ---------------------------------------------------------------------------------------------------------- public API

def load_split(dataset: str, root: str | Path, split: str = "train", **options) -> Split:
    """Read one split of `dataset` under `root` (see the module docstring and `LAYOUTS` for each layout).

    Options: ``list_file`` and ``image_root`` (``list``/``synthfer``, or a dataset with a fixed class order, which
    then reads that official QCS list file instead of its official layout, in its own class order), ``classes``
    (``list``/``synthfer``: a dataset name or a list of class names), ``layout``
    (``ferplus``: ``"csv"`` or ``"folders"``; default: whichever exists, csv first) and ``cropped`` (AffectNet:
    whether the images are already face crops; default None decides from the first images, see `_affectnet_cropped`).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if problem := unknown_options(dataset, options):
        raise TypeError(f"load_split({dataset!r}) got {problem}")
    qcs_list = dataset in DATASET_CLASSES and options.get("list_file") is not None
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        layout = LAYOUTS["ferplus-csv"] + " or " + LAYOUTS["ferplus-folders"] if dataset == "ferplus" else \
            LAYOUTS[_LAYOUT_KEY[dataset]]
        raise FileNotFoundError(f"{root}: dataset root not found; expected {layout}")
    if qcs_list:
        return _load_list(dataset, root, split, classes=dataset, **options)
    return _LOADERS[dataset](dataset, root, split, **options)


def unknown_options(dataset: str, options: dict) -> str | None:
    """What is wrong with ``load_split``'s ``options`` for ``dataset`` (the unknown ones and the known ones), or None."""
    qcs_list = dataset in DATASET_CLASSES and options.get("list_file") is not None
    allowed = {"list_file", "image_root"} if qcs_list else _OPTIONS[dataset]
    unknown = sorted(set(options) - allowed)
    return f"unknown option(s) {', '.join(unknown)}; it takes {', '.join(sorted(allowed)) or 'none'}" if unknown else None


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """``split`` cut in two → ``(rest, val)``: a stratified ``fraction`` of every class goes to ``val``
    (scikit-learn's ``train_test_split`` with ``random_state=seed``), the rest keeps its order. Both keep
    ``split``'s records; ``rest.excluded`` counts what went to val, so nothing leaves silently. For datasets
    with no val split of their own (RAF-DB, AffectNet)."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    counts = split.counts()
    if few := [f"{name} ({n})" for name, n in counts.items() if 0 < n < 2]:
        raise DataError(f"{split.dataset}/{split.split}: cannot hold out a stratified val split: class "
                        f"{', '.join(few)} has fewer than 2 images")
    try:
        rest, val = train_test_split(np.arange(len(split)), test_size=fraction, random_state=seed,
                                     stratify=split.labels)
    except ValueError as e:  # too few images for one per class on each side
        raise DataError(f"{split.dataset}/{split.split}: cannot hold out {fraction:.0%} as a stratified val split "
                        f"of {len(split)} images in {len(split.classes)} classes ({e})") from e
    note = f"held out as val (val_fraction {fraction}, seed {seed})"
    kept = replace(split.subset(np.sort(rest)), excluded={**split.excluded, note: len(val)},
                   skipped=list(split.skipped))
    return kept, replace(split.subset(np.sort(val)), split="val", excluded={}, skipped=[])


def verify_images(split: Split) -> Split:
    """Decode every image fully; return a new Split without the unreadable ones, which go to `skipped` with the
    reason. One warning gives the count. Splits that hold pixels have nothing to decode and come back as a copy."""
    if split.paths is None:
        return replace(split, skipped=list(split.skipped), excluded=dict(split.excluded))
    reasons = [_decode_problem(p) for p in split.paths]
    keep = np.array([r is None for r in reasons], dtype=bool)
    skipped = list(split.skipped) + [{"path": str(p), "reason": r} for p, r in zip(split.paths, reasons) if r]
    n_bad = int((~keep).sum())
    if n_bad:
        warnings.warn(f"{split.dataset}/{split.split}: skipped {n_bad} of {len(split)} images that could not be "
                      f"decoded (see Split.skipped for each path and reason)", stacklevel=2)
    return replace(
        split,
        labels=split.labels[keep],
        paths=[p for p, k in zip(split.paths, keep) if k],
        boxes=None if split.boxes is None else split.boxes[keep],
        skipped=skipped,
        excluded=dict(split.excluded),
    )


def require_whole(split: Split, allow: str) -> Split:
    """An evaluation split is scored whole: ``split`` itself if ``verify_images`` skipped none of its images, else a
    one-line ``DataError`` naming them (the first 3) and saying how to ``allow`` scoring the readable rest."""
    n = len(split.skipped)
    if not n:
        return split
    named = "; ".join(f"{s['path']} ({s['reason']})" for s in split.skipped[:3]) + (f"; {n - 3} more" if n > 3 else "")
    raise DataError(f"{split.dataset}/{split.split}: {n} of {len(split) + n} images cannot be read ({named}); a score "
                    f"on the rest would not be comparable: fix them, or {allow} to score the {len(split)} readable ones")


def read_image(split: Split, index: int) -> Image.Image:
    """Item `index` as an RGB image: cropped to its face box when the split has boxes (any part of the box outside
    the image comes out black, as PIL crops); grey pixels become RGB."""
    if split.pixels is not None:
        return Image.fromarray(split.pixels[index]).convert("RGB")
    with Image.open(split.paths[index]) as image:
        if split.boxes is not None:
            x, y, w, h = (int(v) for v in split.boxes[index])
            image = image.crop((x, y, x + w, y + h))
        return image.convert("RGB")


def canonical_class_name(name: str) -> str:
    """The canonical name for `name` when it matches one case-insensitively ("Happy", "happiness" -> "happy");
    otherwise `name` unchanged."""
    low = name.strip().lower()
    if low in CLASS_NAMES:
        return low
    return _ALIASES.get(low, name.strip())


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


# ------------------------------------------------------------------------------------------------------------- RAF-DB

def _load_rafdb(dataset: str, root: Path, split: str) -> Split:
    """RAF-DB basic, official layout:

        <root>/EmoLabel/list_patition_label.txt   lines "train_00001.jpg 5" / "test_0001.jpg 1", labels 1..7 =
                                                  Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral
        <root>/Image/aligned/train_00001_aligned.jpg

    The split is the name's prefix (train_/test_); RAF-DB has no val split.
    """
    layout = LAYOUTS["rafdb"]
    if split == "val":
        raise DataError(f"{root}: RAF-DB has no val split (its images are train_* or test_*); ask for 'train' or "
                        f"'test'")
    label_file = _require_file(root / "EmoLabel" / "list_patition_label.txt", layout)
    image_dir = _require_dir(root / "Image" / "aligned", layout)
    names, label_text, lines = _read_pairs(label_file, layout)
    prefix_ok = names.str.startswith("train_") | names.str.startswith("test_")
    if not prefix_ok.all():
        i = int(np.argmin(prefix_ok.to_numpy()))
        raise DataError(f"{label_file}:{lines[i]}: image name {names.iloc[i]!r} starts with neither train_ nor test_; "
                        f"expected {layout}")
    labels = _int_values(label_text, label_file, lines, "label", layout, 1, len(RAFDB_CLASSES)) - 1
    mine = names.str.startswith(split + "_").to_numpy()
    stems = names[mine].str.replace(r"\.[^./]*$", "", regex=True)
    base = str(image_dir)
    return Split(dataset, split, root, list(RAFDB_CLASSES), labels[mine],
                 [Path(f"{base}/{s}_aligned.jpg") for s in stems], None, None)


# ------------------------------------------------------------------------------------------------------------ FERPlus

FERPLUS_VOTES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
_FERPLUS_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
_FERPLUS_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
_FERPLUS_DROPS = {-1: "FERPlus majority: no class above 50%", 8: "FERPlus majority: unknown", 9: "FERPlus majority: NF"}
_FERPLUS_EMPTY_NAME = "FERPlus: empty image name"


def _load_ferplus(dataset: str, root: Path, split: str, layout: str | None = None) -> Split:
    """FERPlus in either of Microsoft's layouts (`layout="csv"` or `"folders"`; None picks the csv files when either
    of them is under root, else the folders). Splits: Training -> train, PublicTest -> val, PrivateTest -> test.
    Labels are the 8 emotions by `ferplus_majority`; rows without an image name and majorities of unknown, NF or
    nothing are counted in `excluded`."""
    if layout is None:
        has_csv = (root / "fer2013new.csv").exists() or (root / "fer2013.csv").exists()
        has_folders = any((root / f).is_dir() for f in _FERPLUS_FOLDERS.values())
        if not (has_csv or has_folders):
            raise FileNotFoundError(f"{root}: no FERPlus data found; expected {LAYOUTS['ferplus-csv']}, or "
                                    f"{LAYOUTS['ferplus-folders']}")
        layout = "csv" if has_csv else "folders"
    if layout == "csv":
        return _load_ferplus_csv(dataset, root, split)
    if layout == "folders":
        return _load_ferplus_folders(dataset, root, split)
    raise ValueError(f"unknown FERPlus layout {layout!r}; expected 'csv' or 'folders'")


def _load_ferplus_csv(dataset: str, root: Path, split: str) -> Split:
    """fer2013.csv (emotion, pixels, Usage; pixels = 2304 space-separated 0-255 grey values, row-major 48x48) and
    fer2013new.csv (Usage, Image name, ten vote counts), both with a header row, rows aligned by position. The
    images come back as `pixels`."""
    layout = LAYOUTS["ferplus-csv"]
    fer_file = _require_file(root / "fer2013.csv", layout)
    new_file = _require_file(root / "fer2013new.csv", layout)
    fer, fer_lines = _read_table(fer_file, ("emotion", "pixels", "Usage"), layout)
    new, new_lines = _read_table(new_file, ("Usage", "Image name") + FERPLUS_VOTES, layout)
    if len(fer) != len(new):
        raise DataError(f"{new_file} has {len(new)} data rows but {fer_file} has {len(fer)}; expected {layout}")
    usage = fer["Usage"].str.strip()
    known = usage.isin(list(_FERPLUS_USAGE.values())).to_numpy()
    if not known.all():
        i = int(np.argmin(known))
        raise DataError(f"{fer_file}:{fer_lines[i]}: Usage is {usage.iloc[i]!r}; expected Training, PublicTest or "
                        f"PrivateTest")
    same = (new["Usage"].str.strip() == usage).to_numpy()
    if not same.all():
        i = int(np.argmin(same))
        raise DataError(f"{new_file}:{new_lines[i]}: Usage {new['Usage'].iloc[i]!r} differs from {usage.iloc[i]!r} "
                        f"on line {fer_lines[i]} of {fer_file}; expected {layout}")
    votes = _vote_counts(new, new_file, new_lines, layout)
    mine = (usage == _FERPLUS_USAGE[split]).to_numpy()
    labels, keep, excluded = _ferplus_labels(new["Image name"].to_numpy()[mine], votes[mine])
    rows = np.flatnonzero(mine)[keep]
    pixels = _parse_pixels(fer["pixels"].iloc[rows].tolist(), fer_file, fer_lines[rows])
    return Split(dataset, split, root, list(FERPLUS_CLASSES), labels, None, pixels, None, excluded=excluded)


def _load_ferplus_folders(dataset: str, root: Path, split: str) -> Split:
    """<root>/FER2013Train|FER2013Valid|FER2013Test/label.csv: no header; name, "(x, y, w, h)", ten vote counts;
    the PNGs beside it. The face box is validated but not kept: in Microsoft's files it is the whole 48x48 image."""
    layout = LAYOUTS["ferplus-folders"]
    folder = _require_dir(root / _FERPLUS_FOLDERS[split], layout)
    label_file = _require_file(folder / "label.csv", layout)
    table, lines = _read_table(label_file, ("name", "box") + FERPLUS_VOTES, layout, header=False)
    box_ok = table["box"].str.fullmatch(r"\s*\(\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*\)\s*").to_numpy()
    if not box_ok.all():
        i = int(np.argmin(box_ok))
        raise DataError(f"{label_file}:{lines[i]}: face box {table['box'].iloc[i]!r} is not \"(x, y, w, h)\"; "
                        f"expected {layout}")
    votes = _vote_counts(table, label_file, lines, layout)
    names = table["name"].to_numpy()
    labels, keep, excluded = _ferplus_labels(names, votes)
    base = str(folder)
    paths = [Path(f"{base}/{n.strip()}") for n in names[keep]]
    return Split(dataset, split, root, list(FERPLUS_CLASSES), labels, paths, None, None, excluded=excluded)


def _vote_counts(table: pd.DataFrame, path: Path, lines: np.ndarray, layout: str) -> np.ndarray:
    return np.stack([_int_values(table[c], path, lines, c, layout, 0, None) for c in FERPLUS_VOTES], axis=1)


def _ferplus_labels(names: np.ndarray, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(labels of the kept rows, kept-row mask, exclusions). Rows without an image name never became images in
    Microsoft's data; the others keep their majority label if it is one of the 8 emotions."""
    named = pd.Series(names, dtype=object).str.strip().to_numpy() != ""
    majority = ferplus_majority(votes)
    keep = named & (majority >= 0) & (majority < len(FERPLUS_CLASSES))
    excluded = {_FERPLUS_EMPTY_NAME: int((~named).sum())}
    for code, reason in _FERPLUS_DROPS.items():
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


# ---------------------------------------------------------------------------------------------------------- AffectNet

AFFECTNET_CODES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt", "None", "Uncertain",
                   "No-Face")
_AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                      "expression", "valence", "arousal")
_AFFECTNET_FILES = {"train": "training.csv", "test": "validation.csv"}


def _load_affectnet(dataset: str, root: Path, split: str, cropped: bool | None = None) -> Split:
    """AffectNet, original distribution:

        <root>/Manually_Annotated_file_lists/training.csv     -> train
        <root>/Manually_Annotated_file_lists/validation.csv   -> test (AffectNet's test set is not public; papers,
                                                                 QCS included, report on validation.csv). There is no
                                                                 separate val split: asking for one is an error.
        <root>/Manually_Annotated_Images/<subDirectory_filePath>

    Expression codes 0..10 = Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt, None, Uncertain,
    No-Face; affectnet7 keeps 0-6, affectnet8 keeps 0-7, and the rest are counted in `excluded` by name. Items carry
    their face box (`boxes`) unless the images are already face crops (`cropped`, see `_affectnet_cropped`).
    """
    layout = LAYOUTS["affectnet"]
    if split == "val":
        raise DataError(f"{root}: AffectNet has no separate val split; its validation.csv is the 'test' split here")
    list_file = _require_file(root / "Manually_Annotated_file_lists" / _AFFECTNET_FILES[split], layout)
    image_dir = _require_dir(root / "Manually_Annotated_Images", layout)
    table, lines = _read_table(list_file, _AFFECTNET_COLUMNS, layout)
    rel = table["subDirectory_filePath"].str.strip()
    named = (rel != "").to_numpy()
    if not named.all():
        i = int(np.argmin(named))
        raise DataError(f"{list_file}:{lines[i]}: empty subDirectory_filePath; expected {layout}")
    code = _int_values(table["expression"], list_file, lines, "expression", layout, 0, len(AFFECTNET_CODES) - 1)
    box = np.stack([_int_values(table[c], list_file, lines, c, layout, low, None) for c, low in
                    (("face_x", None), ("face_y", None), ("face_width", 1), ("face_height", 1))], axis=1)
    for c in ("valence", "arousal"):
        _float_values(table[c], list_file, lines, c, layout)
    n_classes = len(DATASET_CLASSES[dataset])
    keep = code < n_classes
    excluded = {f"AffectNet code {c} ({AFFECTNET_CODES[c]})": int(k)
                for c, k in enumerate(np.bincount(code[~keep], minlength=len(AFFECTNET_CODES))) if k}
    base = str(image_dir)
    paths = [Path(f"{base}/{r}") for r in rel[keep]]
    boxes = box[keep]
    if cropped is None and paths:  # (with no items there is nothing to decide)
        cropped = _affectnet_cropped(paths, boxes, image_dir)
    return Split(dataset, split, root, list(DATASET_CLASSES[dataset]), code[keep], paths, None,
                 None if cropped else boxes, excluded=excluded)


def _affectnet_cropped(paths: list[Path], boxes: np.ndarray, image_dir: Path, sample: int = 8, look: int = 32) -> bool:
    """Whether the AffectNet images are already face crops, decided from the first `sample` images that open among
    the first `look` listed (headers only): True if each one's size equals its box's (width, height), False if each
    box lies inside its image; anything else is an error asking for `cropped=True` or `cropped=False`."""
    sizes, chosen = [], []
    for i, p in enumerate(paths[:look]):
        try:
            with Image.open(p) as image:
                sizes.append(image.size)
        except (OSError, ValueError, SyntaxError):
            continue
        chosen.append(i)
        if len(chosen) == sample:
            break
    if not chosen:
        raise DataError(f"{image_dir}: none of the first {min(look, len(paths))} listed images could be opened to tell "
                        f"whether they are face crops; check the images are there, or pass cropped=True or "
                        f"cropped=False")
    size = np.array(sizes)
    x, y, w, h = boxes[chosen].T
    if np.all((size[:, 0] == w) & (size[:, 1] == h)):
        return True
    if np.all((x + w <= size[:, 0]) & (y + h <= size[:, 1])):
        return False
    raise DataError(f"{image_dir}: the first {len(chosen)} images neither match their face boxes' sizes (crops) nor "
                    f"contain their boxes (originals); pass cropped=True or cropped=False")


# ------------------------------------------------------------------------------------------------------------- lists

def _load_list(dataset: str, root: Path, split: str, list_file: str | Path | None = None,
               image_root: str | Path | None = None, classes: str | list[str] | None = None) -> Split:
    """Two line-based layouts that share one reader:

    * generic list (``list``, ``synthfer``; what the SynthFER generator writes)::

          <root>/classes.txt                      one class name per line, in label order
          <root>/train.txt, <root>/test.txt       "relative/path label" lines, 0-based labels, no spaces in paths
          <root>/val.txt                          optional

    * an official QCS list file (``list_file=``): "ImageName label" lines, 0-based labels, names relative to
      ``image_root`` (default: root). A relative ``list_file`` or ``image_root`` is relative to root. The class order
      is ``classes`` (a dataset name such as "rafdb", or a list of names), else <root>/classes.txt. A named dataset
      given ``list_file`` uses its own class order.
    """
    layout = LAYOUTS["qcs-list" if list_file is not None else "list"]
    if list_file is None:
        path = root / f"{split}.txt"
        if split == "val" and not path.exists():
            raise FileNotFoundError(f"{path}: not found, so this list dataset has no val split; expected {layout}")
    else:
        path = root / Path(list_file).expanduser()
    path = _require_file(path, layout)
    names = _list_classes(root, classes, layout)
    image_dir = _require_dir(root / Path(image_root).expanduser() if image_root is not None else root, layout)
    rel, label_text, lines = _read_pairs(path, layout)
    labels = _int_values(label_text, path, lines, "label", layout, 0, len(names) - 1)
    base = str(image_dir)
    return Split(dataset, split, root, names, labels, [Path(f"{base}/{r}") for r in rel], None, None)


def _list_classes(root: Path, classes: str | list[str] | None, layout: str) -> list[str]:
    """The class order: `classes` (dataset name or names) if given, else <root>/classes.txt; both given must agree."""
    file = root / "classes.txt"
    from_file = None
    if file.is_file():
        from_file = [canonical_class_name(line) for line in _read_text(file, layout).split("\n") if line.strip()]
        if not from_file:
            raise DataError(f"{file}: no class names; expected one class name per line, in label order")
    if classes is None:
        if from_file is None:
            raise FileNotFoundError(f"{file}: not found and no classes= given; expected {LAYOUTS['list']}")
        names = from_file
    elif isinstance(classes, str):
        if classes not in DATASET_CLASSES:
            raise ValueError(f"classes={classes!r} is not a dataset with a fixed class order; expected one of "
                             f"{', '.join(DATASET_CLASSES)} or a list of class names")
        names = list(DATASET_CLASSES[classes])
    else:
        names = [canonical_class_name(c) for c in classes]
    if from_file is not None and names != from_file:
        raise DataError(f"{file}: classes {from_file} differ from classes= {names}; expected them to agree")
    duplicates = _repeated(names)
    if duplicates:
        raise DataError(f"{file if classes is None else 'classes='}: class name(s) {', '.join(duplicates)} appear "
                        f"more than once; expected each class once")
    return names


# ------------------------------------------------------------------------------------------------------ ImageFolder

def _load_folder(dataset: str, root: Path, split: str) -> Split:
    """``<root>/<split>/<class name>/**/*.{jpg,jpeg,png,bmp}`` (extensions in any case).

    The classes are the class folders of all the splits present (train, val, test), sorted by folder name, so that
    every split shares one label order; folder names map to canonical names where they match ("Happy", "happiness"
    -> "happy"), else stay as they are. Other files are not images: they are counted in `excluded`.
    """
    layout = LAYOUTS["folder"]
    split_dir = _require_dir(root / split, layout)
    folders = sorted({d.name for s in SPLITS if (root / s).is_dir() for d in (root / s).iterdir() if d.is_dir()})
    names = [canonical_class_name(f) for f in folders]
    duplicates = _repeated(names)
    if duplicates:
        raise DataError(f"{root}: class folders {[f for f in folders if canonical_class_name(f) in duplicates]} "
                        f"name the same class; expected one folder per class in {layout}")
    paths, labels, excluded = [], [], Counter()
    for entry in sorted(split_dir.iterdir()):
        if not entry.is_dir():
            excluded["ImageFolder: file outside a class folder"] += 1
            continue
        for file in sorted(p for p in entry.rglob("*") if p.is_file()):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(file)
                labels.append(folders.index(entry.name))
            else:
                excluded[f"ImageFolder: not an image file ({file.suffix or 'no extension'})"] += 1
    return Split(dataset, split, root, names, np.array(labels, dtype=np.int64), paths, None, None,
                 excluded=dict(excluded))


# ------------------------------------------------------------------------------------------------------------ helpers

_LOADERS = {
    "rafdb": _load_rafdb, "ferplus": _load_ferplus, "affectnet7": _load_affectnet, "affectnet8": _load_affectnet,
    "list": _load_list, "synthfer": _load_list, "folder": _load_folder,
}
_OPTIONS = {
    "rafdb": set(), "ferplus": {"layout"}, "affectnet7": {"cropped"}, "affectnet8": {"cropped"},
    "list": {"list_file", "image_root", "classes"}, "synthfer": {"list_file", "image_root", "classes"},
    "folder": set(),
}
_LAYOUT_KEY = {"rafdb": "rafdb", "affectnet7": "affectnet", "affectnet8": "affectnet", "list": "list",
               "synthfer": "list", "folder": "folder"}


def _repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted(name for name, n in Counter(names).items() if n > 1)


def _require_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found; expected {layout}")
    return path


def _require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: folder not found; expected {layout}")
    return path


def _read_text(path: Path, layout: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); expected {layout}") from None


def _read_table(path: Path, columns: tuple[str, ...], layout: str, header: bool = True):
    """A comma-separated file as strings -> (DataFrame with `columns`, 1-based line number of each row).

    With `header` the first line must name `columns` exactly. Blank lines are skipped (their line numbers are not
    reused). A row with the wrong number of fields is an error naming its line.
    """
    try:
        table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skip_blank_lines=False,
                            encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty; expected {layout}") from None
    except pd.errors.ParserError:
        table = None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); expected {layout}") from None
    if table is None or table.shape[1] != len(columns):
        line, found = _first_wrong_width(path, len(columns))
        raise DataError(f"{path}:{line}: {found} comma-separated fields; expected {len(columns)} "
                        f"({','.join(columns)}) as in {layout}")
    lines = np.arange(1, len(table) + 1)
    if header:
        found = [c.strip() for c in table.iloc[0]]
        if found != list(columns):
            raise DataError(f"{path}:1: header is {','.join(found)}; expected {','.join(columns)} as in {layout}")
        table, lines = table.iloc[1:], lines[1:]
    blank = (table == "").all(axis=1).to_numpy()
    table = table.iloc[~blank].reset_index(drop=True)
    table.columns = list(columns)
    return table, lines[~blank]


def _first_wrong_width(path: Path, width: int) -> tuple[int, int]:
    """Error path of `_read_table`: the first non-blank line whose field count is not `width`."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if row and len(row) != width:
                return reader.line_num, len(row)
    return 1, width  # not reached for files pandas rejects; keeps the message well formed


def _read_pairs(path: Path, layout: str) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """A text file of "name label" lines -> (names, label strings, 1-based line numbers); blank lines skipped,
    anything but exactly two whitespace-separated fields is an error naming the line."""
    text = _read_text(path, layout).split("\n")
    fields = pd.Series(text, dtype=object).str.split()
    width = fields.str.len().to_numpy()
    bad = (width != 0) & (width != 2)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}:{i + 1}: {width[i]} fields in {text[i].strip()[:80]!r}; expected 2 as in {layout}")
    keep = width == 2
    fields = fields[keep]
    return fields.str[0].reset_index(drop=True), fields.str[1].reset_index(drop=True), np.flatnonzero(keep) + 1


def _int_values(values: pd.Series, path: Path, lines: np.ndarray, what: str, layout: str,
                low: int | None, high: int | None) -> np.ndarray:
    """Strings -> int64, each an integer within [low, high]; otherwise an error naming the first bad line."""
    text = values.reset_index(drop=True)
    number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(number) | (number != np.round(number))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}:{lines[i]}: {what} is {text.iloc[i]!r}, not an integer; expected {layout}")
    number = number.astype(np.int64)
    out = np.zeros(len(number), dtype=bool)
    if low is not None:
        out |= number < low
    if high is not None:
        out |= number > high
    if out.any():
        i = int(np.argmax(out))
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise DataError(f"{path}:{lines[i]}: {what} {number[i]} is out of range {span}; expected {layout}")
    return number


def _float_values(values: pd.Series, path: Path, lines: np.ndarray, what: str, layout: str) -> np.ndarray:
    text = values.reset_index(drop=True)
    number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(number)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}:{lines[i]}: {what} is {text.iloc[i]!r}, not a number; expected {layout}")
    return number


def _decode_problem(path: Path) -> str | None:
    """None if the image decodes fully, else a one-line reason."""
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        return "file not found"
    except Exception as error:  # noqa: BLE001 -- any failure to decode means the image cannot be used
        return f"{type(error).__name__}: {error}".replace("\n", " ")
    return None
