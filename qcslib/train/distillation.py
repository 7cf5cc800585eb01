"""Distilling a trained QCS teacher into a light timm student: ``distill(config, teacher, student) -> Run``.

Each step trains the student (``StudentNet``: the teacher's class set, image size and transform recipe) on a
batch of single training images with ``losses.distillation_loss``:

    L = (1 − α) CE(z_s, y) + α T² KL(softmax(z_t / T) ‖ softmax(z_s / T)) + β (1/D) ‖P f_s − f_t‖²

z_t and f_t are the frozen teacher's base logits and pre-logit features (``forward_head(z, pre_logits=True)``),
P a learned linear map (trained with the student, saved in last.pt, not part of the student checkpoint).

Teacher targets: by default ``teacher_targets`` runs the teacher once over the training split with the
*un-augmented* eval transform before training, and row i of the cache is image i's target. With augmentation on
(every recipe flips, crops and jitters), the student then sees an augmented image while its target is the
teacher's output on the plain one: a known approximation, one teacher pass in all instead of one per step.
``teacher_online`` computes the targets per step on the same augmented batch instead (exact, costlier).

Why not ``fit``: its Trainer steps quadruplets through ``QCSNet.forward_train`` with the per-head loss and
builds the QCS model itself. This loop is the smallest one that keeps what ``train`` promises: the same run
directory (config.yaml, data.json, metrics.csv, last.pt, best.pt, confusion.csv, summary.json, from ``rundir``),
the data and val/test protocol (``load_data``: best.pt picked on the selection split, test scored only after
training stops with ``selection: val``), early stopping (``should_stop``), the optimiser, SAM and schedule of
the config, seeds (the student is initialised from ``seed``; the shuffle and each epoch's augmentation are
functions of (seed, epoch)), and resume from a last.pt. It differs in that it runs in one process (no DDP),
resumes from an epoch's end only (Ctrl-C keeps the last epoch's last.pt), and refuses the quadruplet-only
options (``epoch_fraction`` ≠ 1, ``oversample``, ``augment_on_device``, ``compile``); ``negatives`` is unused.
The run's ``config.yaml`` holds the teacher's model config under ``model``; ``distill.json`` the distillation
options, and the summary names the student as its ``variant`` and adds the teacher and the teacher's own
test accuracy.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import timm
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.datasets import ImageDataset, decode_images
from ..data.sources import Split
from ..data.transforms import build_transforms, resize_size
from ..models.qcs import QCSNet
from ..models.student import DEFAULT_STUDENT, StudentConfig, StudentNet
from ..models.weights import FORMAT, CheckpointError, load_checkpoint, read_torch_file
from . import rundir
from .config import ConfigError, TrainConfig
from .evaluation import evaluate
from .loop import TrainingError, _build_optimizer, _epoch_seed, lr_factor, load_data, should_stop
from .losses import distillation_loss
from .rundir import Run, RunState
from .runtime import autocast, autocast_dtype, select_device, to_device
from .sam import optimizer_step

LOSS_NAMES = ("ce", "kd", "feature")


@dataclass(frozen=True)
class DistillOptions:
    """What distillation adds to a TrainConfig: the teacher checkpoint, the timm student, T, α, β, and whether
    the teacher runs per step (``teacher_online``) or once per image (the cache)."""

    teacher: str
    student: str = DEFAULT_STUDENT
    temperature: float = 4.0
    alpha: float = 0.9
    beta: float = 0.0
    teacher_online: bool = False

    def __post_init__(self):
        if not self.temperature > 0 or not 0 <= self.alpha <= 1 or not self.beta >= 0:
            raise ConfigError(f"need temperature > 0, 0 ≤ alpha ≤ 1 and beta ≥ 0; got "
                              f"temperature={self.temperature}, alpha={self.alpha}, beta={self.beta}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class IndexedImages(ImageDataset):
    """Item i: ``(transform(image_i), label_i, i)``: the index finds the image's row of the teacher cache."""

    def __getitem__(self, index: int):
        return (*super().__getitem__(index), index)


