"""`Split`, what every loader returns, and what is done to one: hold out a val part, verify its images, require it
whole, read one item as an image."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")


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
    skipped: list[dict] = field(default_factory=list)    # [{"path", "class", "reason"}] unreadable images
                                                         # (verify_images)
    excluded: dict[str, int] = field(default_factory=dict)  # protocol exclusions, reason -> count
    names: list[str] | None = None  # with `pixels`: a stable name per item (FERPlus "fer2013.csv:LINE"); else None

    def __post_init__(self):
        n = len(self.labels)
        sizes = {"paths": self.paths, "pixels": self.pixels, "boxes": self.boxes, "names": self.names}
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
                       boxes=None if self.boxes is None else self.boxes[idx],
                       names=None if self.names is None else [self.names[i] for i in idx])

    def counts(self) -> dict[str, int]:
        """Class name -> number of items, every class listed (0 where it has none)."""
        n = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(k) for name, k in zip(self.classes, n)}


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
    """Decode every image fully; return a new Split without the unreadable ones, which go to `skipped` with their
    class name and the reason. One warning gives the count. Splits that hold pixels have nothing to decode and come
    back as a copy."""
    if split.paths is None:
        return replace(split, skipped=list(split.skipped), excluded=dict(split.excluded))
    reasons = [_decode_problem(p) for p in split.paths]
    keep = np.array([r is None for r in reasons], dtype=bool)
    skipped = list(split.skipped) + [{"path": str(p), "class": split.classes[k], "reason": r}
                                     for p, k, r in zip(split.paths, split.labels, reasons) if r]
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
