"""Tasks: what ``loop.Trainer`` trains, one per ``TrainConfig.objective``; the Trainer does the rest (the SAM step,
the schedule, checkpoints, resume, metrics, early stopping, test scoring, the summary, DDP).

A task is built from ``(config, data, world, device, progress, pretrained)`` and holds:

- ``net``: the network scored every epoch and saved in best.pt and last.pt (a ``QCSNet``, a ``StudentNet``);
- ``module``: what trains: its parameters are optimised, DDP wraps it, ``module(*inputs)`` → the outputs;
- ``sampler`` (``set_epoch(epoch, start)``: the epoch's items from item ``start`` on, this rank's shard) and
  ``loader``; ``caches``: the decoded selection and test splits (or None);
- ``loss_names``: the per-term losses, metrics.csv's ``loss_<name>`` columns;
- ``batch(batch, epoch, step)`` → ``(inputs, targets)`` on the device;
- ``loss(outputs, targets)`` → ``(L, per-term losses detached, correct samples)``; ``epoch_loss(sums)``: the
  epoch's L from its summed terms;
- ``columns()``: metrics.csv columns of its own (QCS: the learned k of each cross module);
- ``state_dict()`` / ``load_state_dict(saved)``: what last.pt keeps besides ``net`` (distillation: the projection);
- ``summary(data)``: what it adds to summary.json.

``QuadrupletTask`` is QCS training (the ``quadruplet`` objective); ``distillation.DistillationTask`` is ``kd``.

Loaders: each item carries its augmentation seed from its sampler (``quadruplets.item_seeds``: a function of
seed, epoch, rank and position), so augmentation does not depend on the worker processes; the loader's own
generator (its workers' base seed, drawn once: the workers persist) is seeded from (seed, rank), so that it
leaves the global RNG alone.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.datasets import CachedQuadruplets, QuadrupletDataset, as_batch, decode_images
from ..data.quadruplets import QuadrupletSampler
from ..data.sources import Split
from ..data.transforms import build_split_transforms, build_transforms, resize_size
from ..models.qcs import QCSNet
from ..models.weights import load_backbone_weights
from .config import TrainConfig
from .distributed import World
from .losses import head_names, quadruplet_loss
from .rundir import EpochSums
from .runtime import to_device


class Data(NamedTuple):
    """A run's splits: ``train``, ``val`` (None with ``selection: test``) and ``test``."""

    train: Split
    val: Split | None
    test: Split

    @property
    def selection(self) -> Split:
        """The split scored every epoch, which picks best.pt and stops early: val, or test (paper's protocol)."""
        return self.test if self.val is None else self.val


def epoch_seed(seed: int, epoch: int, rank: int, step: int | None = None) -> int:
    """A seed drawn from (seed, epoch, rank[, step]) for the dropout of an epoch (or a step's device augmentation)."""
    key = [seed, epoch, rank, 7] + ([] if step is None else [step])
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] % 2 ** 63)


def decoded_caches(config: TrainConfig, data: Data, image_size: int, progress: bool) -> list[np.ndarray | None]:
    """The train, selection and test splits decoded once (``decoded_cache``), or Nones."""
    size = resize_size(config.transform, image_size)
    caches = [decode_images(s, size, progress=progress) if config.decoded_cache else None
              for s in (data.train, data.selection)]
    return caches + [caches[1] if data.val is None else
                     decode_images(data.test, size, progress=progress) if config.decoded_cache else None]


def train_loader(config: TrainConfig, dataset, sampler, world: World, device: torch.device,
                 collate=None) -> DataLoader:
    """The training loader of ``dataset`` in ``sampler``'s order (see the module docstring for its seeds)."""
    workers = config.num_workers
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator().manual_seed(epoch_seed(config.seed, 0, world.rank)))


class TrainForward(nn.Module):
    """``forward`` is ``net.forward_train``: DDP synchronises gradients only through a module's forward."""

    def __init__(self, net: QCSNet):
        super().__init__()
        self.net = net

    def forward(self, *images: torch.Tensor):
        return self.net.forward_train(*images)


