"""Image folders: ``<root>/<split>/<class name>/`` (torchvision's ImageFolder, one per split)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .classes import canonical_class_name
from .files import repeated, require_dir
from .split import SPLITS, DataError, Split

LAYOUT = "<root>/<split>/<class name>/*.jpg|jpeg|png|bmp"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def load(dataset: str, root: Path, split: str) -> Split:
    """``<root>/<split>/<class name>/**/*.{jpg,jpeg,png,bmp}`` (extensions in any case).

    The classes are the class folders of all the splits present (train, val, test), sorted by folder name, so that
    every split shares one label order; folder names map to canonical names where they match ("Happy", "happiness"
    -> "happy"), else stay as they are. Other files are not images: they are counted in `excluded`.
    """
    split_dir = require_dir(root / split, LAYOUT)
    folders = sorted({d.name for s in SPLITS if (root / s).is_dir() for d in (root / s).iterdir() if d.is_dir()})
    names = [canonical_class_name(f) for f in folders]
    duplicates = repeated(names)
    if duplicates:
        raise DataError(f"{root}: class folders {[f for f in folders if canonical_class_name(f) in duplicates]} "
                        f"name the same class; expected one folder per class in {LAYOUT}")
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
