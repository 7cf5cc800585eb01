"""Training and evaluation: ``fit(config) -> Run`` and ``evaluate(model, split) -> metrics``.

One SAM step on a batch of quadruplets (a, p, n, n2) with labels (y, y_n):

    L(w)   = mean CE over the heads (``losses.quadruplet_loss``)
    w'     = w + ρ ∇L(w) / ‖∇L(w)‖           (first backward without DDP gradient sync)
    w      ← base_optimizer(w, ∇L(w'))       (second backward, synchronised)

The learning rate follows ``lr_factor``: ``lr · γ^epoch`` by default (the official ExponentialLR), or a
cosine decay to 0 at ``epochs``, either after an optional linear warm-up. Train loss and accuracy in
``metrics.csv`` are those of the first forward pass (at w), accumulated on the device.

Model selection: after every epoch the *selection split* is scored (val by default; test only with
``selection: test``, the paper's protocol). Its accuracy picks ``best.pt`` and stops the run early
(``should_stop``: ``patience`` epochs without a gain above ``min_delta``); ``epochs`` is the maximum.
With ``selection: val`` the test split is scored only after training stops, on best.pt's model and on
the last one, so nothing the run decides depends on it.

Reproducibility: the model is initialised from ``seed``; the quadruplets and each item's augmentation
are functions of (seed, epoch, position) (``QuadrupletSampler``); dropout draws from the global RNG,
seeded from (seed, epoch, rank) at each epoch start and saved in mid-epoch checkpoints. So on CPU two
runs with one seed give identical metrics, and a resumed run ends as an uninterrupted one would.

Run directory ``<runs_dir>/<name>/``: ``config.yaml``, ``metrics.csv`` (one row per epoch: losses, k,
train accuracy and the selection split's ``val_*`` or ``test_*`` scores), ``last.pt`` (everything needed
to resume; after each epoch, and on Ctrl-C in a one-process run), ``best.pt`` (the model of the best selection accuracy),
``confusion.csv`` (best model, test split), ``data.json`` (each split's counts and what the loaders
skipped, excluded or held out) and, once the run has stopped, ``summary.json`` (selection, the epoch it
stopped at and why, best and last epoch with val and test scores, backbone images). Files are written
atomically.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..analysis.metrics import classification_metrics
from ..data.datasets import (CachedQuadruplets, ImageDataset, QuadrupletDataset, QuadrupletSampler, as_batch,
                             decode_images)
from ..data.sources import DataError, Split, hold_out, load_split, require_whole, verify_images
from ..data.synthfer import generate
from ..data.transforms import build_split_transforms, build_transforms, resize_size
from ..models.qcs import BRANCHES, QCSNet, TrainOutput
from ..models.weights import FORMAT, CheckpointError, load_backbone_weights, load_checkpoint, read_torch_file
from ..progress import report as report_progress
from .config import ConfigError, TrainConfig
from .distributed import World, broadcast_flag, init_world
from .losses import head_names, quadruplet_loss
from .sam import SAM


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where, and last.pt is the last good state."""


@dataclass
class Run:
    """A finished (or resumed and finished) run: its directory, config and ``summary.json``."""

    dir: Path
    config: TrainConfig
    summary: dict

    @classmethod
    def load(cls, run_dir: str | Path) -> Run:
        """The finished run in ``run_dir``, read back from its ``config.yaml`` and ``summary.json``. A missing file
        is a FileNotFoundError saying what its absence means; a config.yaml that is no TrainConfig, a ConfigError."""
        run_dir = Path(run_dir)
        config_file, summary_file = run_dir / "config.yaml", run_dir / "summary.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{run_dir}: has no config.yaml, so it is not a run directory (fit writes one "
                                    f"when a run starts)")
        if not summary_file.is_file():
            raise FileNotFoundError(f"{run_dir}: has no summary.json, so the run has not finished (fit writes it when "
                                    f"training stops; resume from {run_dir / 'last.pt'})")
        try:
            config = TrainConfig(**yaml.safe_load(config_file.read_text()))
        except (yaml.YAMLError, TypeError, ConfigError) as e:
            raise ConfigError(f"{config_file}: does not describe a TrainConfig ({e})") from e
        return cls(run_dir, config, json.loads(summary_file.read_text()))

    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.dir / "metrics.csv")

    @property
    def best_checkpoint(self) -> Path:
        return self.dir / "best.pt"


# ------------------------------------------------------------------------------------------- device and precision

