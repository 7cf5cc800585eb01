"""The published size of each split of RAF-DB, FERPlus and AffectNet: what `data-report` compares a copy with.

Keys are ``(dataset, split)`` in this project's names: AffectNet's ``validation.csv`` is its ``test`` split here,
FERPlus's Training / PublicTest / PrivateTest are ``train`` / ``val`` / ``test``. Each number's source is in the
comment above it; what could and could not be confirmed is said there too.
"""
from __future__ import annotations

from dataclasses import dataclass

from .sources.classes import AFFECTNET_CLASSES, RAFDB_CLASSES


@dataclass(frozen=True)
class Published:
    """One split's published size: ``counts`` per canonical class name (None where no per-class figure can be
    cited), their ``total``, the ``unit`` counted and the ``source``."""

    counts: dict[str, int] | None
    total: int
    unit: str
    source: str

    def __post_init__(self):
        if self.counts is not None and sum(self.counts.values()) != self.total:
            raise ValueError(f"published counts sum to {sum(self.counts.values())}, not to their total {self.total}")


# RAF-DB basic (Li, Deng & Du, CVPR 2017): 12,271 train and 3,068 test images, the split every RAF-DB paper uses.
# Per class (labels 1-7 = surprise, fear, disgust, happy, sad, anger, neutral): the counts of
# EmoLabel/list_patition_label.txt, as public FER code states them (RAF-DB loaders that print np.unique of the
# labels, class-weight tables); they add up to the two totals. Not read from the RAF-DB site itself, which gives
# no per-class table that could be found.
_RAFDB_SOURCE = ("RAF-DB basic (Li, Deng & Du, CVPR 2017): totals 12,271 / 3,068; per class: the counts of "
                 "list_patition_label.txt as public FER code gives them")
_RAFDB_TRAIN = (1290, 281, 717, 4772, 1982, 705, 2524)
_RAFDB_TEST = (329, 74, 160, 1185, 478, 162, 680)

# AffectNet (Mollahosseini, Hasani & Mahoor, IEEE TAC 2017), manually annotated images. Train: the per-class
# counts of training.csv (codes 0-7) as public AffectNet loaders state them; they add up to 283,901 images for
# the 7 classes and 287,651 with contempt, the totals FER repositories give for AffectNet-7 / -8 (a few papers
# give 287,568 for AffectNet-8: not followed). The paper's own table could not be read here to confirm them.
# Validation (validation.csv, the "test" split here): 500 images per class, 3,500 for 7 classes and 4,000 for 8,
# as the same repositories give.
_AFFECTNET_SOURCE = ("AffectNet (Mollahosseini et al., IEEE TAC 2017), manually annotated: training.csv per class "
                     "as public AffectNet loaders count it (283,901 for 7 classes, 287,651 for 8); validation.csv "
                     "500 per class")
_AFFECTNET_TRAIN = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750)

# FERPlus under the majority protocol: no per-class counts could be found that a source states for this protocol
# (papers give totals that differ with the rule they apply to ties, unknown and NF). What can be cited is the
# number of fer2013.csv rows per Usage, before any protocol: 28,709 Training, 3,589 PublicTest, 3,589 PrivateTest
# (FER2013, Goodfellow et al., ICONIP 2013; the Kaggle challenge's data page), and Microsoft's FERPlus README says
# fer2013new.csv has the same rows in the same order. A copy read from the csv layout accounts for every row
# (kept, excluded by reason, or unreadable), so its rows are compared with these.
_FER2013_SOURCE = ("FER2013 (Goodfellow et al., ICONIP 2013): fer2013.csv rows per Usage; FERPlus's "
                   "fer2013new.csv has the same rows (Microsoft FERPlus README); no per-class majority counts "
                   "could be cited")
_FER2013_ROWS = {"train": 28709, "val": 3589, "test": 3589}


def _table(classes, counts, source) -> Published:
    return Published(dict(zip(classes, counts)), sum(counts), "images", source)


PUBLISHED: dict[tuple[str, str], Published] = {
    ("rafdb", "train"): _table(RAFDB_CLASSES, _RAFDB_TRAIN, _RAFDB_SOURCE),
    ("rafdb", "test"): _table(RAFDB_CLASSES, _RAFDB_TEST, _RAFDB_SOURCE),
    ("affectnet7", "train"): _table(AFFECTNET_CLASSES[:7], _AFFECTNET_TRAIN[:7], _AFFECTNET_SOURCE),
    ("affectnet7", "test"): _table(AFFECTNET_CLASSES[:7], (500,) * 7, _AFFECTNET_SOURCE),
    ("affectnet8", "train"): _table(AFFECTNET_CLASSES, _AFFECTNET_TRAIN, _AFFECTNET_SOURCE),
    ("affectnet8", "test"): _table(AFFECTNET_CLASSES, (500,) * 8, _AFFECTNET_SOURCE),
    **{("ferplus", split): Published(None, rows, "fer2013.csv rows with this Usage, before the majority protocol",
                                     _FER2013_SOURCE) for split, rows in _FER2013_ROWS.items()},
}


def published_counts(dataset: str, split: str) -> Published | None:
    """The published size of ``dataset``'s ``split``, or None where there is none (SynthFER, list, folder)."""
    return PUBLISHED.get((dataset, split))