@torch.no_grad()  # not inference_mode: the features are a target the feature term's backward saves
def teacher_outputs(teacher: nn.Module, images: Tensor, features: bool) -> tuple[Tensor, Tensor | None]:
    """The teacher's base logits (B, C) and, if ``features``, its pre-logit features (B, D), in fp32."""
    z = teacher.forward_features(images)
    return teacher.forward_head(z).float(), teacher.forward_head(z, pre_logits=True).float() if features else None


def teacher_targets(teacher: nn.Module, split: Split, image_size: int, recipe: str, features: bool = False,
                    batch_size: int = 64, device: torch.device | str = "cpu", cache: np.ndarray | None = None,
                    progress: bool = False) -> tuple[Tensor, Tensor | None]:
    """The cache: the frozen teacher on every image of ``split`` once, with the recipe's eval (un-augmented)
    transform → (logits (N, C), features (N, D) or None) on CPU, row i for image i of the split."""
    teacher.eval()
    loader = DataLoader(ImageDataset(split, build_transforms(recipe, image_size, train=False), cache),
                        batch_size=batch_size)
    logits, feats = [], []
    for images, _ in tqdm(loader, desc="teacher targets", leave=False, disable=not progress):
        z, f = teacher_outputs(teacher, images.to(device), features)
        logits.append(z.cpu())
        feats.append(f.cpu() if features else None)
    return torch.cat(logits), torch.cat(feats) if features else None