def select_device(name: str = "auto") -> torch.device:
    """``auto``: cuda if there is one, then mps, then cpu. A named device that is missing is an error."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(k for k in ("cuda", "mps", "cpu") if available[k])
    if not available.get(name, False):
        raise ConfigError(f"device {name!r} is not available here (cuda: {available['cuda']}, "
                          f"mps: {available['mps']})")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: fp32). ``auto`` is bf16 on CUDA, fp16 where bf16 is missing, fp32 elsewhere."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision != "fp32" and device.type == "cpu" and precision == "fp16":
        raise ConfigError("precision fp16 needs a GPU; use fp32 or bf16 on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# ------------------------------------------------------------------------------------------------------ evaluation

@torch.inference_mode()
def predict(model: nn.Module, split: Split, image_size: int, recipe: str = "rafdb", batch_size: int = 64,
            device: torch.device | str = "cpu", precision: str = "fp32", channels_last: bool = False,
            num_workers: int = 0, cache: np.ndarray | None = None, progress: bool = True) -> np.ndarray:
    """Class probabilities (N, C) of the base branch on every image of ``split``, with the recipe's test
    transform at ``image_size``; float32 numpy."""
    device = torch.device(device)
    dtype = autocast_dtype(precision, device)
    base = model.base if isinstance(model, QCSNet) else model
    was_training = base.training
    base.eval()
    loader = DataLoader(ImageDataset(split, build_transforms(recipe, image_size, train=False), cache),
                        batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    out = []
    for images, _ in tqdm(loader, desc=f"eval {split.dataset}/{split.split}", leave=False, disable=not progress):
        with _autocast(device, dtype):
            logits = base(_to(images, device, channels_last))
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    base.train(was_training)
    return torch.cat(out).numpy()


def evaluate(model: nn.Module, split: Split, image_size: int | None = None, recipe: str = "rafdb",
             **options) -> dict:
    """Metrics of the base branch on ``split`` (``classification_metrics``); ``options`` go to ``predict``.
    ``image_size`` defaults to the model's."""
    if isinstance(model, QCSNet) and model.config.num_classes != len(split.classes):
        raise ConfigError(f"the model has {model.config.num_classes} classes, {split.dataset}/{split.split} has "
                          f"{len(split.classes)} ({', '.join(split.classes)})")
    size = image_size or model.config.image_size
    probabilities = predict(model, split, size, recipe, **options)
    return classification_metrics(split.labels, probabilities.argmax(1), split.classes)


RECIPE_OF = {"rafdb": "rafdb", "ferplus": "ferplus", "affectnet7": "affectnet", "affectnet8": "affectnet"}


def evaluate_checkpoint(checkpoint: str | Path, dataset: str, root: str | Path, split: str = "test",
                        batch_size: int = 64, device: str = "auto", precision: str = "fp32", num_workers: int = 0,
                        allow_unreadable: bool = False, **data_options) -> dict:
    """Load a checkpoint (ours, or the authors' official release) and evaluate it on a dataset split →
    ``{checkpoint, dataset, split, scored, skipped, load, **classification_metrics}``.

    Our checkpoints carry their class names, which must be the split's, and their transform recipe;
    official ones are taken to use the dataset's own label order and official test transform. A split with
    unreadable images is an error naming them, unless ``allow_unreadable`` (then ``scored`` says how many
    of all were scored)."""
    model, report = load_checkpoint(checkpoint)
    data = verify_images(load_split(dataset, root, split, **data_options))
    if not allow_unreadable:
        require_whole(data, "pass --allow-unreadable")
    names = report.meta.get("classes")
    if names is not None and list(names) != list(data.classes):
        raise CheckpointError(f"{checkpoint}: was trained on classes {names}, but {dataset}/{split} has "
                              f"{list(data.classes)}")
    if model.config.num_classes != len(data.classes):
        raise CheckpointError(f"{checkpoint}: has {model.config.num_classes} classes, {dataset}/{split} has "
                              f"{len(data.classes)} ({', '.join(data.classes)})")
    recipe = report.meta.get("transform") or RECIPE_OF.get(dataset, "rafdb")
    device = select_device(device)
    metrics = evaluate(model.to(device), data, recipe=recipe, batch_size=batch_size, device=device,
                       precision=precision, num_workers=num_workers)
    skipped = len(data.skipped)
    scored = f"{len(data)} of {len(data) + skipped} images" + (f" ({skipped} unreadable, not scored)" if skipped else "")
    return {"checkpoint": str(checkpoint), "dataset": dataset, "split": split, "scored": scored, "skipped": skipped,
            "load": str(report), **metrics}


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


