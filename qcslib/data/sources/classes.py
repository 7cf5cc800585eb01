"""Class names: the eight canonical emotion names, their other spellings, and the label order of every dataset whose
order is fixed (a new dataset with a fixed order adds its line to `DATASET_CLASSES`)."""
from __future__ import annotations

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
