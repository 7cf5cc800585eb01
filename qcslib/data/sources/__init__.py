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

`split` holds the `Split` and what is done to one, `files` the readers the loaders share, `classes` the class names,
`class_mapping` (a model's classes matched to a dataset's by name, for scoring across datasets) and
`checkpoint_classes` (a loaded checkpoint's class names: stored, or those of the dataset it was trained on).
A new dataset is a module with a ``load(dataset, root, split, **options)`` function and one line in `_SOURCES`.

Nothing is dropped silently: protocol exclusions are counted in `Split.excluded`, unreadable images are listed in
`Split.skipped`, and malformed input is an error naming the file, the line and the expected layout.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple, get_type_hints

from ...typed import checked
from . import affectnet, ferplus, folder, lists, rafdb
from .affectnet import AFFECTNET_CODES
from .classes import (AFFECTNET_CLASSES, CLASS_NAMES, DATASET_CLASSES, FERPLUS_CLASSES, RAFDB_CLASSES, ClassMapping,
                      canonical_class_name, checkpoint_classes, class_mapping)
from .ferplus import FERPLUS_VOTES, ferplus_majority
from .folder import IMAGE_EXTENSIONS
from .split import SPLITS, DataError, Split, hold_out, read_image, require_whole, verify_images

__all__ = [
    "CLASS_NAMES", "RAFDB_CLASSES", "FERPLUS_CLASSES", "AFFECTNET_CLASSES", "DATASETS", "DATASET_CLASSES", "SPLITS",
    "LAYOUTS", "FERPLUS_VOTES", "AFFECTNET_CODES", "IMAGE_EXTENSIONS", "DataError", "Split", "DataOptions",
    "load_split", "available_splits", "hold_out", "verify_images", "require_whole", "read_image",
    "canonical_class_name", "ClassMapping", "class_mapping", "checkpoint_classes", "ferplus_majority",
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


def _source(dataset: str) -> _Source:
    """How to read ``dataset``; a one-line ``ValueError`` if it is none of `DATASETS`."""
    if dataset not in _SOURCES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return _SOURCES[dataset]


@dataclass(frozen=True)
class DataOptions:
    """The options of `load_split`, typed; None leaves an option at its loader's default. Each comment below says
    which datasets take the option; a dataset with a fixed class order given ``list_file`` takes only ``list_file``
    and ``image_root``. A path may be given as a ``Path`` and is kept as ``str``; class names may be given as a list
    and are kept as a tuple, so that options compare (and hash) by value.

    ``DataOptions.from_dict("ferplus", {"layout": "folders"})`` checks a mapping (a profile's ``data_options``);
    ``load_split(dataset, root, split, **options.to_dict())`` reads with them.
    """

    list_file: str | None = None      # list/synthfer, or a dataset with a fixed class order: an official QCS list
                                      # file ('ImageName label' lines), relative to the root
    image_root: str | None = None     # with list_file: where its image names start, relative to the root (default it)
    classes: str | tuple[str, ...] | None = None  # list/synthfer: the class order, a dataset name or class names
    layout: str | None = None         # ferplus: "csv" or "folders" (default: whichever exists, csv first)
    cropped: bool | None = None       # affectnet7/8: whether the images are face crops (default: decided from them)

    def __post_init__(self):
        for name in ("list_file", "image_root"):
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))

    @classmethod
    def from_dict(cls, dataset: str, mapping) -> DataOptions:
        """``mapping`` (a profile's ``data_options``, ``load_split``'s keyword arguments) as ``dataset``'s options,
        checked as `check` does; a key that names no option, or one ``dataset`` does not take (even with the value
        None), is a one-line ``TypeError`` too."""
        given = dict(mapping)
        _refuse_others(dataset, given, given.get("list_file"))
        return cls(**given).check(dataset)

    def check(self, dataset: str) -> DataOptions:
        """``self``, if ``dataset`` takes every option set here and each has its annotated type; else a one-line
        ``TypeError`` naming the option, the dataset and what is expected (``ValueError`` for an unknown dataset)."""
        given = self.to_dict()
        _refuse_others(dataset, given, self.list_file)
        hints = get_type_hints(type(self))
        for name in given:
            try:
                checked(name, getattr(self, name), hints[name])
            except TypeError as e:
                raise TypeError(f"data_options for {dataset}: {e}") from None
        return self

    def to_dict(self) -> dict:
        """The options set here (those not None), as plain values (class names as a list): what ``load_split``
        takes as keyword arguments and what a profile's ``data_options`` holds."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items() if v is not None}


def _refuse_others(dataset: str, names, list_file) -> None:
    """A one-line ``TypeError`` if ``names`` holds a name that is no `DataOptions` field, or an option that
    ``dataset`` (reading ``list_file`` or not) does not take; a ``ValueError`` if ``dataset`` is unknown."""
    reads_list = dataset in DATASET_CLASSES and list_file is not None
    allowed = _QCS_LIST_OPTIONS if reads_list else _source(dataset).options
    takes = ", ".join(sorted(allowed)) or "none"
    if unknown := sorted(set(names) - {f.name for f in fields(DataOptions)}):
        raise TypeError(f"data_options for {dataset}: unknown option(s) {', '.join(unknown)}; it takes {takes}")
    if others := sorted(set(names) - allowed):
        reading = f"{dataset} reading a list_file" if reads_list else dataset
        raise TypeError(f"data_options for {dataset}: option(s) {', '.join(others)} do not apply to {reading}; it "
                        f"takes {takes}")


def available_splits(dataset: str, root: str | Path) -> tuple[str, ...]:
    """The splits of `dataset` under `root`, in `SPLITS` order: RAF-DB and AffectNet train and test (they have no
    val split); FERPlus all three; a list root train and test, and val if it has val.txt; a folder root the split
    folders it has. Whether they load is for `load_split` to say."""
    _source(dataset)
    root = Path(root).expanduser()
    if dataset == "ferplus":
        return SPLITS
    if dataset == "folder":
        return tuple(s for s in SPLITS if (root / s).is_dir()) or ("train", "test")  # none: load_split says so
    if dataset in ("list", "synthfer") and (root / "val.txt").is_file():
        return SPLITS
    return ("train", "test")


def load_split(dataset: str, root: str | Path, split: str = "train", **options) -> Split:
    """Read one split of `dataset` under `root` (see the module docstring and `LAYOUTS` for each layout).

    Options (`DataOptions`, checked by ``DataOptions.from_dict``): ``list_file`` and ``image_root``
    (``list``/``synthfer``, or a dataset with a fixed class order, which then reads that official QCS list file
    instead of its official layout, in its own class order), ``classes`` (``list``/``synthfer``: a dataset name or
    a list of class names), ``layout`` (``ferplus``: ``"csv"`` or ``"folders"``; default: whichever exists, csv
    first) and ``cropped`` (AffectNet: whether the images are already face crops; default None decides from the
    first images, see `affectnet._already_cropped`).
    """
    source = _source(dataset)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    options = DataOptions.from_dict(dataset, options)
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root not found; expected {source.layout}")
    if dataset in DATASET_CLASSES and options.list_file is not None:
        return lists.load(dataset, root, split, classes=dataset, **options.to_dict())
    return source.load(dataset, root, split, **options.to_dict())