def load_data(config: TrainConfig, world: World = World()) -> Data:
    """The train, val and test splits (SynthFER generated first if needed), checked against the config.

    With ``selection: val`` the val split is the dataset's own, or with ``val_fraction > 0`` a stratified
    part of train held out (``hold_out``, seeded by ``config.seed``); a dataset with neither is refused."""
    if config.dataset == "synthfer":
        if world.main:
            generate(config.data_root, config.synthfer_settings())
        world.barrier()

    def read(name: str) -> Split:
        split = load_split(config.dataset, config.data_root, name, **config.data_options)
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
    classes = config.model_config().num_classes
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
    return sampler, loader, caches[1:], augment


def _augment_batch(batch, augment, device: torch.device, seed: int):
    """The device half of the train transform (``augment_on_device``), drawing from ``seed`` alone."""
    *images, labels, neg_labels = batch
    with torch.random.fork_rng(devices=[]):  # restores the CPU generator, the only one seeded here
        torch.random.default_generator.manual_seed(seed)
        return [augment(x.to(device, non_blocking=True)) for x in images] + [labels, neg_labels]


# -------------------------------------------------------------------------------------------------------- training

def _epoch_seed(seed: int, epoch: int, rank: int, step: int | None = None) -> int:
    """A seed drawn from (seed, epoch, rank[, step]) for the dropout of an epoch (or a step's device augmentation)."""
    key = [seed, epoch, rank, 7] + ([] if step is None else [step])
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] % 2 ** 63)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    branches = BRANCHES[config.model_config().variant]
    return (config.epochs if epochs is None else epochs) * config.epoch_fraction * branches * (2 if config.sam else 1)


def should_stop(scores: list[float], patience: int, min_delta: float = 0.0) -> bool:
    """Early stopping on a list of per-epoch accuracies: walking through them, the best so far moves only on
    a score above it by more than ``min_delta``; stop once ``patience`` epochs in a row did not move it.
    ``patience`` 0 never stops."""
    if patience < 1:
        return False
    best, waited = -math.inf, 0
    for score in scores:
        best, waited = (score, 0) if score > best + min_delta else (best, waited + 1)
    return waited >= patience


