"""Training: ``fit(config) -> Run``.

One SAM step on a batch of quadruplets (a, p, n, n2) with labels (y, y_n):

    L(w)   = mean CE over the heads (``losses.quadruplet_loss``)
    w'     = w + ρ ∇L(w) / ‖∇L(w)‖           (first forward and backward without DDP gradient sync)
    w      ← base_optimizer(w, ∇L(w'))       (second forward and backward, synchronised)

The learning rate follows ``lr_factor``: ``lr · γ^epoch`` by default (the official ExponentialLR), or a
cosine decay to 0 at ``epochs``, either after an optional linear warm-up. Train loss and accuracy in
``metrics.csv`` are those of the first forward pass (at w), accumulated on the device (``EpochSums``).

Model selection: after every epoch the *selection split* is scored (val by default; test only with
``selection: test``, the paper's protocol). Its accuracy picks ``best.pt`` and stops the run early
(``should_stop``: ``patience`` epochs without a gain above ``min_delta``); ``epochs`` is the maximum.
With ``selection: val`` the test split is scored only after training stops, on best.pt's model and on
the last one, so nothing the run decides depends on it.

Reproducibility: the model is initialised from ``seed``; the quadruplets and each item's augmentation
are functions of (seed, epoch, position) (``QuadrupletSampler``); dropout draws from the global RNG,
seeded from (seed, epoch, rank) at each epoch start and saved in mid-epoch checkpoints. So on CPU two
runs with one seed give identical metrics, and a resumed run ends as an uninterrupted one would.
What the run directory holds: ``rundir``.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.datasets import CachedQuadruplets, QuadrupletDataset, as_batch, decode_images
from ..data.quadruplets import QuadrupletSampler
from ..data.sources import DataError, Split, hold_out, load_split, require_whole, verify_images
from ..data.synthfer import generate
from ..data.transforms import build_split_transforms, build_transforms, resize_size
from ..models.qcs import BRANCHES, QCSNet
from ..models.weights import load_backbone_weights, read_torch_file
from ..progress import report as report_progress
from . import rundir
from .config import ConfigError, TrainConfig
from .distributed import World, broadcast_flag, init_world
from .evaluation import evaluate
from .losses import head_names, quadruplet_loss
from .rundir import EpochSums, Run, RunState
from .runtime import Interrupt, autocast, autocast_dtype, select_device, to_device
from .sam import SAM, optimizer_step


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where, and last.pt is the last good state."""