class QuadrupletTask:
    """QCS training: quadruplets (a, p, n, n2) of the variant's branches through ``QCSNet.forward_train``, with

        L = (1 / H) Σ_heads CE(logits, y)      (``losses.quadruplet_loss``; y: the anchor's or the negative's label)

    and the anchor's base logits for the train accuracy. ``augment_on_device``: the loader only decodes, and the
    rest of the recipe runs per batch on the device, seeded from (seed, epoch, rank, step)."""

    def __init__(self, config: TrainConfig, data: Data, world: World, device: torch.device, progress: bool,
                 pretrained: bool = True):
        self.config, self.world, self.device = config, world, device
        self.net = net = QCSNet(config.model)
        if config.backbone_weights and pretrained:
            load_backbone_weights(net.base.backbone, config.backbone_weights)
        net.to(device)
        if config.channels_last:
            net.to(memory_format=torch.channels_last)
        self.module = TrainForward(net)
        self.loss_names = head_names(net.branches, net.cross is not None)
        caches = decoded_caches(config, data, net.config.image_size, progress)
        self.caches = tuple(caches[1:])
        anchors = max(1, round(len(data.train) * config.epoch_fraction))
        self.sampler = QuadrupletSampler(data.train.labels, seed=config.seed, negatives=config.negatives,
                                         classes=data.train.classes, oversample=config.oversample,
                                         num_anchors=anchors if anchors != len(data.train) or config.oversample
                                         else None, rank=world.rank, world_size=world.size)
        if config.augment_on_device:
            transform, self.augment = build_split_transforms(config.transform, net.config.image_size, config.hue)
        else:
            transform = build_transforms(config.transform, net.config.image_size, train=True, hue=config.hue)
            self.augment = None
        if self.augment is not None and caches[0] is not None:  # the loader half would only copy the cached pixels
            dataset, collate = CachedQuadruplets(data.train, caches[0], net.branches), as_batch
        else:
            dataset, collate = QuadrupletDataset(data.train, transform, caches[0], branches=net.branches), None
        self.loader = train_loader(config, dataset, self.sampler, world, device, collate)

    def batch(self, batch, epoch: int, step: int):
        if self.augment is not None:
            batch = augment_batch(batch, self.augment, self.device,
                                  epoch_seed(self.config.seed, epoch, self.world.rank, step))
        *images, labels, neg_labels = batch
        images = [to_device(x, self.device, self.config.channels_last) for x in images]
        return images, (labels.to(self.device, non_blocking=True), neg_labels.to(self.device, non_blocking=True))

    def loss(self, out, targets):
        return quadruplet_objective(out, targets)

    def epoch_loss(self, sums: EpochSums) -> float:
        return sums.mean_loss

    def columns(self) -> dict:
        if self.net.cross is None or self.net.cross[0].k() is None:
            return {}
        return {f"k{i + 1}": float(m.k().detach()) for i, m in enumerate(self.net.cross)}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, saved: dict) -> None:
        pass

    def summary(self, data: Data) -> dict:
        return {}


def quadruplet_objective(out, targets):
    """A ``forward_train`` output and (y, y_n) → (L, per-head losses, correct anchors: base branch of a)."""
    labels, neg_labels = targets
    loss, parts = quadruplet_loss(out, labels, neg_labels)
    return loss, parts, (out.base_logits[0].argmax(1) == labels).sum()


def augment_batch(batch, augment, device: torch.device, seed: int):
    """The device half of the train transform (``augment_on_device``) on the images of ``batch`` (all but its last
    two entries: the labels, and the negatives' labels or the images' indices), drawing from ``seed`` alone."""
    *images, labels, other = batch
    with torch.random.fork_rng(devices=[]):  # restores the CPU generator, the only one seeded here
        torch.random.default_generator.manual_seed(seed)
        return [augment(x.to(device, non_blocking=True)) for x in images] + [labels, other]
