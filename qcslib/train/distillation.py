"""Distilling a trained QCS teacher into a light timm student: the ``kd`` objective's task (``DistillationTask``),
which ``loop.fit`` trains like any other (``loop.distill`` builds its config).

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

The images: every training image once per epoch (``ImageSampler``: an order drawn from (seed, epoch), sharded
over DDP ranks), each augmented from its own seed (``SeededImages``), or, with ``augment_on_device``, gathered a
batch at a time from the decoded cache (``CachedImages``) and augmented on the device as QCS's quadruplets are,
seeded from (seed, epoch, rank, step). The run's config.yaml names the student
under ``model`` (``architecture: timm``) and the teacher under ``distill``; its summary names the student as its
``variant`` and adds the teacher, the distillation options and the teacher's own test accuracy.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.datasets import CachedImages, ImageDataset, SeededImages, as_batch
from ..data.quadruplets import ImageSampler
from ..data.sources import Split
from ..data.transforms import build_split_transforms, build_transforms
from ..models.qcs import QCSNet
from ..models.student import StudentNet
from ..models.weights import CheckpointError, load_checkpoint
from .config import TrainConfig
from .distributed import World
from .evaluation import evaluate
from .losses import distillation_loss
from .rundir import EpochSums
from .runtime import to_device
from .tasks import Data, augment_batch, decoded_caches, epoch_seed, train_loader

LOSS_NAMES = ["ce", "kd", "feature"]


@torch.no_grad()  # not inference_mode: the features are a target the feature term's backward saves
def teacher_outputs(teacher: nn.Module, images: Tensor, features: bool) -> tuple[Tensor, Tensor | None]:
    """The teacher's base logits (B, C) and, if ``features``, its pre-logit features (B, D), in fp32."""
    z = teacher.forward_features(images)
    return teacher.forward_head(z).float(), teacher.forward_head(z, pre_logits=True).float() if features else None