def load_teacher(path: str | Path, classes: tuple[str, ...], transform: str) -> QCSNet:
    """A QCS checkpoint (ours or official) whose classes are ``classes`` and, where it stores one, whose transform
    recipe is ``transform``; a one-line CheckpointError otherwise."""
    if not Path(path).is_file():
        raise CheckpointError(f"teacher {path}: no such file; pass a QCS checkpoint (a run's best.pt)")
    teacher, report = load_checkpoint(path)
    if not isinstance(teacher, QCSNet):
        raise CheckpointError(f"teacher {path}: is a {report.meta.get('timm_name')} student, expected a QCS checkpoint")
    own = report.meta.get("classes")
    if (own is not None and tuple(own) != tuple(classes)) or teacher.config.num_classes != len(classes):
        theirs = ", ".join(own) if own else f"{teacher.config.num_classes} classes"
        raise CheckpointError(f"teacher {path}: has the classes ({theirs}), the data has ({', '.join(classes)})")
    if report.meta.get("transform") not in (None, transform):
        raise CheckpointError(f"teacher {path}: was trained with the {report.meta['transform']} transform recipe, the "
                              f"config has {transform}; --set transform={report.meta['transform']}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def distill(config: TrainConfig, teacher: str | Path, student: str = DEFAULT_STUDENT, temperature: float = 4.0,
            alpha: float = 0.9, beta: float = 0.0, teacher_online: bool = False, resume: str | Path | None = None,
            overwrite: bool = False, progress: bool = True) -> Run:
    """Train ``student`` (a timm name) on ``config``'s data and recipe against the QCS ``teacher`` → the Run.
    See the module docstring; an existing run directory with a last.pt is an error unless resuming or
    ``overwrite``."""
    options = DistillOptions(str(teacher), student, temperature, alpha, beta, teacher_online)
    for name, bad in (("epoch_fraction", config.epoch_fraction != 1), ("oversample", config.oversample),
                      ("augment_on_device", config.augment_on_device), ("compile", config.compile)):
        if bad:
            raise ConfigError(f"{name}={getattr(config, name)}: distill does not support it (quadruplet training "
                              f"only); leave it at its default")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("distill runs in one process; start it with python -m qcslib distill, not torchrun")
    if resume is None and (config.run_dir / "last.pt").exists() and not overwrite:
        raise ConfigError(f"{config.run_dir} already holds a run; resume it (--resume {config.run_dir / 'last.pt'}), "
                          f"choose another name, or overwrite it")
    if not timm.is_model(student):  # before any work
        raise ConfigError(f"student: {student!r} is not a timm model name (e.g. mobilenetv3_small_100, resnet10t; "
                          f"timm.list_models() lists them)")
    device = select_device(config.device)
    data = load_data(config)
    net_teacher = load_teacher(teacher, tuple(data.train.classes), config.transform).to(device)
    config = config.replace(model=net_teacher.config)
    size = net_teacher.config.image_size
    student_config = StudentConfig(student, net_teacher.config.num_classes, size)
    saved = _read_resume(resume, config, options, student_config) if resume is not None else None

    torch.manual_seed(config.seed)
    net = StudentNet(student_config).to(device)
    projection = nn.Linear(net.num_features, net_teacher.config.dim).to(device) if beta > 0 else None
    optimizer = _build_optimizer(config, nn.ModuleList([net] + ([projection] if projection is not None else [])))
    caches = [decode_images(s, resize_size(config.transform, size), progress=progress) if config.decoded_cache
              else None for s in (data.train, data.selection, data.test)]
    steps_per_epoch = -(-len(data.train) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.base_optimizer if config.sam else optimizer,
                                                  partial(lr_factor, config, steps_per_epoch))
    dtype = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    state = RunState()
    if saved is not None:
        state = rundir.restore(saved, net, optimizer, scheduler, scaler)
        if projection is not None:
            projection.load_state_dict(saved["projection"])
    targets = None if teacher_online else teacher_targets(
        net_teacher, data.train, size, config.transform, beta > 0, config.eval_batch_size, device, caches[0], progress)
    rundir.start(config, data)
    rundir.atomic_text(json.dumps(options.to_dict(), indent=1), config.run_dir / "distill.json")
    dataset = IndexedImages(data.train, build_transforms(config.transform, size, train=True), caches[0])
    classes = tuple(data.train.classes)

    def step(images, labels, index):
        images, labels = to_device(images, device, config.channels_last), labels.to(device)
        if targets is None:
            z_t, f_t = teacher_outputs(net_teacher, images, beta > 0)
        else:
            z_t, f_t = targets[0][index].to(device), targets[1][index].to(device) if beta > 0 else None

        def forward_backward(sync: bool):  # one process: nothing to synchronise
            with autocast(device, dtype):
                z_s, f_s = net.logits_and_features(images)
                loss, parts = distillation_loss(z_s, labels, z_t, temperature, alpha,
                                                projection(f_s) if projection is not None else None, f_t, beta)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            return z_s, loss, parts

        z_s, loss, parts = optimizer_step(optimizer, forward_backward, config.sam, scaler)
        scheduler.step()
        return loss.detach(), parts, (z_s.argmax(1) == labels).sum()

    stopped_early = should_stop(_scores(state, config), config.patience, config.min_delta, len(data.selection))
    for epoch in range(state.epoch, state.epoch if stopped_early else config.epochs):
        shuffle = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, 0))
        order = torch.randperm(len(dataset), generator=shuffle)
        loader = DataLoader(dataset, batch_size=config.batch_size, sampler=order.tolist(),
                            num_workers=config.num_workers, generator=torch.Generator().manual_seed(0))
        torch.manual_seed(_epoch_seed(config.seed, epoch, 0))  # augmentation (workers: from the loader's generator)
        lr = config.lr * lr_factor(config, steps_per_epoch, epoch * steps_per_epoch)
        net.train()
        sums, t0 = torch.zeros(len(LOSS_NAMES) + 3, dtype=torch.float64), time.perf_counter()
        for i, (images, labels, index) in enumerate(tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}",
                                                         leave=False, disable=not progress)):
            loss, parts, correct = step(images, labels, index)
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {i + 1}; stopped, "
                                    f"{config.run_dir / 'last.pt'} holds the last good state")
            n = len(labels)
            sums += torch.cat([loss[None].double().cpu() * n, parts.double().cpu() * n,
                               torch.tensor([float(correct), n], dtype=torch.float64)])
        seconds, t1 = time.perf_counter() - t0, time.perf_counter()
        metrics = evaluate(net, data.selection, recipe=config.transform, batch_size=config.eval_batch_size,
                           device=device, cache=caches[1], progress=progress)
        n = float(sums[-1])
        row = {"epoch": epoch + 1, "lr": lr, "loss": float(sums[0]) / n,
               **{f"loss_{k}": float(v) / n for k, v in zip(LOSS_NAMES, sums[1:4])},
               "train_accuracy": float(sums[4]) / n,
               **{f"{config.selection}_{k}": metrics[k] for k in ("accuracy", "mean_class_accuracy", "macro_f1")},
               "train_seconds": round(seconds, 3), "eval_seconds": round(time.perf_counter() - t1, 3),
               "samples_per_s": round(n / seconds, 2), "steps": len(loader),
               "backbone_images": int(n) * (2 if config.sam else 1)}
        state.history.append(row)
        key = f"{config.selection}_accuracy"
        if state.best is None or row[key] > state.best[key]:
            state.best = row
            rundir.atomic_save({**rundir.best_checkpoint(net, config, classes, epoch + 1, metrics),
                                "distill": options.to_dict()}, config.run_dir / "best.pt")
            if config.selection == "test":
                rundir.write_confusion(metrics, classes, config.run_dir / "confusion.csv")
        state.epoch = epoch + 1
        rundir.atomic_save({**rundir.checkpoint(net, config, classes, optimizer, scheduler, scaler, state),
                            "distill": options.to_dict(),
                            "projection": projection.state_dict() if projection is not None else None},
                           config.run_dir / "last.pt")
        rundir.write_metrics(state.history, config.run_dir)
        stopped_early = should_stop(_scores(state, config), config.patience, config.min_delta, len(data.selection))
        if stopped_early:
            break
    return Run(config.run_dir, config, _finish(config, data, state, stopped_early, net, net_teacher, options,
                                               caches[2], device, progress))


