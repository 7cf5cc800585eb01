"""The official training and test transforms, one recipe per dataset family, at any image size.

| recipe    | train (PIL → tensor)                                                                   | test                       |
|-----------|-----------------------------------------------------------------------------------------|----------------------------|
| rafdb     | Resize(s), HFlip, ColorJitter(0.2, 0.2, 0.2, 0.1), Normalize, RandomErasing(0.02–0.1)     | Resize(s), Normalize       |
| ferplus   | Resize(s), HFlip, Normalize, RandomErasing(0.02–0.1)                                      | Resize(s), Normalize       |
| affectnet | Resize(s·236/224), HFlip, Rotation(12°), RandomCrop(s), ColorJitter, Normalize, Erasing(0.03–0.1) | Resize(s·236/224), CenterCrop(s), Normalize |

These are the official mains' (QCS and DCS on RAF-DB; FERPlus and DCS AffectNet-8; QCS and DCS
AffectNet-7, QCS AffectNet-8). Normalize uses the ImageNet mean and std.

``build_split_transforms`` cuts a train recipe in two, so that the loader only decodes and resizes and the
device does the rest (``augment_on_device`` in the training config), for when the CPU cannot keep up.
"""
from __future__ import annotations

import torch
from torchvision import transforms as T
from torchvision.transforms import v2

RECIPES = ("rafdb", "ferplus", "affectnet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_size(recipe: str, image_size: int) -> int:
    """The side the recipe first resizes images to: ``image_size``, or ``round(image_size · 236 / 224)`` for
    AffectNet (which then crops). A decoded cache at this size loses nothing."""
    return round(image_size * 236 / 224) if recipe == "affectnet" else image_size


def build_transforms(recipe: str = "rafdb", image_size: int = 224, train: bool = True) -> T.Compose:
    """The ``recipe``'s train or test transform, producing (3, image_size, image_size) float tensors."""
    if recipe not in RECIPES:
        raise ValueError(f"transform recipe must be one of {RECIPES}, got {recipe!r}")
    s = image_size
    to_tensor = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    jitter = T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1)
    if recipe == "affectnet":
        big = resize_size(recipe, s)
        if not train:
            return T.Compose([T.Resize((big, big)), T.CenterCrop((s, s)), *to_tensor])
        return T.Compose([T.Resize((big, big)), T.RandomHorizontalFlip(), T.RandomRotation(12), T.RandomCrop((s, s)),
                          jitter, *to_tensor, T.RandomErasing(scale=(0.03, 0.1))])
    if not train:
        return T.Compose([T.Resize((s, s)), *to_tensor])
    colour = [jitter] if recipe == "rafdb" else []
    return T.Compose([T.Resize((s, s)), T.RandomHorizontalFlip(), *colour, *to_tensor,
                      T.RandomErasing(scale=(0.02, 0.1))])


def build_split_transforms(recipe: str = "rafdb", image_size: int = 224) -> tuple[T.Compose, DeviceAugment]:
    """The train recipe cut in two, for augmenting on the GPU: ``(loader part, device part)``.

    The loader part only resizes and returns uint8 (3, s', s') tensors (s' = ``resize_size``), which is cheap;
    the device part does the rest (flip, rotation and crop, colour jitter, normalisation, erasing) with
    ``torchvision.transforms.v2`` on the batch once it is on the device, each image with its own random draw."""
    if recipe not in RECIPES:
        raise ValueError(f"transform recipe must be one of {RECIPES}, got {recipe!r}")
    big = resize_size(recipe, image_size)
    loader = T.Compose([T.Resize((big, big)), T.PILToTensor()])
    steps = [v2.ToDtype(torch.float32, scale=True), v2.RandomHorizontalFlip()]
    if recipe == "affectnet":
        steps += [v2.RandomRotation(12), v2.RandomCrop((image_size, image_size))]
    if recipe in ("rafdb", "affectnet"):
        steps.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1))
    steps += [v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
              v2.RandomErasing(scale=(0.03, 0.1) if recipe == "affectnet" else (0.02, 0.1))]
    return loader, DeviceAugment(v2.Compose(steps))


class DeviceAugment:
    """``augment(batch)``: a uint8 (B, 3, H, W) batch on any device → augmented, normalised float32, one random
    draw per image (v2 transforms draw one set of parameters per call, so images go through one by one). The
    draws come from torch's CPU generator: seed it (``torch.random.fork_rng`` + ``manual_seed``) to repeat them."""

    def __init__(self, transform: v2.Compose):
        self.transform = transform

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype != torch.uint8 or batch.ndim != 4:
            raise ValueError(f"expected a uint8 (B, 3, H, W) batch, got {batch.dtype} {tuple(batch.shape)}")
        return torch.stack([self.transform(image) for image in batch])
