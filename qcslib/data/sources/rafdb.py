"""RAF-DB basic in its official layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .classes import RAFDB_CLASSES
from .files import int_values, read_pairs, require_dir, require_file
from .split import DataError, Split

LAYOUT = ("<root>/EmoLabel/list_patition_label.txt with 'train_00001.jpg 5' lines (labels 1-7) "
          "and images <root>/Image/aligned/<stem>_aligned.jpg")


def load(dataset: str, root: Path, split: str) -> Split:
    """RAF-DB basic, official layout:

        <root>/EmoLabel/list_patition_label.txt   lines "train_00001.jpg 5" / "test_0001.jpg 1", labels 1..7 =
                                                  Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral
        <root>/Image/aligned/train_00001_aligned.jpg

    The split is the name's prefix (train_/test_); RAF-DB has no val split.
    """
    if split == "val":
        raise DataError(f"{root}: RAF-DB has no val split (its images are train_* or test_*); ask for 'train' or "
                        f"'test'")
    label_file = require_file(root / "EmoLabel" / "list_patition_label.txt", LAYOUT)
    image_dir = require_dir(root / "Image" / "aligned", LAYOUT)
    names, label_text, lines = read_pairs(label_file, LAYOUT)
    prefix_ok = names.str.startswith("train_") | names.str.startswith("test_")
    if not prefix_ok.all():
        i = int(np.argmin(prefix_ok.to_numpy()))
        raise DataError(f"{label_file}:{lines[i]}: image name {names.iloc[i]!r} starts with neither train_ nor test_; "
                        f"expected {LAYOUT}")
    labels = int_values(label_text, label_file, lines, "label", LAYOUT, 1, len(RAFDB_CLASSES)) - 1
    mine = names.str.startswith(split + "_").to_numpy()
    stems = names[mine].str.replace(r"\.[^./]*$", "", regex=True)
    base = str(image_dir)
    return Split(dataset, split, root, list(RAFDB_CLASSES), labels[mine],
                 [Path(f"{base}/{s}_aligned.jpg") for s in stems], None, None)
