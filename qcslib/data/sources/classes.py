"""Class names: the eight canonical emotion names, their other spellings, and the label order of every dataset whose
order is fixed (a new dataset with a fixed order adds its line to `DATASET_CLASSES`), `class_mapping`, which
matches a model's classes to a dataset's by name, and `checkpoint_classes`, which says what a loaded checkpoint's
classes are."""
from __future__ import annotations

from typing import NamedTuple

from ...models.weights import CheckpointError, LoadReport

CLASS_NAMES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
RAFDB_CLASSES = ("surprise", "fear", "disgust", "happy", "sad", "anger", "neutral")  # RAF-DB labels 1..7 -> 0..6
FERPLUS_CLASSES = ("neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt")
AFFECTNET_CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")  # codes 0..7

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


def canonical_class_name(name: str) -> str:
    """The canonical name for `name` when it matches one case-insensitively ("Happy", "happiness" -> "happy");
    otherwise `name` unchanged."""
    low = name.strip().lower()
    if low in CLASS_NAMES:
        return low
    return _ALIASES.get(low, name.strip())


class ClassMapping(NamedTuple):
    """How a model's classes meet a dataset's, matched by canonical name (`class_mapping`)."""

    model_classes: tuple[str, ...]  # the model's classes, in its output order
    data_classes: tuple[str, ...]   # the dataset's classes, in its label order
    shared: tuple[str, ...]         # the classes both have, in the dataset's order
    dropped: tuple[str, ...]        # the dataset's classes the model lacks: their images cannot be scored
    model_only: tuple[str, ...]     # the model's classes the dataset lacks: never predicted when scoring on it

    @property
    def model_columns(self) -> tuple[int, ...]:
        """The model's output index of each shared class."""
        return tuple(self.model_classes.index(name) for name in self.shared)

    @property
    def data_labels(self) -> tuple[int, ...]:
        """The dataset's label of each shared class."""
        return tuple(self.data_classes.index(name) for name in self.shared)

    @property
    def identity(self) -> bool:
        """Whether the model's outputs are the dataset's labels as they are: the same classes in the same order."""
        return self.model_classes == self.data_classes


def class_mapping(model_classes, data_classes) -> ClassMapping:
    """Match a model's classes (in its output order) to a dataset's (in its label order) by name, as
    `canonical_class_name` spells them ("happiness" is "happy"). A one-line ``ValueError`` when either side names a
    class twice, or when fewer than 2 classes are shared (no classification is left to score)."""
    model, data = _canonical(model_classes, "model's"), _canonical(data_classes, "data's")
    shared = tuple(name for name in data if name in model)
    if len(shared) < 2:
        raise ValueError(f"the model's classes ({', '.join(model)}) and the data's ({', '.join(data)}) share "
                         f"{len(shared)} ({', '.join(shared) or 'none'}); scoring needs at least 2 shared classes")
    return ClassMapping(model, data, shared, dropped=tuple(name for name in data if name not in model),
                        model_only=tuple(name for name in model if name not in data))


def checkpoint_classes(report: LoadReport, dataset: str | None, fallback: list[str] | None = None) -> list[str]:
    """A loaded checkpoint's class names, in its output order. The rule, first match wins:

    1. the names it stores (ours do); a ``dataset`` whose ``DATASET_CLASSES`` differ from them is an error
       ("drop --classes/trained_on");
    2. none stored (the official checkpoints): ``DATASET_CLASSES[dataset]``, the order of the dataset it was trained on;
    3. neither: ``fallback`` (evaluation passes the scored split's classes);
    4. none of the three: an error telling the user to pass the dataset name.

    Whichever names are chosen must number ``report.meta["num_classes"]``. Errors are one line: a ``CheckpointError``
    naming ``report.path``, or a ``ValueError`` when ``dataset`` is not a key of ``DATASET_CLASSES``."""
    if dataset is not None and dataset not in DATASET_CLASSES:
        raise ValueError(f"--classes/trained_on must be one of {', '.join(DATASET_CLASSES)}, got {dataset!r}")
    path, n, stored = report.path, report.meta["num_classes"], report.meta.get("classes")
    ask = f"pass the dataset it was trained on as --classes/trained_on {'|'.join(DATASET_CLASSES)}"
    if stored is not None:
        names = list(stored)
        if dataset is not None and list(DATASET_CLASSES[dataset]) != names:
            raise CheckpointError(f"{path}: stores its classes ({', '.join(names)}), which are not {dataset}'s "
                                  f"({', '.join(DATASET_CLASSES[dataset])}); drop --classes/trained_on")
        mismatch = f", but stores {len(names)} class names ({', '.join(names)})"
    elif dataset is not None:
        names = list(DATASET_CLASSES[dataset])
        mismatch = f", but --classes/trained_on {dataset} names {len(names)} ({', '.join(names)})"
    elif fallback is not None:
        names = list(fallback)
        mismatch = (f" and stores no class names, so it is taken to use the scored split's {len(names)} "
                    f"({', '.join(names)}); {ask}, to match its classes by name")
    else:
        raise CheckpointError(f"{path}: stores no class names (an official checkpoint); {ask}")
    if len(names) != n:
        raise CheckpointError(f"{path}: has {n} classes{mismatch}")
    return names


def _canonical(classes, whose: str) -> tuple[str, ...]:
    """``classes`` by their canonical names; a one-line ``ValueError`` if two of them name one class."""
    names = tuple(canonical_class_name(str(c)) for c in classes)
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"the {whose} classes ({', '.join(map(str, classes))}) name {', '.join(twice)} twice")
    return names
