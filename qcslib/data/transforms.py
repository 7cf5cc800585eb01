"""The official training and test transforms, one recipe per dataset family, at any image size.

| recipe    | train (PIL → tensor)                                                                   | test                       |
|-----------|-----------------------------------------------------------------------------------------|----------------------------|
| rafdb     | Resize(s), HFlip, ColorJitter(0.2, 0.2, 0.2, hue), Normalize, RandomErasing(0.02–0.1)     | Resize(s), Normalize       |
| ferplus   | Resize(s), HFlip, Normalize, RandomErasing(0.02–0.1)                                      | Resize(s), Normalize       |
| affectnet | Resize(s·236/224), HFlip, Rotation(12°), RandomCrop(s), ColorJitter, Normalize, Erasing(0.03–0.1) | Resize(s·236/224), CenterCrop(s), Normalize |

These are the official mains' (QCS and DCS on RAF-DB; FERPlus and DCS AffectNet-8; QCS and DCS
AffectNet-7, QCS AffectNet-8), whose ColorJitter shifts the hue by up to ``hue`` = 0.1 of the hue circle; a
training config's ``hue`` widens it (0.5: any hue), to take away a colour shortcut. Normalize uses the ImageNet
mean and std. ``recipe_for`` says which
recipe a checkpoint is evaluated with on a dataset.

``build_split_transforms`` cuts a train recipe in two, so that the loader only decodes and resizes and
``BatchAugment`` does the rest on whole batches on the device (``augment_on_device`` in the training
config): for when the CPU cannot keep a GPU fed, and several times cheaper than per-image PIL on a CPU too.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision import transforms as T
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv  # batched; tested against
                                                                                  # the public adjust_hue

RECIPES = ("rafdb", "ferplus", "affectnet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HUE = 0.1  # the recipes' colour jitter: hue shifted by up to ±0.1 of the hue circle
_DATASET_RECIPE = {"rafdb": "rafdb", "ferplus": "ferplus", "affectnet7": "affectnet", "affectnet8": "affectnet"}


def recipe_for(dataset: str | None, checkpoint_meta: dict | None = None, default: str = "rafdb") -> str:
    """The recipe to evaluate a checkpoint with on ``dataset``: the checkpoint's own (``meta["transform"]``, which
    ours store from their training config), else the official one of the dataset (rafdb, ferplus, or affectnet for
    affectnet7/8; official checkpoints store none), else ``default`` (other datasets, or ``dataset`` None)."""
    return (checkpoint_meta or {}).get("transform") or _DATASET_RECIPE.get(dataset, default)


def resize_size(recipe: str, image_size: int) -> int:
    """The side the recipe first resizes images to: ``image_size``, or ``round(image_size · 236 / 224)`` for
    AffectNet (which then crops). A decoded cache at this size loses nothing."""
    return round(image_size * 236 / 224) if recipe == "affectnet" else image_size


def check_hue(hue: float) -> None:
    """Raise ValueError unless ``hue`` (the colour jitter's largest hue shift) is in [0, 0.5]."""
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5] (a fraction of the hue circle; the recipes' is {HUE}), got {hue}")


def build_transforms(recipe: str = "rafdb", image_size: int = 224, train: bool = True, hue: float = HUE
                     ) -> T.Compose:
    """The ``recipe``'s train or test transform, producing (3, image_size, image_size) float tensors. ``hue``: the
    colour jitter's largest hue shift (recipes with colour jitter; 0.5 draws any hue)."""
    if recipe not in RECIPES:
        raise ValueError(f"transform recipe must be one of {RECIPES}, got {recipe!r}")
    check_hue(hue)
    s = image_size
    to_tensor = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    jitter = T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=hue)
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


def build_split_transforms(recipe: str = "rafdb", image_size: int = 224, hue: float = HUE
                           ) -> tuple[T.Compose, BatchAugment]:
    """The train recipe cut in two: ``(loader part, batch part)``.

    The loader part only resizes and returns uint8 (3, s', s') tensors (s' = ``resize_size``), which is cheap;
    ``BatchAugment`` does the rest (flip, rotation and crop, colour jitter, normalisation, erasing) on whole
    batches on the device, each image with its own random draw (``augment_on_device`` in the training config)."""
    if recipe not in RECIPES:
        raise ValueError(f"transform recipe must be one of {RECIPES}, got {recipe!r}")
    return T.Compose([T.Resize((resize_size(recipe, image_size),) * 2), T.PILToTensor()]), \
        BatchAugment(recipe, image_size, hue)


