"""Where the network looks: Grad-CAM of the base branch, the CSA gates of the cross modules, and how much of a
map falls inside a ground-truth mask (SynthFER draws one per image).

Grad-CAM (pytorch-grad-cam) needs a grid of activations. The base encoder sees ``1 + 3n`` tokens, a class
token and the three pyramid scales of ``n = h × w`` tokens each, scale by scale, each scale's grid flattened
row by row. ``token_grid`` drops the class token and stacks the three scales as channels, ``(B, 3D, h, w)``,
so that Grad-CAM weighs each scale's channels on their own::

    cam = ReLU(Σ_s Σ_c α_{s,c} A_{s,c}),   α_{s,c} = mean_{h,w} ∂y/∂A_{s,c}

that is the sum of the three per-scale Grad-CAMs, before the ReLU. The layer is the last block's first
LayerNorm (as pytorch-grad-cam does for ViTs), not the block's output: the head reads only the class token
after the last block, so the patch tokens there get no gradient.

On a split: ``gradcams`` (each model, in batches), ``quadruplet_csa_maps`` and ``localisation``, the share
of each model's CAM energy inside SynthFER's action-unit masks beside that of a map spread evenly.

The maps are no finer than the token grid, ``side = backbone_size / 16`` tokens a side (``grid_side``): one
cell covers ``1 / side²`` of the image. Where a cell is as large as the masks' mean area share (``resolves``
false), a map cannot put its energy on the masks rather than on the face around them, and its energy share
says nothing about where the model looks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn

from ..data.sources import Split, read_image
from ..data.transforms import build_transforms
from ..models.qcs import QCSNet
from .stats import compare, with_holm


def grid_side(model: nn.Module) -> int:
    """The side of each scale's token grid, which Grad-CAM's maps and the CSA gates are made of:
    ``√tokens_per_scale = backbone_size / 16`` (the backbone's total stride)."""
    return math.isqrt(model.config.tokens_per_scale)


def resolves(side: int, mask_area: float) -> bool:
    """Whether a ``side × side`` map can single out a mask covering ``mask_area`` of the image (a fraction): one
    cell, ``1 / side²`` of the image, must be smaller than the mask."""
    return 1 / side ** 2 < mask_area


def token_grid(tokens: Tensor) -> Tensor:
    """``(B, 1 + 3n, D)`` encoder tokens → ``(B, 3D, √n, √n)``: class token dropped, scales as channels."""
    b, t, d = tokens.shape
    side = int(round(((t - 1) / 3) ** 0.5))
    if 3 * side * side + 1 != t:
        raise ValueError(f"expected 1 + 3n tokens with n a square, got {t}")
    grid = tokens[:, 1:].reshape(b, 3, side, side, d)
    return grid.permute(0, 1, 4, 2, 3).reshape(b, 3 * d, side, side)


def gradcam(model: nn.Module, images: Tensor, targets: Sequence[int] | None = None) -> np.ndarray:
    """Grad-CAM of the base branch (``QCSNet`` or ``BaseNet``) for ``images`` (B, 3, H, W) → (B, H, W) float32,
    each map min-max scaled to [0, 1] and resized to the input by pytorch-grad-cam. ``targets``: one class index
    per image; None explains the predicted class. Runs in eval mode; the model's mode is restored after."""
    # Imported here: pytorch-grad-cam loads OpenCV, matplotlib and SciPy, a second that training need not pay.
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    base = model.base if isinstance(model, QCSNet) else model
    if targets is not None:
        targets = [int(t) for t in targets]
        classes = base.encoder.head.out_features
        if len(targets) != len(images) or not all(0 <= t < classes for t in targets):
            raise ValueError(f"targets must be {len(images)} class indices in [0, {classes}), got {targets}")
        targets = [ClassifierOutputTarget(t) for t in targets]
    was_training = base.training
    cam = GradCAM(base, [base.encoder.blocks[-1].norm1], reshape_transform=token_grid)
    # Not `with cam:`: its __exit__ swallows IndexErrors.
    try:
        with torch.enable_grad():
            return cam(images.to(cam.device), targets)
    finally:
        cam.activations_and_grads.release()
        base.zero_grad()
        base.train(was_training)


def csa_maps(model: QCSNet, images: Sequence[Tensor]) -> list[list[np.ndarray]]:
    """The CSA gate of every token, per scale and branch: ``maps[s][x]`` is (B, √n, √n) for scale s and branch x
    (a, p, n, n2; DCS: a, p), in eval mode and without gradients.

    As in the cross module, ``Q_x = first half of W · LN₁(t_x)`` and ``A = CSA(Q_a, Q_p, Q_n, Q_n2)`` with the
    module's mode (``csa``); for QCS's ``sd``, ``A_a = softmax_t(φ(S_pa) + k·φ(D̃_na))``, a softmax over the
    image's own tokens, so each map is non-negative and sums to 1. The min and max inside S and D̃ are taken over
    the whole batch unless the model has ``per_sample_norm``, so a map depends on the other images in the batch.
    """
    if model.cross is None:
        raise ValueError("the baseline has no cross module, so it has no CSA maps")
    if model.config.csa == "sdpa":
        raise ValueError("csa 'sdpa' mixes the partner's tokens with an (n × n) attention; it has no gate per token")
    if len(images) != model.branches:
        raise ValueError(f"the {model.config.variant} variant takes {model.branches} image batches, got {len(images)}")
    device, side = next(model.parameters()).device, grid_side(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            tokens = [model.forward_features(x.to(device))[:, 1:] for x in images]
            scales = [t.chunk(3, dim=1) for t in tokens]  # per branch: 3 scales of (B, n, D)
            maps = []
            for s, m in enumerate(model.cross):
                queries = [m.proj(m.norm1(t[s])).chunk(2, dim=-1)[0] for t in scales]
                maps.append([a.reshape(-1, side, side).float().cpu().numpy() for a in m.maps(queries)])
    finally:
        model.train(was_training)
    return maps


def mask_energy_share(cam: np.ndarray, mask: np.ndarray | Image.Image) -> float:
    """``Σ cam · [mask > 0] / Σ cam``: the share of a map's energy (H, W) inside a mask. A mask of another size is
    resized to the map's (nearest), as the test transforms resize images. NaN for a map that is zero everywhere."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or cam.min() < 0:
        raise ValueError(f"expected a non-negative (H, W) map, got shape {cam.shape}")
    mask = Image.fromarray(np.asarray(mask) > 0)
    if mask.size != cam.shape[::-1]:
        mask = mask.resize(cam.shape[::-1], Image.NEAREST)
    total = cam.sum()
    return float((cam * np.asarray(mask)).sum() / total) if total > 0 else float("nan")


def mask_energy_shares(cams: np.ndarray, masks: Sequence[np.ndarray | Image.Image]) -> np.ndarray:
    """``mask_energy_share`` of each map (B, H, W) with its mask → (B,)."""
    if len(cams) != len(masks):
        raise ValueError(f"got {len(cams)} maps and {len(masks)} masks")
    return np.array([mask_energy_share(c, m) for c, m in zip(cams, masks)])


def read_masks(split: Split) -> list[Image.Image]:
    """The ground-truth masks (mode L, 0/255, at the image size) of a SynthFER split, from its ``meta.csv``."""
    root = Path(split.root)
    meta_file = root / "meta.csv"
    if split.paths is None or not meta_file.exists():
        raise FileNotFoundError(f"{meta_file}: not found, or the split holds no image files; masks come with "
                                f"SynthFER datasets (python -m qcslib synthfer)")
    mask_of = dict(pd.read_csv(meta_file, usecols=["path", "mask"]).itertuples(index=False))
    rel = [Path(p).relative_to(root).as_posix() for p in split.paths]
    missing = [r for r in rel if r not in mask_of]
    if missing:
        raise ValueError(f"{meta_file} has no mask for {len(missing)} image(s) of {split.dataset}/{split.split}, "
                         f"e.g. {missing[0]}")
    masks = []
    for r in rel:
        with Image.open(root / mask_of[r]) as mask:
            masks.append(mask.convert("L"))
    return masks


def image_batch(split: Split, indices: Sequence[int], image_size: int, recipe: str = "rafdb") -> Tensor:
    """The images at ``indices`` with the recipe's test transform at ``image_size`` → (len(indices), 3, H, W)."""
    transform = build_transforms(recipe, image_size, train=False)
    return torch.stack([transform(read_image(split, int(i))) for i in indices])


def gradcams(models: dict[str, nn.Module], split: Split, recipe: str = "rafdb",
             batch_size: int = 32) -> dict[str, np.ndarray]:
    """``gradcam`` of every image of ``split`` (the predicted class) for each ``{name: model}``, in batches of
    ``batch_size``, each model at its own image size → ``{name: (N, H, W)}``."""
    chunks = np.array_split(np.arange(len(split)), max(1, -(-len(split) // batch_size)))
    return {name: np.concatenate([gradcam(model, image_batch(split, chunk, model.config.image_size, recipe))
                                  for chunk in chunks]) for name, model in models.items()}


def probabilities(models: dict[str, nn.Module], split: Split, recipe: str = "rafdb") -> dict[str, np.ndarray]:
    """Each model's class probabilities for every image of ``split``, ``softmax(model(x))`` of the base branch in
    eval mode, each model at its own image size → ``{name: (N, C)}``. The model's mode is restored after."""
    out = {}
    for name, model in models.items():
        was_training = model.training
        device = next(model.parameters()).device
        try:
            with torch.inference_mode():
                images = image_batch(split, range(len(split)), model.config.image_size, recipe)
                out[name] = model.eval()(images.to(device)).float().softmax(1).cpu().numpy()
        finally:
            model.train(was_training)
    return out


def quadruplet_csa_maps(model: QCSNet, split: Split, quadruplet: Sequence[int],
                        recipe: str = "rafdb") -> list[list[np.ndarray]]:
    """``csa_maps`` of one quadruplet (a, p, n, n2 indices into ``split``; DCS takes a, p), each branch a batch of
    one image, so the min and max inside S and D̃ are that image pair's own."""
    return csa_maps(model, [image_batch(split, [i], model.config.image_size, recipe)
                            for i in quadruplet[:model.branches]])


def localisation(models: dict[str, nn.Module], split: Split, recipe: str = "rafdb") -> pd.DataFrame | None:
    """The share of CAM energy inside the action-unit masks (``mask_energy_shares``) on a SynthFER split: per model,
    and for an evenly spread map (the masks' mean area), the mean and sample std in % over the images where every
    model's map is defined, their number, and how many of each model's maps were zero everywhere (no share). None
    for other datasets, which have no masks."""
    if split.dataset != "synthfer":
        return None
    masks = read_masks(split)
    cams = gradcams(models, split, recipe)
    shape = next(iter(cams.values())).shape[1:]
    shares = {name: mask_energy_shares(cam, masks) for name, cam in cams.items()}
    shares["even spread"] = mask_energy_shares(np.ones((len(masks), *shape)), masks)
    common = np.all([np.isfinite(s) for s in shares.values()], axis=0)
    return pd.DataFrame.from_dict({name: {"mean %": 100 * s[common].mean(), "std %": 100 * s[common].std(ddof=1),
                                          "images": int(common.sum()), "zero maps": int(np.isnan(s).sum())}
                                   for name, s in shares.items()}, orient="index").round(2)


def compare_localisation(tables: dict[int, pd.DataFrame | None]) -> list[dict] | None:
    """QCS − each baseline in the tables (``baseline``, ``baseline_matched``) on the mean energy share (a fraction),
    paired over the seeds of ``{seed: localisation(...)}`` (``stats.compare``), one family under Holm's correction
    (``stats.with_holm``); None where there are no masks (the tables are None)."""
    if any(t is None for t in tables.values()):
        return None
    long = pd.DataFrame([{"variant": v, "seed": seed, "share": t.loc[v, "mean %"] / 100}
                         for seed, t in tables.items() for v in t.index if v != "even spread"])
    references = [r for r in ("baseline", "baseline_matched") if r in set(long["variant"])]
    return with_holm([compare(long, "qcs", r, "share") for r in references])
