"""The official training and test transforms, one recipe per dataset family, at any image size.

| recipe    | train (PIL → tensor)                                                                   | test                       |
|-----------|-----------------------------------------------------------------------------------------|----------------------------|
| rafdb     | Resize(s), HFlip, ColorJitter(0.2, 0.2, 0.2, 0.1), Normalize, RandomErasing(0.02–0.1)     | Resize(s), Normalize       |
| ferplus   | Resize(s), HFlip, Normalize, RandomErasing(0.02–0.1)                                      | Resize(s), Normalize       |
| affectnet | Resize(s·236/224), HFlip, Rotation(12°), RandomCrop(s), ColorJitter, Normalize, Erasing(0.03–0.1) | Resize(s·236/224), CenterCrop(s), Normalize |

These are the official mains' (QCS and DCS on RAF-DB; FERPlus and DCS AffectNet-8; QCS and DCS
AffectNet-7, QCS AffectNet-8). Normalize uses the ImageNet mean and std.
"""
from __future__ import annotations

from torchvision import transforms as T

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
