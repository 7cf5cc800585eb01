"""Classification metrics from scikit-learn: accuracy, mean class accuracy, macro-F1, confusion, per class.

Mean class accuracy is the mean of per-class recalls (scikit-learn's balanced accuracy), the second
number RAF-DB papers report. Classes absent from ``y_true`` are left out of it and of macro-F1, with
scikit-learn's rules; the confusion matrix always has one row and column per class.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

# Test accuracy (%) the authors report for QCS: the official README's "Checkpoints" table (github.com/birdwcp/QCS,
# README.md at commit 293f28f), its "QCS" rows: RAF-DB 92.50, FERPlus 91.41, AffectNet-7 67.94, AffectNet-8 64.30.
# The paper's own tables (arXiv 2411.01988) could not be read here; paperswithcode lists 93.02 (RAF-DB) and 91.85
# (FERPlus), the README's QCS‡ rows (qcslib.paper.PAPER_PRETRAINED), 67.94 and 64.4 (AffectNet-7, -8) for it.
PAPER_ACCURACY = {"rafdb": 92.50, "ferplus": 91.41, "affectnet7": 67.94, "affectnet8": 64.30}


def classification_metrics(y_true, y_pred, classes: list[str] | tuple[str, ...]) -> dict:
    """→ ``{accuracy, mean_class_accuracy, macro_f1, n, confusion (list of rows: true × predicted),
    per_class: {name: {precision, recall, f1, support}}}``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"need two equal, non-empty 1-D label arrays, got {y_true.shape} and {y_pred.shape}")
    labels = np.arange(len(classes))
    present = np.unique(y_true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined precision of never-predicted classes is reported as 0
        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "mean_class_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
            "n": int(len(y_true)),
            "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
            "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                          for name, p, r, f, s in zip(classes, precision, recall, f1, support)},
        }


def au_oracle(meta_csv, train_split: str = "train", test_split: str = "test") -> dict:
    """SynthFER's ceiling: a logistic regression on the true action-unit intensities of ``meta.csv``, fitted to
    the train rows' given labels (label noise included, as the models see them) and scored on the test rows.
    No image model can know more about the expression than these intensities →
    ``{train_accuracy, test_accuracy, n_train, n_test, features}``."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    meta = pd.read_csv(meta_csv)
    features = [c for c in meta.columns if c.startswith("au") and c[2:].isdigit()]
    if not features:
        raise ValueError(f"{meta_csv}: no AU intensity columns (au01, au02, ...); is it a SynthFER meta.csv?")
    train, test = (meta[meta["split"] == s] for s in (train_split, test_split))
    for name, rows in ((train_split, train), (test_split, test)):
        if rows.empty:
            raise ValueError(f"{meta_csv}: no rows of split {name!r}")
    model = LogisticRegression(max_iter=2000).fit(train[features], train["label"])
    return {"train_accuracy": float(model.score(train[features], train["label"])),
            "test_accuracy": float(model.score(test[features], test["label"])),
            "n_train": len(train), "n_test": len(test), "features": len(features)}
