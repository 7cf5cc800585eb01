"""List files: the generic ``{train,val,test}.txt`` + ``classes.txt`` layout (what the SynthFER generator writes) and
the official QCS list files (``ImageName label``)."""
from __future__ import annotations

from pathlib import Path

from .classes import DATASET_CLASSES, canonical_class_name
from .files import int_values, read_pairs, read_text, repeated, require_dir, require_file
from .split import DataError, Split

LAYOUT = ("<root>/train.txt, <root>/test.txt (optionally <root>/val.txt) with 'relative/path label' lines "
          "(0-based labels, no spaces in paths) and <root>/classes.txt with one class name per line")
QCS_LAYOUT = "a list file of 'ImageName label' lines (0-based labels) with image names relative to image_root"


def load(dataset: str, root: Path, split: str, list_file: str | Path | None = None,
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
    layout = QCS_LAYOUT if list_file is not None else LAYOUT
    if list_file is None:
        path = root / f"{split}.txt"
        if split == "val" and not path.exists():
            raise FileNotFoundError(f"{path}: not found, so this list dataset has no val split; expected {layout}")
    else:
        path = root / Path(list_file).expanduser()
    path = require_file(path, layout)
    names = _classes(root, classes, layout)
    image_dir = require_dir(root / Path(image_root).expanduser() if image_root is not None else root, layout)
    rel, label_text, lines = read_pairs(path, layout)
    labels = int_values(label_text, path, lines, "label", layout, 0, len(names) - 1)
    base = str(image_dir)
    return Split(dataset, split, root, names, labels, [Path(f"{base}/{r}") for r in rel], None, None)


def _classes(root: Path, classes: str | list[str] | None, layout: str) -> list[str]:
    """The class order: `classes` (dataset name or names) if given, else <root>/classes.txt; both given must agree."""
    file = root / "classes.txt"
    from_file = None
    if file.is_file():
        from_file = [canonical_class_name(line) for line in read_text(file, layout).split("\n") if line.strip()]
        if not from_file:
            raise DataError(f"{file}: no class names; expected one class name per line, in label order")
    if classes is None:
        if from_file is None:
            raise FileNotFoundError(f"{file}: not found and no classes= given; expected {LAYOUT}")
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
    duplicates = repeated(names)
    if duplicates:
        raise DataError(f"{file if classes is None else 'classes='}: class name(s) {', '.join(duplicates)} appear "
                        f"more than once; expected each class once")
    return names
