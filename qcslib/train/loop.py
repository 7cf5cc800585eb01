"""Training: ``fit(config) -> Run``, one loop for every objective; ``distill(config, teacher, student) -> Run``
builds a ``kd`` config and fits it.

The config's *task* (``tasks``: ``QuadrupletTask`` for ``objective: quadruplet``, ``distillation.DistillationTask``
for ``kd``) builds the network, the loader and the loss; the loop does the rest. One SAM step on a batch:

    L(w)   = the task's loss (quadruplet: mean CE over the heads; kd: ``losses.distillation_loss``)
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

Reproducibility: the model is initialised from ``seed``; the samples (quadruplets, or images) and each item's
augmentation are functions of (seed, epoch, position) (``QuadrupletSampler``, ``ImageSampler``); dropout draws
from the global RNG, seeded from (seed, epoch, rank) at each epoch start and saved in mid-epoch checkpoints. So on
CPU two runs with one seed and one thread count give identical metrics (another thread count sums in another
order), and a resumed run ends as an uninterrupted one would.
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
from tqdm.auto import tqdm

from ..data.sources import DataError, Split, hold_out, load_split, require_whole, verify_images
from ..data.synthfer import generate
from ..models.student import DEFAULT_STUDENT, StudentConfig
from ..models.qcs import QCSConfig
from ..models.weights import read_torch_file
from ..progress import report as report_progress
from . import rundir
from .config import ConfigError, DistillConfig, TrainConfig
from .distillation import DistillationTask, load_teacher
from .distributed import World, broadcast_flag, init_world
from .evaluation import evaluate
from .rundir import EpochSums, Run, RunState
from .runtime import Interrupt, autocast, autocast_dtype, select_device
from .sam import SAM, optimizer_step
from .tasks import Data, QuadrupletTask, epoch_seed

TASKS = {"quadruplet": QuadrupletTask, "kd": DistillationTask}  # objective → its task


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
    state = RunState()
    if saved is not None:
        state = rundir.restore(saved, trainer.net, trainer.optimizer, trainer.scheduler, trainer.scaler)
        trainer.task.load_state_dict(saved)
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


def distill(config: TrainConfig, teacher: str | Path, student: str = DEFAULT_STUDENT, temperature: float = 4.0,
            alpha: float = 0.9, beta: float = 0.0, teacher_online: bool = False, resume: str | Path | None = None,
            overwrite: bool = False, progress: bool = True) -> Run:
    """Train ``student`` (a timm name) on ``config``'s data and recipe against the QCS ``teacher`` checkpoint (see
    ``distillation``) → the Run: ``fit`` of ``distill_config``. Under torchrun it runs in every process."""
    teacher_net, _ = load_teacher(teacher)
    return fit(distill_config(config, teacher, teacher_net.config, student, temperature, alpha, beta, teacher_online),
               resume=resume, overwrite=overwrite, progress=progress)


def distill_config(config: TrainConfig, teacher: str | Path, teacher_model: QCSConfig, student: str = DEFAULT_STUDENT,
                   temperature: float = 4.0, alpha: float = 0.9, beta: float = 0.0,
                   teacher_online: bool = False) -> TrainConfig:
    """``config``'s recipe with objective ``kd``: the timm ``student`` (built from scratch: no ``backbone_weights``)
    for the teacher's classes and image size (``teacher_model``), the ``teacher`` checkpoint and the loss's T, α
    and β in ``distill``."""
    try:
        model = StudentConfig(student, teacher_model.num_classes, teacher_model.image_size)
    except ValueError as e:
        raise ConfigError(f"student: {e}") from None
    return config.replace(objective="kd", model=model, backbone_weights=None,
                          distill=DistillConfig(str(teacher), temperature, alpha, beta, teacher_online))


def train_step(model: nn.Module, optimizer, scaler, inputs: list[torch.Tensor], targets, loss, dtype, sam: bool,
               world: World):
    """One (SAM) step of ``model`` (a task's ``module``, maybe DDP-wrapped or compiled) on ``inputs`` (on the
    device) → (per-term losses, correct samples, batch size, loss), all on the device. ``loss(outputs, targets)``
    → (L, per-term losses, correct samples): the task's."""
    device = inputs[0].device

    def forward_backward(sync: bool):
        # DDP decides in the forward whether the backward all-reduces, so no_sync must hold both
        with model.no_sync() if (not sync and world.distributed) else contextlib.nullcontext():
            with autocast(device, dtype):
                out = model(*inputs)
            value, parts, correct = loss(out, targets)
            (scaler.scale(value) if scaler is not None else value).backward()
        return value, parts, correct

    value, parts, correct = optimizer_step(optimizer, forward_backward, sam, scaler)
    return parts, correct, len(inputs[0]), value.detach()


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
    """What the loop steps: the task (``tasks``: the network, what trains it, its data and loss), the model as it
    trains (the task's module, wrapped for DDP and compiled if asked), and the optimiser, schedule and scaler."""

    config: TrainConfig
    world: World
    device: torch.device
    dtype: torch.dtype | None
    task: QuadrupletTask | DistillationTask
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    classes: tuple[str, ...]
    steps_per_epoch: int
    progress: bool

    @classmethod
    def build(cls, config: TrainConfig, data: Data, world: World, device: torch.device, progress: bool,
              pretrained: bool = True) -> Trainer:
        """The config's task, its network initialised from ``config.seed`` (and, if ``pretrained``, its
        ``backbone_weights``) on ``device``, and what trains it."""
        torch.manual_seed(config.seed)
        task = TASKS[config.objective](config, data, world, device, progress, pretrained)
        optimizer = _build_optimizer(config, task.module)
        # SAM shares its param groups with the base optimizer, which is the one that steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.base_optimizer if config.sam else optimizer,
                                                      partial(lr_factor, config, len(task.loader)))
        dtype = autocast_dtype(config.precision, device)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        model = task.module
        if world.distributed:
            model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        model = torch.compile(model) if config.compile else model
        return cls(config, world, device, dtype, task, model, optimizer, scheduler, scaler, tuple(data.train.classes),
                   len(task.loader), progress)

    @property
    def net(self) -> nn.Module:
        return self.task.net

    def scores(self, state: RunState) -> list[float]:
        return [row[f"{self.config.selection}_accuracy"] for row in state.history]

    def should_stop(self, state: RunState, data: Data) -> bool:
        return should_stop(self.scores(state), self.config.patience, self.config.min_delta, len(data.selection))

    def train_epoch(self, epoch: int, state: RunState, interrupt: Interrupt) -> Epoch:
        """Train one epoch from step ``state.step`` (with its saved sums and RNG when resuming mid-epoch). On Ctrl-C,
        save a mid-epoch last.pt (one-process runs) and raise KeyboardInterrupt; on a non-finite loss, TrainingError."""
        config, world, device = self.config, self.world, self.device
        skip, batch = state.step, config.batch_size
        self.task.sampler.set_epoch(epoch, start=skip * batch)
        torch.manual_seed(epoch_seed(config.seed, epoch, world.rank))
        if state.rng is not None:
            rundir.set_rng_state(state.rng, device)
        sums = EpochSums.from_tensor(state.sums.to_tensor().to(device)) if state.sums is not None else \
            EpochSums.zeros(len(self.task.loss_names), device)
        untimed = float(sums.samples) * world.size
        lr = config.lr * lr_factor(config, self.steps_per_epoch, epoch * self.steps_per_epoch)  # at its first step
        self.model.train()
        t0, steps = time.perf_counter(), skip + len(self.task.loader)
        bar = tqdm(total=steps, initial=skip, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not self.progress,
                   leave=False)
        bad = torch.full((), -1, device=device, dtype=torch.long)
        for step, batch in enumerate(self.task.loader, start=skip):
            inputs, targets = self.task.batch(batch, epoch, step)
            parts, correct, n, loss = train_step(self.model, self.optimizer, self.scaler, inputs, targets,
                                                 self.task.loss, self.dtype, config.sam, world)
            self.scheduler.step()
            sums.add(parts, correct, n)
            bad = torch.where((bad < 0) & ~torch.isfinite(loss), step, bad)
            if (step + 1) % config.log_every == 0 or step + 1 == steps or interrupt.requested:
                if int(bad) >= 0:
                    raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {int(bad) + 1}; stopped, "
                                        f"{config.run_dir / 'last.pt'} holds the last good state")
                seconds = time.perf_counter() - t0
                bar.set_postfix(loss=f"{self.task.epoch_loss(sums):.4f}", acc=f"{sums.accuracy:.3f}",
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
        return {**rundir.checkpoint(self.net, self.config, self.classes, self.optimizer, self.scheduler, self.scaler,
                                    state), **self.task.state_dict()}

    def end_epoch(self, epoch: int, done: Epoch, data: Data, state: RunState) -> None:
        """Score the selection split (fp32), add the metrics row, and write best.pt (on a new best), last.pt and
        metrics.csv; report the epoch to the progress file."""
        config, run_dir = self.config, self.config.run_dir
        t1 = time.perf_counter()
        metrics = evaluate(self.net, data.selection, recipe=config.transform, batch_size=config.eval_batch_size,
                           device=self.device, precision="fp32", channels_last=config.channels_last,
                           cache=self.task.caches[0], progress=self.progress)
        row = rundir.metrics_row(epoch, done.lr, self.task.epoch_loss(done.sums), self.task.loss_names, done.sums,
                                 self.task.columns(), config, metrics, done.seconds, time.perf_counter() - t1,
                                 done.steps, done.untimed)
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
        ``confusion.csv`` (best model, test) and ``summary.json`` (with what the task adds), and return the summary."""
        config, run_dir = self.config, self.config.run_dir
        chosen, last = dict(state.best), dict(state.history[-1])
        if config.selection == "val":
            best_net = type(self.net)(self.net.config).to(self.device)
            best_net.load_state_dict(read_torch_file(run_dir / "best.pt")[0]["state_dict"])
            for row, model in ((chosen, best_net), (last, self.net)):
                metrics = evaluate(model, data.test, recipe=config.transform, batch_size=config.eval_batch_size,
                                   device=self.device, precision="fp32", channels_last=config.channels_last,
                                   cache=self.task.caches[1], progress=self.progress)
                row.update({f"test_{k}": metrics[k] for k in ("accuracy", "mean_class_accuracy", "macro_f1")})
                if model is best_net:
                    rundir.write_confusion(metrics, self.classes, run_dir / "confusion.csv")
        return rundir.write_summary(config, state, stopped_early, len(data.selection), len(data.test),
                                    len(data.test.skipped), chosen, last, self.task.summary(data))


# ------------------------------------------------------------------------------------------------------------ data

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
        whose = f" (the teacher's, {config.distill.teacher})" if config.distill is not None else ""
        raise ConfigError(f"model.num_classes is {classes}{whose}, but {config.dataset} at {config.data_root} has "
                          f"{len(train.classes)} classes ({', '.join(train.classes)})")
    if config.batch_size * world.size > len(train):
        raise ConfigError(f"batch_size {config.batch_size} × {world.size} process(es) is larger than the "
                          f"{len(train)} training images of {config.dataset}")
    return Data(train, val, test)


# ------------------------------------------------------------------------------------------- schedule and stopping

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
    branches = config.model.branches
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
