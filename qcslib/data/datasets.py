"""PyTorch datasets over a ``Split``: single images for evaluation, quadruplets for training.

Quadruplets come from a sampler (``quadruplets.QuadrupletSampler``), not from the dataset, so that a
new epoch's draw reaches the loader's worker processes (persistent ones too) and each DDP rank
gets its own shard, as with ``DistributedSampler``::

    sampler = QuadrupletSampler(split.labels, seed=0, rank=rank, world_size=world)
    loader = DataLoader(QuadrupletDataset(split, transform), batch_size=24, sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for a, p, n, n2, label, neg_label in loader: ...

The sampler also hands each item an augmentation seed, so that a run can stop and restart mid-epoch
and get the same images (see ``QuadrupletSampler``).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .sources import Split, read_image


class _SplitImages(Dataset):
    def __init__(self, split: Split, transform: Callable, cache: np.ndarray | None = None):
        if cache is not None and len(cache) != len(split):
            raise ValueError(f"the image cache holds {len(cache)} images, the split {len(split)}")
        self.split, self.transform, self.cache = split, transform, cache

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.cache[index]) if self.cache is not None else read_image(self.split, index)


class ImageDataset(_SplitImages):
    """Item i: ``(transform(image_i), label_i)``."""

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        return self.transform(self.image(index)), int(self.split.labels[index])


class SeededImages(_SplitImages):
    """Training images for an ``ImageSampler``: item ``(i, seed)`` → ``(transform(image_i), label_i, i)``, the
    augmentation drawn from a torch RNG seeded with ``seed`` (the global RNG left as it was), as in
    ``QuadrupletDataset``. The index finds the image's row of a per-image table (distillation's teacher cache)."""

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item):
        index, seed = int(item[0]), int(item[1])
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            image = self.transform(self.image(index))
        return image, int(self.split.labels[index]), index


class QuadrupletDataset(_SplitImages):
    """Item ``(a, p, n, n2)`` or ``(a, p, n, n2, seed)`` (what ``QuadrupletSampler`` yields): the four
    images, each transformed on its own (its own random augmentation), then the anchor's label and the
    negative's. With a seed, the augmentation draws from a torch RNG seeded with it (the global RNG is
    left as it was), so an item's images do not depend on which worker made them or on what came before."""

    def __init__(self, split: Split, transform: Callable, cache: np.ndarray | None = None, branches: int = 4):
        super().__init__(split, transform, cache)
        if branches not in (1, 2, 4):
            raise ValueError(f"branches must be 1 (baseline), 2 (DCS) or 4 (QCS), got {branches}")
        self.branches = branches

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item):
        """→ the first ``branches`` of the four transformed images, the anchor's label, the negative's label."""
        quad = [int(i) for i in item[:4]]
        labels = self.split.labels
        if len(item) == 5:
            with torch.random.fork_rng(devices=[]):  # restores the CPU generator, the only one seeded here
                torch.random.default_generator.manual_seed(int(item[4]))
                images = [self.transform(self.image(i)) for i in quad[: self.branches]]
        else:
            images = [self.transform(self.image(i)) for i in quad[: self.branches]]
        return (*images, int(labels[quad[0]]), int(labels[quad[2]]))


class CachedQuadruplets(Dataset):
    """Quadruplets gathered a whole batch at a time from a decoded cache (``decode_images``), as uint8
    (B, 3, H, W) tensors (channels-last in memory) plus the anchors' and the negatives' labels.

    For ``augment_on_device``: its loader half (resize to the cache's own size, to tensor) leaves cached
    pixels as they are, so this gives the same batches as ``QuadrupletDataset`` with that transform, in one
    indexing operation per branch instead of a PIL round trip per image. ``DataLoader`` calls
    ``__getitems__`` with the sampler's items; pass ``collate_fn=as_batch``."""

    def __init__(self, split: Split, cache: np.ndarray, branches: int = 4):
        if len(cache) != len(split):
            raise ValueError(f"the image cache holds {len(cache)} images, the split {len(split)}")
        if branches not in (1, 2, 4):
            raise ValueError(f"branches must be 1 (baseline), 2 (DCS) or 4 (QCS), got {branches}")
        self.split, self.cache, self.branches = split, cache, branches

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, items) -> list[torch.Tensor]:
        quads = np.array([item[:4] for item in items], dtype=np.int64)
        images = [torch.from_numpy(np.ascontiguousarray(self.cache[quads[:, k]])).permute(0, 3, 1, 2)
                  for k in range(self.branches)]
        labels = torch.from_numpy(self.split.labels[quads[:, [0, 2]]])
        return [*images, labels[:, 0], labels[:, 1]]


class CachedImages(Dataset):
    """Single training images for an ``ImageSampler``, gathered a whole batch at a time from a decoded cache, as
    ``CachedQuadruplets`` gathers quadruplets: items ``(i, seed)`` → ``[uint8 (B, 3, H, W), labels, indices]``
    (the indices find each image's row of distillation's teacher cache). Pass ``collate_fn=as_batch``."""

    def __init__(self, split: Split, cache: np.ndarray):
        if len(cache) != len(split):
            raise ValueError(f"the image cache holds {len(cache)} images, the split {len(split)}")
        self.split, self.cache = split, cache

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, items) -> list[torch.Tensor]:
        index = np.array([item[0] for item in items], dtype=np.int64)
        images = torch.from_numpy(np.ascontiguousarray(self.cache[index])).permute(0, 3, 1, 2)
        return [images, torch.from_numpy(self.split.labels[index]), torch.from_numpy(index)]


def as_batch(batch):
    """The collate function of ``CachedQuadruplets`` and ``CachedImages``: their items already form the batch."""
    return batch


def decode_images(split: Split, size: int, path: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """Every image of ``split`` decoded once, resized to ``size``², as a (N, size, size, 3) uint8 array.

    In memory, or a memmap at ``path`` (``.npy``) that later calls reuse when it was made from the
    same images (paths, or the pixels themselves) at the same size (a sidecar ``.json`` records which). For small datasets that the
    loader would otherwise decode again every epoch.
    """
    content = split.pixels.tobytes() if split.pixels is not None else "\n".join(map(str, split.paths)).encode()
    digest = hashlib.sha256(content).hexdigest()
    identity = {"dataset": split.dataset, "split": split.split, "n": len(split), "size": size, "images": digest}
    if path is not None:
        path = Path(path)
        sidecar = path.with_suffix(".json")
        if path.exists() and sidecar.exists() and json.loads(sidecar.read_text()) == identity:
            return np.load(path, mmap_mode="r")
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(split), size, size, 3))
    else:
        array = np.empty((len(split), size, size, 3), dtype=np.uint8)
    for i in tqdm(range(len(split)), desc=f"decoding {split.dataset}/{split.split}", leave=False, disable=not progress):
        array[i] = np.asarray(read_image(split, i).convert("RGB").resize((size, size), Image.BILINEAR))
    if path is not None:
        array.flush()
        sidecar.write_text(json.dumps(identity))
    return array
