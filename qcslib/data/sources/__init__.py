"""Dataset roots -> one split's items, labels and class names.

`load_split(dataset, root, split)` reads a dataset in its official layout and returns a `Split`: the images (paths, or
pixels for FERPlus's csv), integer labels in the dataset's own label order, the canonical names of those labels, and a
record of everything the dataset's protocol left out. `verify_images` decodes every image and moves unreadable ones to
`Split.skipped`; `read_image` returns one item as an RGB PIL image.

Supported layouts (`LAYOUTS` holds the one-line form used in error messages), one module each:

* ``rafdb`` (`rafdb`): RAF-DB basic, ``EmoLabel/list_patition_label.txt`` and ``Image/aligned/``.
* ``ferplus`` (`ferplus`): Microsoft's ``fer2013.csv`` + ``fer2013new.csv``, or the ``FER2013Train|Valid|Test``
  folders that Microsoft's ``generate_training_data.py`` writes; labels by the FERPlus majority protocol.
* ``affectnet7`` / ``affectnet8`` (`affectnet`): AffectNet's ``Manually_Annotated_file_lists`` and
  ``Manually_Annotated_Images``.
* ``list`` / ``synthfer`` (`lists`): ``{train,val,test}.txt`` + ``classes.txt`` (what the SynthFER generator writes).
* ``folder`` (`folder`): ``<root>/<split>/<class name>/*.jpg``.
* the official QCS list files (``ImageName label``, `lists`): pass ``list_file=`` (and ``image_root=``) to ``list``
  or to a named dataset, which then fixes the class order.

`split` holds the `Split` and what is done to one, `files` the readers the loaders share, `classes` the class names.
A new dataset is a module with a ``load(dataset, root, split, **options)`` function and one line in `_SOURCES`.

Nothing is dropped silently: protocol exclusions are counted in `Split.excluded`, unreadable images are listed in
`Split.skipped`, and malformed input is an error naming the file, the line and the expected layout.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from . import affectnet, ferplus, folder, lists, rafdb
from .affectnet import AFFECTNET_CODES
from .classes import (AFFECTNET_CLASSES, CLASS_NAMES, DATASET_CLASSES, FERPLUS_CLASSES, RAFDB_CLASSES,
                      canonical_class_name)
from .ferplus import FERPLUS_VOTES, ferplus_majority
from .folder import IMAGE_EXTENSIONS
from .split import SPLITS, DataError, Split, hold_out, read_image, require_whole, verify_images

__all__ = [
    "CLASS_NAMES", "RAFDB_CLASSES", "FERPLUS_CLASSES", "AFFECTNET_CLASSES", "DATASETS", "DATASET_CLASSES", "SPLITS",
    "LAYOUTS", "FERPLUS_VOTES", "AFFECTNET_CODES", "IMAGE_EXTENSIONS", "DataError", "Split", "load_split",
    "unknown_options", "hold_out", "verify_images", "require_whole", "read_image", "canonical_class_name",
    "ferplus_majority",
]

LAYOUTS = {
    "rafdb": rafdb.LAYOUT,
    "ferplus-csv": ferplus.CSV_LAYOUT,
    "ferplus-folders": ferplus.FOLDERS_LAYOUT,
    "affectnet": affectnet.LAYOUT,
    "list": lists.LAYOUT,
    "qcs-list": lists.QCS_LAYOUT,
    "folder": folder.LAYOUT,
}


class _Source(NamedTuple):
    """How to read one dataset: its loader, the options the loader takes, and the layout its root holds."""

    load: Callable[..., Split]      # (dataset, root: Path, split, **options) -> Split
    options: frozenset[str]
    layout: str


_LIST_OPTIONS = frozenset({"list_file", "image_root", "classes"})
_SOURCES = {
    "rafdb": _Source(rafdb.load, frozenset(), rafdb.LAYOUT),
    "ferplus": _Source(ferplus.load, frozenset({"layout"}), ferplus.LAYOUT),
    "affectnet7": _Source(affectnet.load, frozenset({"cropped"}), affectnet.LAYOUT),
    "affectnet8": _Source(affectnet.load, frozenset({"cropped"}), affectnet.LAYOUT),
    "list": _Source(lists.load, _LIST_OPTIONS, lists.LAYOUT),
    "folder": _Source(folder.load, frozenset(), folder.LAYOUT),
    "synthfer": _Source(lists.load, _LIST_OPTIONS, lists.LAYOUT),
}
DATASETS = tuple(_SOURCES)
# A dataset with a fixed class order reads an official QCS list file instead of its own layout when given one.
_QCS_LIST_OPTIONS = frozenset({"list_file", "image_root"})


def load_split(dataset: str, root: str | Path, split: str = "train", **options) -> Split:
    """Read one split of `dataset` under `root` (see the module docstring and `LAYOUTS` for each layout).

    Options: ``list_file`` and ``image_root`` (``list``/``synthfer``, or a dataset with a fixed class order, which
    then reads that official QCS list file instead of its official layout, in its own class order), ``classes``
    (``list``/``synthfer``: a dataset name or a list of class names), ``layout``
    (``ferplus``: ``"csv"`` or ``"folders"``; default: whichever exists, csv first) and ``cropped`` (AffectNet:
    whether the images are already face crops; default None decides from the first images, see
    `affectnet._already_cropped`).
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
        raise FileNotFoundError(f"{root}: dataset root not found; expected {_SOURCES[dataset].layout}")
    if qcs_list:
        return lists.load(dataset, root, split, classes=dataset, **options)
    return _SOURCES[dataset].load(dataset, root, split, **options)


def unknown_options(dataset: str, options: dict) -> str | None:
    """What is wrong with ``load_split``'s ``options`` for ``dataset`` (the unknown ones and the known ones), or None."""
    qcs_list = dataset in DATASET_CLASSES and options.get("list_file") is not None
    allowed = _QCS_LIST_OPTIONS if qcs_list else _SOURCES[dataset].options
    unknown = sorted(set(options) - allowed)
    return f"unknown option(s) {', '.join(unknown)}; it takes {', '.join(sorted(allowed)) or 'none'}" if unknown else None