def teacher_targets(teacher: nn.Module, split: Split, image_size: int, recipe: str, features: bool = False,
                    batch_size: int = 64, device: torch.device | str = "cpu", cache=None,
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


def load_teacher(path: str | Path) -> tuple[QCSNet, dict]:
    """A QCS checkpoint (ours or official), frozen and in eval mode, and its metadata; a one-line CheckpointError
    for a missing file or a student."""
    if not Path(path).is_file():
        raise CheckpointError(f"teacher {path}: no such file; pass a QCS checkpoint (a run's best.pt)")
    teacher, report = load_checkpoint(path)
    if not isinstance(teacher, QCSNet):
        raise CheckpointError(f"teacher {path}: is a {report.meta.get('timm_name')} student, expected a QCS checkpoint")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval(), report.meta


def check_teacher(path: str | Path, teacher: QCSNet, meta: dict, config: TrainConfig, classes: tuple[str, ...]):
    """The teacher of ``config``'s student: its classes are the data's ``classes``, its image size the student's
    and, where it stores one, its transform recipe the config's; a one-line CheckpointError otherwise."""
    own = meta.get("classes")
    if (own is not None and tuple(own) != tuple(classes)) or teacher.config.num_classes != len(classes):
        theirs = ", ".join(own) if own else f"{teacher.config.num_classes} classes"
        raise CheckpointError(f"teacher {path}: has the classes ({theirs}), the data has ({', '.join(classes)})")
    if meta.get("transform") not in (None, config.transform):
        raise CheckpointError(f"teacher {path}: was trained with the {meta['transform']} transform recipe, the "
                              f"config has {config.transform}; --set transform={meta['transform']}")
    if teacher.config.image_size != config.model.image_size:
        raise CheckpointError(f"teacher {path}: takes {teacher.config.image_size}-pixel images, the student "
                              f"(model.image_size) {config.model.image_size}")


class StudentForward(nn.Module):
    """What trains, as DDP sees it: images → (student logits z_s, P f_s or None without the feature term)."""

    def __init__(self, net: StudentNet, projection: nn.Linear | None):
        super().__init__()
        self.net, self.projection = net, projection

    def forward(self, images: Tensor):
        z_s, f_s = self.net.logits_and_features(images)
        return z_s, self.projection(f_s) if self.projection is not None else None


class DistillationTask:
    """The ``kd`` objective (see the module docstring); the task interface is ``tasks``'."""

    def __init__(self, config: TrainConfig, data: Data, world: World, device: torch.device, progress: bool,
                 pretrained: bool = True):
        options, classes = config.distill, tuple(data.train.classes)
        self.config, self.world, self.device, self.options = config, world, device, options
        teacher, meta = load_teacher(options.teacher)
        check_teacher(options.teacher, teacher, meta, config, classes)
        self.teacher = teacher.to(device)
        self.net = net = StudentNet(config.model).to(device)
        if config.channels_last:
            net.to(memory_format=torch.channels_last)
        self.projection = nn.Linear(net.num_features, teacher.config.dim).to(device) if options.beta > 0 else None
        self.module = StudentForward(net, self.projection)
        self.loss_names = LOSS_NAMES
        size = config.model.image_size
        train_cache, *caches = decoded_caches(config, data, size, progress)
        self.caches = tuple(caches)
        self.targets = None if options.teacher_online else teacher_targets(
            teacher, data.train, size, config.transform, options.beta > 0, config.eval_batch_size, device,
            train_cache, progress)
        self.sampler = ImageSampler(len(data.train), config.seed, world.rank, world.size)
        if config.augment_on_device:
            transform, self.augment = build_split_transforms(config.transform, size, config.hue)
        else:
            transform, self.augment = build_transforms(config.transform, size, train=True, hue=config.hue), None
        if self.augment is not None and train_cache is not None:  # the loader half would only copy the pixels
            dataset, collate = CachedImages(data.train, train_cache), as_batch
        else:
            dataset, collate = SeededImages(data.train, transform, train_cache), None
        self.loader = train_loader(config, dataset, self.sampler, world, device, collate)

    def batch(self, batch, epoch: int, step: int):
        if self.augment is not None:
            batch = augment_batch(batch, self.augment, self.device,
                                  epoch_seed(self.config.seed, epoch, self.world.rank, step))
        images, labels, index = batch
        images, labels = to_device(images, self.device, self.config.channels_last), labels.to(self.device)
        features = self.options.beta > 0
        if self.targets is None:
            z_t, f_t = teacher_outputs(self.teacher, images, features)
        else:
            z_t = self.targets[0][index].to(self.device)
            f_t = self.targets[1][index].to(self.device) if features else None
        return [images], (labels, z_t, f_t)

    def loss(self, out, targets):
        (z_s, projected), (labels, z_t, f_t) = out, targets
        o = self.options
        loss, parts = distillation_loss(z_s, labels, z_t, o.temperature, o.alpha, projected, f_t, o.beta)
        return loss, parts, (z_s.argmax(1) == labels).sum()

    def epoch_loss(self, sums: EpochSums) -> float:
        """L's epoch mean, (1 − α) CE + α KD + β feature over the terms' epoch means (L is linear in them)."""
        o = self.options
        ce, kd, feature = (float(v) / float(sums.samples) for v in sums.losses)
        return (1 - o.alpha) * ce + o.alpha * kd + o.beta * feature

    def columns(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"projection": self.projection.state_dict() if self.projection is not None else None}

    def load_state_dict(self, saved: dict) -> None:
        if self.projection is not None:
            self.projection.load_state_dict(saved["projection"])

    def summary(self, data: Data) -> dict:
        """The student, the teacher, the options, and the teacher's test accuracy (the same images)."""
        c = self.config
        teacher = evaluate(self.teacher, data.test, recipe=c.transform, batch_size=c.eval_batch_size,
                           device=self.device, precision="fp32", channels_last=c.channels_last, cache=self.caches[1],
                           progress=False)
        return {"student": c.model.timm_name, "teacher": self.options.teacher,
                "distill": {"student": c.model.timm_name, **c.to_dict()["distill"]},
                "teacher_test_accuracy": teacher["accuracy"]}