class BatchAugment:
    """``augment(batch)``: a uint8 (B, 3, H, W) batch on any device → the rest of the recipe's train transform,
    as normalised float32 (B, 3, s, s), vectorised over the batch with one random draw per image:

        flip (p ½) → [affectnet: rotate by U(−12°, 12°), nearest, zero fill; random s × s crop]
        → [rafdb, affectnet: colour jitter, its four steps in a random order per image:
           brightness x·b, contrast b·x + (1 − b)·mean(gray x), saturation b·x + (1 − b)·gray x (each
           b ~ U(0.8, 1.2), clamped to [0, 1]), hue h + U(−hue, hue) in HSV (``hue`` 0.1 in the recipes)]
        → normalise (ImageNet) → erasing (p ½: a zero rectangle of U(scale) of the area, aspect ratio
           log-uniform in (0.3, 3.3), the first of 10 draws that fits, as torchvision's RandomErasing)

    Each step equals torchvision's ``v2.functional`` one with the same parameters (tests/test_transforms.py).
    The draws come from torch's CPU generator: seed it (``torch.random.fork_rng`` + ``manual_seed``) to repeat
    them."""

    def __init__(self, recipe: str, image_size: int, hue: float = HUE):
        if recipe not in RECIPES:
            raise ValueError(f"transform recipe must be one of {RECIPES}, got {recipe!r}")
        check_hue(hue)
        self.recipe, self.size, self.hue = recipe, image_size, hue
        self.erase_scale = (0.03, 0.1) if recipe == "affectnet" else (0.02, 0.1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a uint8 (B, 3, H, W) batch, got {batch.dtype} {tuple(batch.shape)}")
        n = len(batch)
        x = batch.float().div_(255)
        x = torch.where(_draw(n, x.device) < 0.5, x.flip(-1), x)
        if self.recipe == "affectnet":
            x = rotate_and_crop(x, _draw(n, x.device, -12, 12), self.size)
        if self.recipe != "ferplus":
            x = color_jitter(x, *(_draw(n, x.device, 0.8, 1.2) for _ in range(3)),
                             _draw(n, x.device, -self.hue, self.hue),
                             torch.argsort(torch.rand(n, 4), dim=1).to(x.device))
        x = self.normalize(x)
        return erase(x, *erasing_boxes(n, x.shape[-2], x.shape[-1], self.erase_scale, x.device))

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) / std`` with ImageNet's per-channel mean and std."""
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


def _draw(n: int, device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """n draws of U(low, high) from torch's CPU generator, shaped (n, 1, 1, 1), on ``device``."""
    return torch.empty(n).uniform_(low, high).view(n, 1, 1, 1).to(device)


def rotate_and_crop(x: torch.Tensor, degrees: torch.Tensor, size: int) -> torch.Tensor:
    """Rotate each image about its centre by ``degrees`` (B, 1, 1, 1), counter-clockwise, with nearest
    sampling and zero fill (``v2.functional.rotate``), then cut a random ``size`` × ``size`` crop of it."""
    n, _, h, w = x.shape
    top = torch.randint(0, h - size + 1, (n,)).to(x.device).view(n, 1, 1)
    left = torch.randint(0, w - size + 1, (n,)).to(x.device).view(n, 1, 1)
    # output pixel centres of the crop, in the full image's coordinates centred on its middle
    ys = torch.arange(size, device=x.device).view(1, size, 1) + top + 0.5 - h / 2
    xs = torch.arange(size, device=x.device).view(1, 1, size) + left + 0.5 - w / 2
    t = torch.deg2rad(degrees.view(n, 1, 1))
    cos, sin = torch.cos(t), torch.sin(t)
    grid = torch.stack([(cos * xs - sin * ys) / (w / 2), (sin * xs + cos * ys) / (h / 2)], dim=-1)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (B, 1, H, W), as torchvision's rgb_to_grayscale."""
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def color_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                 hue: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Colour jitter of float images in [0, 1] with per-image factors (B, 1, 1, 1) and an order (B, 4) of the
    steps 0 brightness, 1 contrast, 2 saturation, 3 hue (see ``BatchAugment``)."""
    steps = (
        lambda y, f: (y * f).clamp(0, 1),
        lambda y, f: (f * y + (1 - f) * _gray(y).mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1),
        lambda y, f: (f * y + (1 - f) * _gray(y)).clamp(0, 1),
        _shift_hue,
    )
    factors = (brightness, contrast, saturation, hue)
    x = x.clone()
    for position in range(4):
        for step, (apply, f) in enumerate(zip(steps, factors)):
            chosen = torch.nonzero(order[:, position] == step).squeeze(1)
            if len(chosen):
                x[chosen] = apply(x[chosen], f[chosen])
    return x


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(x)
    return _hsv_to_rgb(torch.cat([(hsv[:, :1] + shift).remainder(1.0), hsv[:, 1:]], dim=1))


def erasing_boxes(n: int, h: int, w: int, scale: tuple[float, float], device, p: float = 0.5,
                  ratio: tuple[float, float] = (0.3, 3.3), tries: int = 10) -> tuple[torch.Tensor, ...]:
    """Per image ``(top, left, height, width)`` of the rectangle torchvision's RandomErasing would erase, height
    0 for the images it leaves alone (with probability 1 − p, or when none of ``tries`` draws fits)."""
    area = h * w * torch.empty(n, tries).uniform_(*scale)
    aspect = torch.exp(torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    eh, ew = torch.round(torch.sqrt(area * aspect)).long(), torch.round(torch.sqrt(area / aspect)).long()
    fits = (eh < h) & (ew < w)
    first = fits.float().argmax(dim=1, keepdim=True)
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    use = fits.any(dim=1) & (torch.rand(n) < p)
    top = (torch.rand(n) * (h - eh + 1)).long()
    left = (torch.rand(n) * (w - ew + 1)).long()
    return tuple(v.to(device) for v in (top, left, torch.where(use, eh, 0), ew))


def erase(x: torch.Tensor, top, left, height, width) -> torch.Tensor:
    """Zero each image's rectangle ``[top, top + height) × [left, left + width)`` (height 0: nothing)."""
    rows = torch.arange(x.shape[-2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[-1], device=x.device).view(1, 1, -1)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + height).view(-1, 1, 1))
              & (cols >= left.view(-1, 1, 1)) & (cols < (left + width).view(-1, 1, 1)))
    return x.masked_fill(inside.unsqueeze(1), 0.0)