def fit(config: TrainConfig, resume: str | Path | None = None, overwrite: bool = False,
        progress: bool = True) -> Run:
    """Train ``config`` (or resume it from a ``last.pt``) and return the Run. See the module docstring.

    An existing run directory with a ``last.pt`` is an error unless resuming or ``overwrite``."""
    device = select_device(config.device)
    world = init_world(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    if world.main and resume is None and (config.run_dir / "last.pt").exists() and not overwrite:
        raise ConfigError(f"{config.run_dir} already holds a run; resume it (--resume {config.run_dir / 'last.pt'}), "
                          f"choose another name, or overwrite it")
    saved = rundir.read_resume(resume, config, world.distributed) if resume is not None else None
    if config.backbone_weights and saved is None and not Path(config.backbone_weights).is_file():
        raise ConfigError(f"backbone_weights {config.backbone_weights}: no such file; put POSTER++'s MS-Celeb-1M "
                          f"IR-50 (ir50.pth) there, or --set backbone_weights=PATH (null: train from scratch)")
    data = load_data(config, world)
    trainer = Trainer.build(config, data, world, device, progress and world.main, pretrained=saved is None)
    state = rundir.restore(saved, trainer.net, trainer.optimizer, trainer.scheduler, trainer.scaler) \
        if saved is not None else RunState()
    if world.main:
        rundir.start(config, data)
    stopped_early = trainer.should_stop(state, data)
    with Interrupt() as interrupt:
        for epoch in range(state.epoch, state.epoch if stopped_early else config.epochs):
            done = trainer.train_epoch(epoch, state, interrupt)
            if world.main:
                trainer.end_epoch(epoch, done, data, state)
            state.epoch, state.step, state.sums, state.rng = epoch + 1, 0, None, None
            stopped_early = broadcast_flag(world.main and trainer.should_stop(state, data), world, device)
            world.barrier()
            if stopped_early:
                break
    summary = trainer.finish(data, state, stopped_early) if world.main else {}
    world.barrier()
    return Run(config.run_dir, config, summary)


class TrainForward(nn.Module):
    """``forward`` is ``net.forward_train``: DDP synchronises gradients only through a module's forward."""

    def __init__(self, net: QCSNet):
        super().__init__()
        self.net = net

    def forward(self, *images: torch.Tensor):
        return self.net.forward_train(*images)


def train_step(model: nn.Module, optimizer, scaler, batch, device: torch.device, dtype, channels_last: bool,
               sam: bool, world: World):
    """One (SAM) step of ``model`` (a ``TrainForward``, maybe DDP-wrapped or compiled) on a batch of the
    variant's branches and (y, y_n) → (per-head losses, correct anchors, batch size, loss), all on the device."""
    *images, labels, neg_labels = batch
    images = [to_device(x, device, channels_last) for x in images]
    labels, neg_labels = labels.to(device, non_blocking=True), neg_labels.to(device, non_blocking=True)

    def forward_backward(sync: bool):
        # DDP decides in the forward whether the backward all-reduces, so no_sync must hold both
        with model.no_sync() if (not sync and world.distributed) else contextlib.nullcontext():
            with autocast(device, dtype):
                out = model(*images)
            loss, parts = quadruplet_loss(out, labels, neg_labels)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        return out, loss, parts

    out, loss, parts = optimizer_step(optimizer, forward_backward, sam, scaler)
    correct = (out.base_logits[0].argmax(1) == labels).sum()
    return parts, correct, len(labels), loss.detach()


class Epoch(NamedTuple):
    """What one epoch's training gave: its sums over all ranks, the learning rate at its first step, its
    training seconds, its steps, and the samples trained before a restart (not in the timing)."""

    sums: EpochSums
    lr: float
    seconds: float
    steps: int
    untimed: float


@dataclass
class Trainer:
    """What the loop steps: the model (``net``, and ``model`` as it trains: wrapped for DDP and compiled if asked),
    the optimiser, schedule and scaler, the sampler and loader, and the decoded caches of the scored splits."""

    config: TrainConfig
    world: World
    device: torch.device
    dtype: torch.dtype | None
    net: QCSNet
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    sampler: QuadrupletSampler
    loader: DataLoader
    augment: object | None
    caches: tuple[np.ndarray | None, np.ndarray | None]  # selection split, test split
    classes: tuple[str, ...]
    steps_per_epoch: int
    progress: bool

    @classmethod
    def build(cls, config: TrainConfig, data: Data, world: World, device: torch.device, progress: bool,
              pretrained: bool = True) -> Trainer:
        """The model initialised from ``config.seed`` (and, if ``pretrained``, ``backbone_weights``), on ``device``,
        and what trains it."""
        torch.manual_seed(config.seed)
        net = QCSNet(config.model)
        if config.backbone_weights and pretrained:
            load_backbone_weights(net.base.backbone, config.backbone_weights)
        net.to(device)
        if config.channels_last:
            net.to(memory_format=torch.channels_last)
        sampler, loader, caches, augment = _loaders(config, data, net.config.image_size, net.branches, world, device,
                                                    progress)
        optimizer = _build_optimizer(config, net)
        # SAM shares its param groups with the base optimizer, which is the one that steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.base_optimizer if config.sam else optimizer,
                                                      partial(lr_factor, config, len(loader)))
        dtype = autocast_dtype(config.precision, device)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        model = TrainForward(net)
        if world.distributed:
            model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        model = torch.compile(model) if config.compile else model
        return cls(config, world, device, dtype, net, model, optimizer, scheduler, scaler, sampler, loader, augment,
                   caches, tuple(data.train.classes), len(loader), progress)

    @property
    def heads(self) -> list[str]:
        return head_names(self.net.branches, self.net.cross is not None)

    def scores(self, state: RunState) -> list[float]:
        return [row[f"{self.config.selection}_accuracy"] for row in state.history]

    def should_stop(self, state: RunState, data: Data) -> bool:
        return should_stop(self.scores(state), self.config.patience, self.config.min_delta, len(data.selection))

    def train_epoch(self, epoch: int, state: RunState, interrupt: Interrupt) -> Epoch:
        """Train one epoch from step ``state.step`` (with its saved sums and RNG when resuming mid-epoch). On Ctrl-C,
        save a mid-epoch last.pt (one-process runs) and raise KeyboardInterrupt; on a non-finite loss, TrainingError."""
        config, world, device = self.config, self.world, self.device
        skip, batch = state.step, config.batch_size
        self.sampler.set_epoch(epoch, start=skip * batch)
        torch.manual_seed(_epoch_seed(config.seed, epoch, world.rank))
        if state.rng is not None:
            rundir.set_rng_state(state.rng, device)
        sums = EpochSums.from_tensor(state.sums.to_tensor().to(device)) if state.sums is not None else \
            EpochSums.zeros(len(self.heads), device)
        untimed = float(sums.samples) * world.size
        lr = config.lr * lr_factor(config, self.steps_per_epoch, epoch * self.steps_per_epoch)  # at its first step
        self.model.train()
        t0, steps = time.perf_counter(), skip + len(self.loader)
        bar = tqdm(total=steps, initial=skip, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not self.progress,
                   leave=False)
        bad = torch.full((), -1, device=device, dtype=torch.long)
        for step, batch in enumerate(self.loader, start=skip):
            if self.augment is not None:
                batch = _augment_batch(batch, self.augment, device, _epoch_seed(config.seed, epoch, world.rank, step))
            parts, correct, n, loss = train_step(self.model, self.optimizer, self.scaler, batch, device, self.dtype,
                                                 config.channels_last, config.sam, world)
            self.scheduler.step()
            sums.add(parts, correct, n)
            bad = torch.where((bad < 0) & ~torch.isfinite(loss), step, bad)
            if (step + 1) % config.log_every == 0 or step + 1 == steps or interrupt.requested:
                if int(bad) >= 0:
                    raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {int(bad) + 1}; stopped, "
                                        f"{config.run_dir / 'last.pt'} holds the last good state")
                seconds = time.perf_counter() - t0
                bar.set_postfix(loss=f"{sums.mean_loss:.4f}", acc=f"{sums.accuracy:.3f}",
                                samples_per_s=f"{float(sums.samples) * world.size / seconds:.1f}")
                bar.update(step + 1 - bar.n)
            if broadcast_flag(interrupt.requested, world, device):
                bar.close()
                self.interrupted(epoch, step + 1, sums, state)
        bar.close()
        seconds = time.perf_counter() - t0
        if world.distributed:
            sums.all_reduce()
        return Epoch(sums, lr, seconds, steps, untimed)

    def interrupted(self, epoch: int, step: int, sums: EpochSums, state: RunState):
        """Ctrl-C after ``step`` steps of ``epoch``: a one-process run saves where it is; a DDP run keeps the last
        epoch's last.pt, since the mid-epoch state (its RNG, its partial sums) is each process's own."""
        last = self.config.run_dir / "last.pt"
        if self.world.main and not self.world.distributed:
            mid = RunState(epoch, step, state.history, state.best, sums, rundir.rng_state(self.device))
            rundir.atomic_save(self._checkpoint(mid), last)
        where = f" (a DDP run resumes from the end of its last finished epoch, {epoch})" if self.world.distributed \
            else ""
        raise KeyboardInterrupt(f"interrupted at epoch {epoch + 1}, step {step}; resume with --resume {last}{where}")

    def _checkpoint(self, state: RunState) -> dict:
        return rundir.checkpoint(self.net, self.config, self.classes, self.optimizer, self.scheduler, self.scaler,
                                 state)

    def end_epoch(self, epoch: int, done: Epoch, data: Data, state: RunState) -> None:
        """Score the selection split (fp32), add the metrics row, and write best.pt (on a new best), last.pt and
        metrics.csv; report the epoch to the progress file."""
        config, run_dir = self.config, self.config.run_dir
        t1 = time.perf_counter()
        metrics = evaluate(self.net, data.selection, recipe=config.transform, batch_size=config.eval_batch_size,
                           device=self.device, precision="fp32", channels_last=config.channels_last,
                           cache=self.caches[0], progress=self.progress)
        row = rundir.metrics_row(epoch, done.lr, self.heads, done.sums, self.net, config, metrics, done.seconds,
                                 time.perf_counter() - t1, done.steps, done.untimed)
        key = f"{config.selection}_accuracy"
        state.history.append(row)
        if state.best is None or row[key] > state.best[key]:
            state.best = row
            rundir.atomic_save(rundir.best_checkpoint(self.net, config, self.classes, epoch + 1, metrics),
                               run_dir / "best.pt")
            if config.selection == "test":
                rundir.write_confusion(metrics, self.classes, run_dir / "confusion.csv")
        rundir.atomic_save(self._checkpoint(RunState(epoch + 1, 0, state.history, state.best)), run_dir / "last.pt")
        rundir.write_metrics(state.history, run_dir)
        report_progress(run=config.name, epoch=epoch + 1, max_epochs=config.epochs, score=row[key],
                        selection=config.selection, epoch_units=work_units(config, epochs=1),
                        epoch_seconds=float(np.mean([r["train_seconds"] + r["eval_seconds"] for r in state.history])))

    def finish(self, data: Data, state: RunState, stopped_early: bool) -> dict:
        """Score the test split (with ``selection: val``: only now, on best.pt's model and on the last one), write
        ``confusion.csv`` (best model, test) and ``summary.json``, and return the summary."""
        config, run_dir = self.config, self.config.run_dir
        chosen, last = dict(state.best), dict(state.history[-1])
        if config.selection == "val":
            best_net = QCSNet(self.net.config).to(self.device)
            best_net.load_state_dict(read_torch_file(run_dir / "best.pt")[0]["state_dict"])
            for row, model in ((chosen, best_net), (last, self.net)):
                metrics = evaluate(model, data.test, recipe=config.transform, batch_size=config.eval_batch_size,
                                   device=self.device, precision="fp32", channels_last=config.channels_last,
                                   cache=self.caches[1], progress=self.progress)
                row.update({f"test_{k}": metrics[k] for k in ("accuracy", "mean_class_accuracy", "macro_f1")})
                if model is best_net:
                    rundir.write_confusion(metrics, self.classes, run_dir / "confusion.csv")
        return rundir.write_summary(config, state, stopped_early, len(data.selection), len(data.test),
                                    len(data.test.skipped), chosen, last)