class _Interrupt:
    """Turns the first Ctrl-C (SIGINT) into a flag the loop checks between steps; a second one is immediate."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def fit(config: TrainConfig, resume: str | Path | None = None, overwrite: bool = False,
        progress: bool = True) -> Run:
    """Train ``config`` (or resume it from a ``last.pt``) and return the Run. See the module docstring.

    An existing run directory with a ``last.pt`` is an error unless resuming or ``overwrite``."""
    device = select_device(config.device)
    world = init_world(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    dtype = autocast_dtype(config.precision, device)
    run_dir = config.run_dir
    if world.main and resume is None and (run_dir / "last.pt").exists() and not overwrite:
        raise ConfigError(f"{run_dir} already holds a run; resume it (--resume {run_dir / 'last.pt'}), "
                          f"choose another name, or overwrite it")
    state = _read_resume(resume, config, world) if resume is not None else None
    if config.backbone_weights and state is None and not Path(config.backbone_weights).is_file():
        raise ConfigError(f"backbone_weights {config.backbone_weights}: no such file; put POSTER++'s MS-Celeb-1M "
                          f"IR-50 (ir50.pth) there, or --set backbone_weights=PATH (null: train from scratch)")
    data = load_data(config, world)

    torch.manual_seed(config.seed)
    net = QCSNet(config.model_config())
    if config.backbone_weights and state is None:
        load_backbone_weights(net.base.backbone, config.backbone_weights)
    net.to(device)
    if config.channels_last:
        net.to(memory_format=torch.channels_last)
    sampler, loader, (select_cache, test_cache), augment = _loaders(
        config, data, net.config.image_size, net.branches, world, device, progress and world.main)
    optimizer = _build_optimizer(config, net)
    steps_per_epoch = len(loader)
    # SAM shares its param groups with the base optimizer, which is the one that steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.base_optimizer if config.sam else optimizer,
                                                  partial(lr_factor, config, steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    history, best, start_epoch, start_step, sums, rng = [], None, 0, 0, None, None
    if state is not None:
        net.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, best = state["history"], state["best"]
        start_epoch, start_step = state["epoch"], state["step"]
        sums, rng = state.get("sums"), state.get("rng")
    model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
        if world.distributed else net
    step_model = torch.compile(model) if config.compile else model

    names = head_names(net.branches, net.cross is not None)
    key = f"{config.selection}_accuracy"
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").unlink(missing_ok=True)  # written again when this run ends
        _atomic_text(yaml.safe_dump(config.to_dict(), sort_keys=False), run_dir / "config.yaml")
        _atomic_text(json.dumps({s.split: {"n": len(s), "counts": s.counts(), "skipped": s.skipped,
                                           "excluded": s.excluded} for s in data if s is not None}, indent=1),
                     run_dir / "data.json")

    def checkpoint(epoch: int, step: int, epoch_sums=None) -> dict:
        return {"format": FORMAT, "config": net.config.to_dict(), "state_dict": net.state_dict(),
                "train_config": config.to_dict(), "classes": list(data.train.classes),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch, "step": step, "history": history, "best": best,
                "sums": epoch_sums.cpu() if epoch_sums is not None else None,
                "rng": _rng_state(device) if epoch_sums is not None else None}

    stopped_early = should_stop([r[key] for r in history], config.patience, config.min_delta)
    with _Interrupt() as interrupt:
        for epoch in range(start_epoch, config.epochs if not stopped_early else start_epoch):
            skip = start_step if epoch == start_epoch else 0
            sampler.set_epoch(epoch, start=skip * config.batch_size)
            torch.manual_seed(_epoch_seed(config.seed, epoch, world.rank))
            if epoch == start_epoch and rng is not None:
                _set_rng_state(rng, device)
            epoch_sums = sums.to(device) if (epoch == start_epoch and sums is not None) else \
                torch.zeros(len(names) + 2, device=device, dtype=torch.float64)
            resumed_samples = float(epoch_sums[-1]) * world.size  # trained before a restart: not timed here
            lr = config.lr * lr_factor(config, steps_per_epoch, epoch * steps_per_epoch)  # at the epoch's first step
            model.train()
            t0, steps_total = time.perf_counter(), skip + len(loader)
            bar = tqdm(total=steps_total, initial=skip, desc=f"epoch {epoch + 1}/{config.epochs}",
                       disable=not (progress and world.main), leave=False)
            bad = torch.full((), -1, device=device, dtype=torch.long)
            for step, batch in enumerate(loader, start=skip):
                if augment is not None:
                    batch = _augment_batch(batch, augment, device, _epoch_seed(config.seed, epoch, world.rank, step))
                parts, correct, n, loss = _train_step(step_model, optimizer, scaler, batch, net.branches, device,
                                                      dtype, config.channels_last, config.sam, world)
                scheduler.step()
                epoch_sums += torch.cat([parts.double() * n, torch.stack([correct.double(),
                                                                           torch.tensor(float(n), device=device,
                                                                                        dtype=torch.float64)])])
                bad = torch.where((bad < 0) & ~torch.isfinite(loss), step, bad)
                last = step + 1 == steps_total
                if (step + 1) % config.log_every == 0 or last or interrupt.requested:
                    if int(bad) >= 0:
                        raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {int(bad) + 1}; stopped, "
                                            f"{run_dir / 'last.pt'} holds the last good state")
                    s = epoch_sums.cpu()
                    seconds = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{s[:len(names)].sum() / len(names) / s[-1]:.4f}",
                                    acc=f"{s[-2] / s[-1]:.3f}", samples_per_s=f"{s[-1] * world.size / seconds:.1f}")
                    bar.update(step + 1 - bar.n)
                stop = broadcast_flag(interrupt.requested, world, device) if world.distributed else interrupt.requested
                if stop:
                    # mid-epoch state is one process's (its RNG, its partial sums): DDP runs keep the last epoch's
                    if world.main and not world.distributed:
                        _atomic_save(checkpoint(epoch, step + 1, epoch_sums), run_dir / "last.pt")
                    bar.close()
                    where = "" if not world.distributed else \
                        f" (a DDP run resumes from the end of its last finished epoch, {epoch})"
                    raise KeyboardInterrupt(f"interrupted at epoch {epoch + 1}, step {step + 1}; "
                                            f"resume with --resume {run_dir / 'last.pt'}{where}")
            bar.close()
            train_seconds = time.perf_counter() - t0
            if world.distributed:
                torch.distributed.all_reduce(epoch_sums)
            if world.main:
                t1 = time.perf_counter()
                metrics = evaluate(net, data.selection, recipe=config.transform, batch_size=config.eval_batch_size,
                                   device=device, precision="fp32", channels_last=config.channels_last,
                                   cache=select_cache, progress=progress)
                row = _row(epoch, lr, names, epoch_sums.cpu(), net, config, metrics, train_seconds,
                           time.perf_counter() - t1, steps_total, resumed_samples)
                history.append(row)
                if best is None or row[key] > best[key]:
                    best = row
                    _atomic_save({**checkpoint(epoch + 1, 0), "optimizer": None, "scheduler": None,
                                  "history": None, "selection": config.selection, "metrics": metrics},
                                 run_dir / "best.pt")
                    if config.selection == "test":
                        _write_confusion(metrics, data.train.classes, run_dir / "confusion.csv")
                _atomic_save(checkpoint(epoch + 1, 0), run_dir / "last.pt")
                _atomic_text(pd.DataFrame(history).to_csv(index=False), run_dir / "metrics.csv")
                report_progress(run=config.name, epoch=epoch + 1, max_epochs=config.epochs, score=row[key],
                                selection=config.selection, epoch_units=work_units(config, epochs=1),
                                epoch_seconds=float(np.mean([r["train_seconds"] + r["eval_seconds"] for r in history])))
            stopped_early = should_stop([r[key] for r in history], config.patience, config.min_delta) \
                if world.main else False
            stopped_early = broadcast_flag(stopped_early, world, device)
            world.barrier()
            if stopped_early:
                break
    summary = _finish(config, net, data, history, best, stopped_early, test_cache, device, progress) \
        if world.main else {}
    world.barrier()
    return Run(run_dir, config, summary)


def _train_step(model, optimizer, scaler, batch, branches, device, dtype, channels_last, sam, world):
    """One (SAM) step → (per-head losses, correct anchors, batch size, loss), all on the device."""
    *images, labels, neg_labels = batch
    images = [_to(x, device, channels_last) for x in images]
    labels, neg_labels = labels.to(device, non_blocking=True), neg_labels.to(device, non_blocking=True)

    def forward_backward(sync: bool):
        # DDP decides in the forward whether the backward all-reduces, so no_sync must hold both
        with model.no_sync() if (not sync and world.distributed) else contextlib.nullcontext():
            with _autocast(device, dtype):
                # one batch through the model is the base branch alone: the baseline's only head
                out = model(*images) if branches > 1 else TrainOutput([model(images[0])], [], None)
            loss, parts = quadruplet_loss(out, labels, neg_labels)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        return out, loss, parts

    out, loss, parts = forward_backward(sync=not sam)
    if sam:
        optimizer.first_step(zero_grad=True)
        forward_backward(sync=True)
        optimizer.second_step(zero_grad=True, scaler=scaler)
    else:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    correct = (out.base_logits[0].argmax(1) == labels).sum()
    return parts, correct, len(labels), loss.detach()


def _row(epoch, lr, names, sums, net, config, metrics, train_seconds, eval_seconds, steps, untimed) -> dict:
    """One metrics.csv row; ``sums`` = per-head loss × batch sums, correct anchors, samples (all ranks);
    ``metrics`` those of the selection split, whose columns are named after it (``val_*`` or ``test_*``)."""
    n, split = float(sums[-1]), config.selection
    row = {"epoch": epoch + 1, "lr": lr, "loss": float(sums[:len(names)].sum()) / len(names) / n}
    row.update({f"loss_{name}": float(v) / n for name, v in zip(names, sums[:len(names)])})
    if net.cross is not None and net.cross[0].k() is not None:
        row.update({f"k{i + 1}": float(m.k().detach()) for i, m in enumerate(net.cross)})
    row.update({"train_accuracy": float(sums[-2]) / n, f"{split}_accuracy": metrics["accuracy"],
                f"{split}_mean_class_accuracy": metrics["mean_class_accuracy"], f"{split}_macro_f1": metrics["macro_f1"],
                "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                "samples_per_s": round((n - untimed) / train_seconds, 2) if train_seconds > 0 else math.nan,
                "steps": steps, "backbone_images": int(n) * net.branches * (2 if config.sam else 1)})
    return row


CONVERGED_RANGE = 0.02  # a run that did not stop early counts as converged if its last 3 scores lie within this


def _finish(config: TrainConfig, net: QCSNet, data: Data, history: list[dict], best: dict, stopped_early: bool,
            test_cache, device: torch.device, progress: bool) -> dict:
    """Score the test split (with ``selection: val``: only now, on best.pt's model and on the last one),
    write ``confusion.csv`` (best model, test) and ``summary.json``, and return the summary."""
    run_dir, key = config.run_dir, f"{config.selection}_accuracy"
    keep = ("epoch", "val_accuracy", "val_mean_class_accuracy", "val_macro_f1", "test_accuracy",
            "test_mean_class_accuracy", "test_macro_f1", "train_accuracy", "loss")
    chosen, last = dict(best), dict(history[-1])
    if config.selection == "val":
        options = dict(recipe=config.transform, batch_size=config.eval_batch_size, device=device,
                       precision="fp32", channels_last=config.channels_last, cache=test_cache,
                       progress=progress)
        best_net = QCSNet(net.config).to(device)
        best_net.load_state_dict(torch.load(run_dir / "best.pt", map_location=device, weights_only=False)["state_dict"])
        for row, model in ((chosen, best_net), (last, net)):
            metrics = evaluate(model, data.test, **options)
            row.update({"test_accuracy": metrics["accuracy"], "test_mean_class_accuracy": metrics["mean_class_accuracy"],
                        "test_macro_f1": metrics["macro_f1"]})
            if model is best_net:
                _write_confusion(metrics, data.train.classes, run_dir / "confusion.csv")
    scores = [r[key] for r in history]
    spread = max(scores[-3:]) - min(scores[-3:]) if len(scores) >= 3 else None
    summary = {"name": config.name, "seed": config.seed, "variant": config.model_config().variant,
               "selection": config.selection, "stopped_epoch": len(history), "max_epochs": config.epochs,
               "stopped_early": stopped_early, "last3_range": spread,
               "converged": stopped_early or (spread is not None and spread <= CONVERGED_RANGE),
               "best": {k: chosen[k] for k in keep if k in chosen}, "last": {k: last[k] for k in keep if k in last},
               "test_images": len(data.test), "test_unreadable": len(data.test.skipped),
               "train_seconds": round(sum(r["train_seconds"] for r in history), 2),
               "backbone_images": int(sum(r["backbone_images"] for r in history))}
    _atomic_text(json.dumps(summary, indent=1), run_dir / "summary.json")
    return summary


def _write_confusion(metrics: dict, classes, path: Path) -> None:
    table = pd.DataFrame(metrics["confusion"], index=pd.Index(classes, name="true"), columns=classes)
    _atomic_text(table.to_csv(), path)


def _rng_state(device: torch.device) -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


# what a resumed run may change: where its files are and how it runs, never what or how it trains
RESUMABLE = ("name", "runs_dir", "data_root", "backbone_weights", "verify_images", "eval_batch_size", "device",
             "precision", "channels_last", "compile", "num_workers", "log_every")


def _read_resume(path: str | Path, config: TrainConfig, world: World = World()) -> dict:
    """A ``last.pt`` to resume ``config`` from: its model must be the one ``config`` builds, and its recipe
    (every field but ``RESUMABLE``: data, seed, optimiser, schedule, batch, epochs, ...) the same. A mid-epoch
    state holds one process's RNG and partial sums, so DDP resumes only from an epoch's end."""
    state, _ = read_torch_file(path)
    if not (isinstance(state, dict) and state.get("format") == FORMAT and "optimizer" in state
            and state.get("history") is not None):
        raise ConfigError(f"{path}: not a resumable qcslib checkpoint (a last.pt written by fit)")
    if state["config"] != config.model_config().to_dict():
        theirs, ours = state["config"], config.model_config().to_dict()
        diff = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in ours if theirs.get(k) != ours[k])
        raise ConfigError(f"{path}: was trained with another model ({diff})")
    theirs, missing = state.get("train_config") or {}, object()
    changed = [(k, theirs.get(k, missing), v) for k, v in config.to_dict().items()
               if k not in RESUMABLE and theirs.get(k, missing) != v]
    if changed:
        diff = ", ".join(f"{k}: {'absent' if t is missing else repr(t)} there, {v!r} here" for k, t, v in changed)
        raise ConfigError(f"{path}: was trained with another recipe ({diff}); resume with the same one, or start a "
                          f"new run")
    if world.distributed and state.get("step"):
        raise ConfigError(f"{path}: stopped mid-epoch (epoch {state['epoch'] + 1}, step {state['step']}); a DDP run "
                          f"resumes only from the end of an epoch: finish this epoch in one process first")
    return state
