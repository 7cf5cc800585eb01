"""AffectNet (7 or 8 classes) in its original distribution."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .classes import DATASET_CLASSES
from .files import float_values, int_values, read_table, require_dir, require_file
from .split import DataError, Split

LAYOUT = ("<root>/Manually_Annotated_file_lists/training.csv and validation.csv (subDirectory_filePath,face_x,"
          "face_y,face_width,face_height,facial_landmarks,expression,valence,arousal) and images under "
          "<root>/Manually_Annotated_Images/")

AFFECTNET_CODES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt", "None", "Uncertain",
                   "No-Face")
_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
            "expression", "valence", "arousal")
_FILES = {"train": "training.csv", "test": "validation.csv"}


def load(dataset: str, root: Path, split: str, cropped: bool | None = None) -> Split:
    """AffectNet, original distribution:

        <root>/Manually_Annotated_file_lists/training.csv     -> train
        <root>/Manually_Annotated_file_lists/validation.csv   -> test (AffectNet's test set is not public; papers,
                                                                 QCS included, report on validation.csv). There is no
                                                                 separate val split: asking for one is an error.
        <root>/Manually_Annotated_Images/<subDirectory_filePath>

    Expression codes 0..10 = Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt, None, Uncertain,
    No-Face; affectnet7 keeps 0-6, affectnet8 keeps 0-7, and the rest are counted in `excluded` by name. Items carry
    their face box (`boxes`) unless the images are already face crops (`cropped`, see `_already_cropped`).
    """
    if split == "val":
        raise DataError(f"{root}: AffectNet has no separate val split; its validation.csv is the 'test' split here")
    list_file = require_file(root / "Manually_Annotated_file_lists" / _FILES[split], LAYOUT)
    image_dir = require_dir(root / "Manually_Annotated_Images", LAYOUT)
    table, lines = read_table(list_file, _COLUMNS, LAYOUT)
    rel = table["subDirectory_filePath"].str.strip()
    named = (rel != "").to_numpy()
    if not named.all():
        i = int(np.argmin(named))
        raise DataError(f"{list_file}:{lines[i]}: empty subDirectory_filePath; expected {LAYOUT}")
    code = int_values(table["expression"], list_file, lines, "expression", LAYOUT, 0, len(AFFECTNET_CODES) - 1)
    box = np.stack([int_values(table[c], list_file, lines, c, LAYOUT, low, None) for c, low in
                    (("face_x", None), ("face_y", None), ("face_width", 1), ("face_height", 1))], axis=1)
    for c in ("valence", "arousal"):
        float_values(table[c], list_file, lines, c, LAYOUT)
    n_classes = len(DATASET_CLASSES[dataset])
    keep = code < n_classes
    excluded = {f"AffectNet code {c} ({AFFECTNET_CODES[c]})": int(k)
                for c, k in enumerate(np.bincount(code[~keep], minlength=len(AFFECTNET_CODES))) if k}
    base = str(image_dir)
    paths = [Path(f"{base}/{r}") for r in rel[keep]]
    boxes = box[keep]
    if cropped is None and paths:  # (with no items there is nothing to decide)
        cropped = _already_cropped(paths, boxes, image_dir)
    return Split(dataset, split, root, list(DATASET_CLASSES[dataset]), code[keep], paths, None,
                 None if cropped else boxes, excluded=excluded)


def _already_cropped(paths: list[Path], boxes: np.ndarray, image_dir: Path, sample: int = 8, look: int = 32) -> bool:
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