# ------------------------------------------------------------------------------------------------------------ data

class Data(NamedTuple):
    """A run's splits: ``train``, ``val`` (None with ``selection: test``) and ``test``."""

    train: Split
    val: Split | None
    test: Split

    @property
    def selection(self) -> Split:
        """The split scored every epoch, which picks best.pt and stops early: val, or test (paper's protocol)."""
        return self.test if self.val is None else self.val


def prepare_data(config: TrainConfig) -> None:
    """Generate the config's SynthFER if it is not on disk yet (nothing to do for a real dataset). Runs trained
    in parallel processes call this once in the parent first: two generators writing one root would collide."""
    if config.dataset == "synthfer":
        generate(config.data_root, config.synthfer)


def load_data(config: TrainConfig, world: World = World()) -> Data:
    """The train, val and test splits (SynthFER generated first if needed), checked against the config.

    With ``selection: val`` the val split is the dataset's own, or with ``val_fraction > 0`` a stratified
    part of train held out (``hold_out``, seeded by ``config.seed``); a dataset with neither is refused."""
    if config.dataset == "synthfer":
        if world.main:
            prepare_data(config)
        world.barrier()

    def read(name: str) -> Split:
        split = load_split(config.dataset, config.data_root, name, **config.data_options.to_dict())
        return verify_images(split) if config.verify_images else split

    train, test, val = read(config.train_split), read(config.test_split), None
    if config.selection == "val" and config.val_fraction > 0:
        train, val = hold_out(train, config.val_fraction, config.seed)
    elif config.selection == "val":
        try:
            val = read("val")
        except (FileNotFoundError, DataError) as e:
            raise ConfigError(f"selection is val, but {config.dataset} at {config.data_root} has no val split ({e}); "
                              f"set val_fraction (e.g. 0.1) to hold one out of train, or selection=test for the "
                              f"paper's protocol (the best test epoch)") from e
    for other in (s for s in (val, test) if s is not None):
        if not config.allow_unreadable_eval:
            require_whole(other, "set allow_unreadable_eval=true")
        if other.classes != train.classes:
            raise ConfigError(f"the {train.split} and {other.split} splits name different classes: {train.classes} "
                              f"and {other.classes}")
    classes = config.model.num_classes
    if classes != len(train.classes):
        raise ConfigError(f"model.num_classes is {classes}, but {config.dataset} at {config.data_root} has "
                          f"{len(train.classes)} classes ({', '.join(train.classes)})")
    if config.batch_size * world.size > len(train):
        raise ConfigError(f"batch_size {config.batch_size} × {world.size} process(es) is larger than the "
                          f"{len(train)} training images of {config.dataset}")
    return Data(train, val, test)


