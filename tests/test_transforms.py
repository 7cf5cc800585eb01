"""BatchAugment: each vectorised step equals torchvision's per-image one with the same parameters; recipe_for."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from qcslib.data.sources import DATASETS
from qcslib.data.transforms import (RECIPES, BatchAugment, build_split_transforms, color_jitter, erase, erasing_boxes,
                                    recipe_for, rotate_and_crop)


def images(n=6, size=20, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def column(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1)


def test_colour_jitter_matches_torchvision_step_by_step_in_each_images_order():
    x = images()
    b, c, s, h = (column(v) for v in ([0.8, 1.2, 1.0, 0.9, 1.1, 0.85], [1.2, 0.8, 0.9, 1.1, 1.0, 1.15],
                                      [0.9, 1.1, 1.2, 0.8, 0.95, 1.05], [0.1, -0.1, 0.05, 0.0, -0.03, 0.07]))
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1], [0, 2, 1, 3], [3, 1, 2, 0]])
    out = color_jitter(x, b, c, s, h, order)
    steps = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(len(x)):
        y = x[i]
        factors = [float(b[i]), float(c[i]), float(s[i]), float(h[i])]
        for step in order[i].tolist():
            y = steps[step](y, factors[step])
        torch.testing.assert_close(out[i], y, atol=1e-5, rtol=0)


def test_rotation_and_crop_match_torchvision():
    x = images(4, 24)
    angles = [12.0, -7.5, 3.0, -12.0]
    torch.manual_seed(1)
    out = rotate_and_crop(x, column(angles), 20)
    torch.manual_seed(1)  # the same crop offsets
    tops, lefts = torch.randint(0, 5, (4,)), torch.randint(0, 5, (4,))
    for i, angle in enumerate(angles):
        rotated = TF.rotate(x[i], angle, interpolation=TF.InterpolationMode.NEAREST)
        expected = rotated[:, tops[i]: tops[i] + 20, lefts[i]: lefts[i] + 20]
        # nearest sampling may round the other way on a few pixels that sit on a boundary
        assert (out[i] != expected).any(0).float().mean() < 0.02


def test_erasing_zeroes_one_fitting_rectangle_as_torchvision_draws_it():
    torch.manual_seed(0)
    top, left, height, width = erasing_boxes(4000, 32, 32, (0.02, 0.1), "cpu")
    used = height > 0
    assert 0.45 < used.float().mean() < 0.55  # p = 0.5
    area = (height * width)[used].float() / 32 ** 2
    assert area.min() > 0.01 and area.max() < 0.12 and (top + height <= 32).all() and (left + width <= 32).all()
    x = images(3, 10)
    out = erase(x, torch.tensor([1, 0, 4]), torch.tensor([2, 5, 0]), torch.tensor([3, 0, 6]), torch.tensor([4, 2, 5]))
    torch.testing.assert_close(out[0], TF.erase(x[0], 1, 2, 3, 4, torch.tensor(0.0)))
    torch.testing.assert_close(out[1], x[1])  # height 0: left alone
    torch.testing.assert_close(out[2], TF.erase(x[2], 4, 0, 6, 5, torch.tensor(0.0)))


@pytest.mark.parametrize("recipe, size, loaded", [("rafdb", 16, 16), ("ferplus", 16, 16), ("affectnet", 16, 17)])
def test_the_batch_half_draws_per_image_and_repeats_under_a_seed(recipe, size, loaded):
    loader, augment = build_split_transforms(recipe, size)
    x = loader(Image.fromarray(np.full((40, 40, 3), 128, np.uint8)))
    assert x.dtype == torch.uint8 and x.shape == (3, loaded, loaded)
    batch = torch.stack([torch.arange(loaded * loaded * 3).reshape(3, loaded, loaded) % 256] * 64).to(torch.uint8)
    torch.manual_seed(0)
    out = augment(batch)
    torch.manual_seed(0)
    assert torch.equal(out, augment(batch))
    assert out.shape == (64, 3, size, size) and out.dtype == torch.float32
    assert len({o.numpy().tobytes() for o in out}) > 16  # each image its own draw (one per batch: 2 at most)
    with pytest.raises(ValueError, match="expected a uint8"):
        augment(batch.float())


def test_the_batch_augment_without_randomness_is_the_test_transform():
    """Flip, jitter and erasing switched off by their draws: only the normalisation is left."""
    from qcslib.data.transforms import build_transforms
    augment = BatchAugment("rafdb", 8)
    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    expected = torch.stack([build_transforms("rafdb", 8, train=False)(Image.fromarray(b.permute(1, 2, 0).numpy()))
                            for b in batch])
    torch.testing.assert_close(augment.normalize(batch.float() / 255), expected, atol=1e-6, rtol=0)


def test_seeded_augmentation_leaves_the_cuda_generators_alone(monkeypatch):
    """Per-step and per-item seeds reseed torch's CPU generator inside fork_rng(devices=[]), which restores only
    that one: reseeding CUDA there (as torch.manual_seed does) would change every later CUDA draw."""
    from qcslib.data.datasets import QuadrupletDataset
    from qcslib.data.sources import Split
    from qcslib.train.tasks import augment_batch
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", seeded.append)
    _, augment = build_split_transforms("rafdb", 32)
    batch = [torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8) for _ in range(4)] + [torch.zeros(2), torch.ones(2)]
    augment_batch(batch, augment, torch.device("cpu"), seed=5)
    split = Split("list", "train", Path("."), ["a", "b"], np.array([0, 1]), None, np.zeros((2, 48, 48), np.uint8), None)
    QuadrupletDataset(split, build_split_transforms("rafdb", 32)[0])[(0, 0, 1, 1, 9)]
    assert seeded == []


def test_a_checkpoint_is_evaluated_with_its_own_recipe_else_its_datasets():
    assert recipe_for("ferplus", {"transform": "affectnet", "classes": None}) == "affectnet"
    assert [recipe_for(d, {}) for d in ("rafdb", "ferplus", "affectnet7", "affectnet8")] == [
        "rafdb", "ferplus", "affectnet", "affectnet"]
    assert recipe_for("affectnet8", {"transform": None}) == "affectnet"  # an official checkpoint stores none
    assert recipe_for("synthfer") == recipe_for(None) == "rafdb"
    assert recipe_for("folder", {}, default="ferplus") == "ferplus" and recipe_for("rafdb", default="ferplus") == "rafdb"
    assert {recipe_for(d) for d in DATASETS} <= set(RECIPES)


@pytest.mark.parametrize("hue", [0.1, 0.5])
def test_the_hue_setting_bounds_the_hue_shift_on_both_paths(hue):
    """A flat red batch through the batch augment and the PIL transform: each image's hue moves by at most
    ``hue`` of the circle, and at 0.5 the shifts spread far past the recipes' 0.1."""
    from qcslib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
    from torchvision.transforms.v2.functional._color import _rgb_to_hsv
    red = torch.zeros(300, 3, 12, 12, dtype=torch.uint8)
    red[:, 0], red[:, 1:] = 200, 40
    torch.manual_seed(0)
    batched = BatchAugment("rafdb", 12, hue=hue)(red)
    pil = build_transforms("rafdb", 12, train=True, hue=hue)
    single = torch.stack([pil(Image.fromarray(image.permute(1, 2, 0).numpy())) for image in red[:100]])
    for out in (batched, single):
        x = (out * column(IMAGENET_STD).view(1, 3, 1, 1) + column(IMAGENET_MEAN).view(1, 3, 1, 1)).clamp(0, 1)
        h = _rgb_to_hsv(x)[:, 0].flatten(1).median(dim=1).values  # erasing leaves most pixels alone
        shift = torch.minimum(h, 1 - h)  # red is hue 0: the distance round the circle
        assert shift.max() <= hue + 0.01 and shift.max() > 0.8 * hue
    with pytest.raises(ValueError, match=r"hue must be in \[0, 0.5\].*got 0.7"):
        BatchAugment("rafdb", 12, hue=0.7)