def _scores(state: RunState, config: TrainConfig) -> list[float]:
    return [row[f"{config.selection}_accuracy"] for row in state.history]


def _finish(config, data, state, stopped_early, net, teacher, options, cache, device, progress) -> dict:
    """Score test (with ``selection: val``: only now, on best.pt's student and the last one; and the teacher),
    write confusion.csv and summary.json → the summary."""
    run_dir = config.run_dir
    chosen, last = dict(state.best), dict(state.history[-1])
    score = partial(evaluate, split=data.test, recipe=config.transform, batch_size=config.eval_batch_size,
                    device=device, cache=cache, progress=progress)
    if config.selection == "val":
        best_net = StudentNet(net.config).to(device)
        best_net.load_state_dict(read_torch_file(run_dir / "best.pt")[0]["state_dict"])
        for row, model in ((chosen, best_net), (last, net)):
            metrics = score(model)
            row.update({f"test_{k}": metrics[k] for k in ("accuracy", "mean_class_accuracy", "macro_f1")})
            if model is best_net:
                rundir.write_confusion(metrics, tuple(data.train.classes), run_dir / "confusion.csv")
    summary = rundir.write_summary(config, state, stopped_early, len(data.selection), len(data.test), len(data.test.skipped), chosen, last)
    summary.update(variant=options.student, student=options.student, teacher=options.teacher,  # not the teacher's
                   distill=options.to_dict(), teacher_test_accuracy=score(teacher)["accuracy"])
    rundir.atomic_text(json.dumps(summary, indent=1), run_dir / "summary.json")
    return summary


def _read_resume(path, config: TrainConfig, options: DistillOptions, student: StudentConfig) -> dict:
    """A distill last.pt to resume from: the same student, distillation options (the teacher may have moved) and
    recipe (every TrainConfig field but ``rundir.RESUMABLE``)."""
    state, _ = read_torch_file(path)
    if not (isinstance(state, dict) and state.get("format") == FORMAT and isinstance(state.get("distill"), dict)
            and "optimizer" in state):
        raise ConfigError(f"{path}: not a resumable distill checkpoint (a last.pt written by distill)")
    theirs = {**state["distill"], "teacher": options.teacher}
    if state["config"] != student.to_dict() or theirs != options.to_dict():
        raise ConfigError(f"{path}: was distilled into another student or with other options ({state['config']}, "
                          f"{state['distill']}); resume with the same ones, or start a new run")
    recipe = state.get("train_config") or {}
    changed = [k for k, v in config.to_dict().items() if k not in rundir.RESUMABLE and recipe.get(k) != v]
    if changed:
        raise ConfigError(f"{path}: was trained with another recipe ({', '.join(changed)} differ); resume with the "
                          f"same one, or start a new run")
    return state