def _loaders(config: TrainConfig, data: Data, image_size: int, branches: int, world: World,
             device: torch.device, progress: bool):
    """→ (sampler, train loader, decoded caches of the selection and test splits, device augmentation or None)."""
    cache_size = resize_size(config.transform, image_size)
    splits = (data.train, data.selection, data.test)
    caches = [decode_images(s, cache_size, progress=progress) if config.decoded_cache else None for s in splits]
    if data.val is None:
        caches[2] = caches[1]
    anchors = max(1, round(len(data.train) * config.epoch_fraction))
    sampler = QuadrupletSampler(data.train.labels, seed=config.seed, negatives=config.negatives,
                                classes=data.train.classes, oversample=config.oversample,
                                num_anchors=anchors if anchors != len(data.train) or config.oversample else None,
                                rank=world.rank, world_size=world.size)
    if config.augment_on_device:
        transform, augment = build_split_transforms(config.transform, image_size)
    else:
        transform, augment = build_transforms(config.transform, image_size, train=True), None
    if augment is not None and caches[0] is not None:  # the loader half would only copy the cached pixels
        dataset, collate = CachedQuadruplets(data.train, caches[0], branches), as_batch
    else:
        dataset, collate = QuadrupletDataset(data.train, transform, caches[0], branches=branches), None
    workers = config.num_workers
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        prefetch_factor=4 if workers > 0 else None,
                        generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone
    return sampler, loader, tuple(caches[1:]), augment


