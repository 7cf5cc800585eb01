"""Quadruplet sampling: (anchor, positive, negative, negative2) indices for one epoch, vectorised
(``draw_quadruplets``), and the ``QuadrupletSampler`` that hands them to a ``DataLoader`` epoch by epoch;
``ImageSampler`` does the same for single images (distillation).

For an anchor of class c: the positive is another image of class c; the negative an image of
another class c'; negative2 another image of class c'. The official sampler filters a pandas
table for every sample; here each draw is a few array operations over per-class index arrays.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

NEGATIVES = ("data", "balanced")


class SamplingError(ValueError):
    """Labels that cannot give quadruplets."""


class ClassIndex:
    """Images grouped by class: ``order`` lists image indices class by class, and class ``c`` owns
    ``order[start[c] : start[c] + count[c]]``; ``rank[i]`` is image i's position inside its class."""

    def __init__(self, labels: np.ndarray, num_classes: int):
        self.labels = labels
        self.order = np.argsort(labels, kind="stable")
        self.count = np.bincount(labels, minlength=num_classes)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self.rank = np.empty_like(self.order)
        self.rank[self.order] = np.arange(len(labels)) - self.start[labels[self.order]]

    def other_in_class(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each image, a uniformly drawn different image of its class: draw r ∈ [0, n_c − 1)
        and skip the image's own position (r ≥ rank → r + 1)."""
        c = self.labels[images]
        r = rng.integers(0, self.count[c] - 1)
        r += r >= self.rank[images]
        return self.order[self.start[c] + r]

    def in_class(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn image of each given class."""
        return self.order[self.start[classes] + rng.integers(0, self.count[classes])]

    def other_class_image(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform over all images of other classes: draw r ∈ [0, N − n_c) and skip class c's block."""
        c = self.labels[images]
        r = rng.integers(0, len(self.labels) - self.count[c])
        r += np.where(r >= self.start[c], self.count[c], 0)
        return self.order[r]

    def other_class(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A class drawn uniformly among the other classes that have images."""
        present = np.flatnonzero(self.count)
        position = np.searchsorted(present, self.labels[images])
        r = rng.integers(0, len(present) - 1, size=len(images))
        return present[r + (r >= position)]


def draw_quadruplets(labels: Sequence[int] | np.ndarray, seed: int, epoch: int = 0, negatives: str = "data",
                     classes: Sequence[str] | None = None, oversample: bool = False,
                     num_anchors: int | None = None, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """One epoch of quadruplets → int64 array (M, 4) of (anchor, positive, negative, negative2) indices.

    - anchors: every image once, shuffled (``num_anchors`` < N: the first ones; > N: shuffled passes
      over all images, one after another, cut at ``num_anchors``); with ``oversample`` (AffectNet),
      ``num_anchors`` draws (default N) with replacement and probability ∝ 1 / n_class, so each class is
      equally likely;
    - ``negatives="data"``: the negative is uniform over all other-class images (official
      RAF-DB/FERPlus sampler); ``"balanced"``: its class is uniform over the other classes first
      (official AffectNet sampler);
    - the same (seed, epoch) gives the same epoch on every rank; rank r keeps rows r, r + W, …,
      after wrapping around so that every rank gets ``ceil(M / W)`` rows, as DistributedSampler does.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if labels.ndim != 1 or len(labels) == 0 or labels.min() < 0:
        raise SamplingError(f"labels must be a non-empty 1-D array of class indices ≥ 0, got shape {labels.shape}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    num_classes = max(len(classes or ()), int(labels.max()) + 1)
    index = ClassIndex(labels, num_classes)
    name = (lambda c: classes[c]) if classes else str
    if few := [f"{name(c)!r} ({n})" for c, n in enumerate(index.count) if n == 1]:
        raise SamplingError(f"quadruplets need at least 2 images per class, but class {', '.join(few)} has fewer")
    if np.count_nonzero(index.count) < 2:
        raise SamplingError("quadruplets need at least 2 classes with images")

    rng = np.random.default_rng([seed, epoch])
    if oversample:
        weights = 1.0 / index.count[labels]
        anchors = rng.choice(len(labels), size=num_anchors or len(labels), p=weights / weights.sum())
    else:
        passes = -(-(num_anchors or 1) // len(labels))
        anchors = np.concatenate([rng.permutation(len(labels)) for _ in range(passes)])[:num_anchors]
    positives = index.other_in_class(anchors, rng)
    if negatives == "data":
        negs = index.other_class_image(anchors, rng)
    else:
        negs = index.in_class(index.other_class(anchors, rng), rng)
    quads = np.stack([anchors, positives, negs, index.other_in_class(negs, rng)], axis=1)
    per_rank = -(-len(quads) // world_size)
    quads = np.resize(quads, (per_rank * world_size, 4))  # wraps around to pad
    return quads[rank::world_size]


class QuadrupletSampler(Sampler):
    """Yields this rank's quadruplets of the current epoch as ``(a, p, n, n2, seed)``; ``set_epoch`` draws
    the next epoch. Item i of epoch e gets the augmentation seed ``(s_e + i) mod 2⁶³`` with ``s_e`` drawn
    from ``SeedSequence([seed, e])``, so augmentation is a function of (seed, epoch, position) and a run can
    restart mid-epoch: ``set_epoch(e, start=k)`` skips the first k items. Keyword arguments go to
    ``draw_quadruplets`` (negatives, classes, oversample, num_anchors, rank, world_size)."""

    def __init__(self, labels: np.ndarray, seed: int = 0, **options):
        self.labels, self.seed, self.options = np.asarray(labels), seed, options
        self.set_epoch(0)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        self.quads = draw_quadruplets(self.labels, self.seed, epoch, **self.options)
        self.item_seeds = item_seeds(self.seed, epoch, self.options.get("rank", 0), len(self.quads))

    def __len__(self) -> int:
        return len(self.quads) - self.start

    def __iter__(self) -> Iterator[tuple[int, int, int, int, int]]:
        rows = self.quads[self.start:].tolist()
        return (tuple(row) + (int(s),) for row, s in zip(rows, self.item_seeds[self.start:]))


def item_seeds(seed: int, epoch: int, rank: int, n: int) -> np.ndarray:
    """The augmentation seeds of a rank's ``n`` items of an epoch: ``(s_e + rank · n + i) mod 2⁶³`` for item i,
    ``s_e`` drawn from ``SeedSequence([seed, epoch])``: distinct over the ranks' items and the positions."""
    base = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])
    return (base + rank * n + np.arange(n, dtype=object)) % 2 ** 63


class ImageSampler(Sampler):
    """Yields this rank's images of the current epoch as ``(index, seed)``: every image once, in an order drawn
    from ``(seed, epoch)``, wrapped around to a multiple of ``world_size`` and dealt rank r the positions r, r + W,
    … (as DistributedSampler). Seeds and ``set_epoch(e, start=k)`` as in ``QuadrupletSampler``."""

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.set_epoch(0)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        self.images = np.resize(order, -(-self.n // self.world_size) * self.world_size)[self.rank::self.world_size]
        self.item_seeds = item_seeds(self.seed, epoch, self.rank, len(self.images))

    def __len__(self) -> int:
        return len(self.images) - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((int(i), int(s)) for i, s in zip(self.images[self.start:], self.item_seeds[self.start:]))