def _augment_batch(batch, augment, device: torch.device, seed: int):
    """The device half of the train transform (``augment_on_device``), drawing from ``seed`` alone."""
    *images, labels, neg_labels = batch
    with torch.random.fork_rng(devices=[]):  # restores the CPU generator, the only one seeded here
        torch.random.default_generator.manual_seed(seed)
        return [augment(x.to(device, non_blocking=True)) for x in images] + [labels, neg_labels]


# ------------------------------------------------------------------------------------------- schedule and stopping

def _epoch_seed(seed: int, epoch: int, rank: int, step: int | None = None) -> int:
    """A seed drawn from (seed, epoch, rank[, step]) for the dropout of an epoch (or a step's device augmentation)."""
    key = [seed, epoch, rank, 7] + ([] if step is None else [step])
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] % 2 ** 63)


def _build_optimizer(config: TrainConfig, model: nn.Module):
    base = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
    kwargs = dict(lr=config.lr, weight_decay=config.weight_decay)
    return SAM(model.parameters(), base, rho=config.rho, **kwargs) if config.sam else base(model.parameters(), **kwargs)


def lr_factor(config: TrainConfig, steps_per_epoch: int, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) over ``config.lr``:

        warm(t) · γ^⌊t / S⌋                                  schedule: exponential (official: ExponentialLR per epoch)
        warm(t) · ½ (1 + cos(π · min(1, (t − W) / (T − W))))   schedule: cosine (t ≥ W; 1 before)

    with S steps per epoch, T = epochs · S, W = warmup_epochs · S and warm(t) = min(1, (t + 1) / W)."""
    warm_steps = round(config.warmup_epochs * steps_per_epoch)
    warm = min(1.0, (step + 1) / warm_steps) if warm_steps else 1.0
    if config.schedule == "exponential":
        return warm * config.lr_gamma ** (step // steps_per_epoch)
    total = config.epochs * steps_per_epoch
    progress = min(1.0, max(0, step - warm_steps) / max(1, total - warm_steps))
    return warm * 0.5 * (1 + math.cos(math.pi * progress))


def work_units(config: TrainConfig, epochs: int | None = None) -> float:
    """Backbone passes of the whole training set that ``epochs`` (default: all) epochs of ``config`` cost:
    ``epochs · epoch_fraction · branches · (2 with SAM)``. QCS costs 4 per epoch, the baseline 1."""
    branches = BRANCHES[config.model.variant]
    return (config.epochs if epochs is None else epochs) * config.epoch_fraction * branches * (2 if config.sam else 1)


def should_stop(scores: list[float], patience: int, min_delta: float | None, images: int) -> bool:
    """Early stopping on a list of per-epoch accuracies measured on ``images`` images: walking through them, the
    best so far moves only on a score above it by more than δ; stop once ``patience`` epochs in a row did not move
    it. δ is ``min_delta``, or with ``None`` the standard error of the best so far, √(p (1 − p) / n)
    (``rundir.standard_error``), so that a gain within the noise of the split does not count. ``patience`` 0 never
    stops."""
    if patience < 1:
        return False
    best, waited = -math.inf, 0
    for score in scores:
        delta = min_delta if min_delta is not None else rundir.standard_error(max(best, 0.0), images)
        best, waited = (score, 0) if score > best + delta else (best, waited + 1)
    return waited >= patience
