"""SynthFER: a procedural facial-expression dataset, hard in the ways real FER is hard.

Each image is a cartoon face drawn from FACS action units (AUs). A class is a prototype set of AUs
(``PROTOTYPES``) whose intensities vary per image and per person; weak AUs outside the prototype,
dropped prototype AUs and low intensities make classes overlap (fear/surprise, anger/disgust,
sad/neutral). Identities (face shape, skin, eyes, nose, hair, beard, glasses) are disjoint between
the train, val and test splits. Nuisances: pose (rotation, scale, shift), lighting gradient, blur,
noise, occluders (a hand or a bar) and background clutter. Train and val labels carry label noise.

The *bias attribute* is the background hue, one hue per class. In train it is the true class's hue
with probability ``bias_strength`` and a uniformly random hue otherwise, so
``P(aligned) = bias_strength + (1 - bias_strength) / classes``; in test it is always random. This is
the unlabelled redundant feature that the QCS paper sets out to remove.

The *val* split is what a held-out part of a real training set is: other identities, drawn like train
(the same label noise and the same background bias). Choosing a checkpoint on it uses nothing of test,
and, as with real data, the shortcut is as present there as in train. Test labels are clean.

The defaults are calibrated so that the tiny baseline (``QCSConfig.sized("tiny", variant="baseline")``,
64 px, Adam 3e-4, batch 64, 800 steps: about 3 CPU minutes) ends near 50 % test accuracy (chance 14 %),
far from saturation, and so that the background shortcut visibly costs accuracy on bias-conflicting test
images as ``bias_strength`` rises.

Layout written by :func:`generate` (paths relative to ``out``)::

    images/<split>/<id>_<n>.png   RGB, size × size; split: train | val | test
    masks/<split>/<id>_<n>.png    L, 0/255: areas of the AUs at or above mask_threshold, posed like the face
                                  (occluders are not cut out: meta's ``occluded`` is the covered fraction)
    train.txt, val.txt, test.txt  "<image path> <label>" per line (train and val labels after label noise)
    classes.txt                   class names in label order
    meta.csv                      one row per image: labels, AU intensities, attribute, nuisances, mask path
    settings.json                 the settings and generator version; written last, it marks completion

Every image is a function of ``(settings, image index)`` alone: the labels, attributes and label noise
come from one plan RNG, identities from ``SeedSequence([seed, 1, identity])`` and each image from
``SeedSequence([seed, 2, index])``, so the output does not depend on the number of workers.

Geometry lives in *face units*: the origin is the face centre, x points to image right, y down, and
the face is about 2 units wide; "left" and "right" (meta's ``side``) are the image's sides, x < 0 and
x > 0. One affine map (pose × supersampling) takes face units to pixels; the face is drawn at
``SUPERSAMPLE``× and box-downsampled, which anti-aliases it.
"""
from __future__ import annotations

import csv
import functools
import json
import math
import multiprocessing
import os
import shutil
import struct
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .sources import CLASS_NAMES

__all__ = ["AUS", "CLASSES", "PROTOTYPES", "SynthFERSettings", "Identity", "Record", "generate", "plan",
           "sample_identity", "sample_aus", "render"]

VERSION = 3  # bump whenever the same settings would draw different images; it invalidates caches
SUPERSAMPLE = 2

CLASSES = CLASS_NAMES  # label order: the canonical vocabulary; 7 classes use the first 7
AUS = (1, 2, 4, 5, 6, 7, 9, 12, 14, 15, 16, 20, 23, 26)
PROTOTYPES = {
    "neutral": (),
    "happy": (6, 12),
    "sad": (1, 4, 15),
    "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "disgust": (9, 15, 16),
    "anger": (4, 5, 7, 23),
    "contempt": (12, 14),  # unilateral: one side of the face only
}
UNILATERAL = {"contempt": (12, 14)}
# Frequent companions outside the prototype: class → {AU: (probability, relative intensity)}.
COMPANIONS = {"disgust": {4: (0.5, 0.6)}, "anger": {9: (0.3, 0.4)}, "sad": {7: (0.3, 0.3)},
              "surprise": {4: (0.2, 0.3)}}


@dataclass(frozen=True)
class SynthFERSettings:
    """Every knob of the generator; all fields are plain ints and floats. Defaults: see the module docstring."""

    seed: int = 0
    size: int = 112                  # output resolution, square
    classes: int = 7                 # 7, or 8 to add contempt
    train_identities: int = 60       # identities are disjoint between train, val and test
    val_identities: int = 20         # val is drawn like train: label noise and background bias included
    test_identities: int = 20
    images_per_identity: int = 50    # labels are balanced within each identity
    label_noise: float = 0.1         # fraction of train (and val) labels replaced by a different random class
    bias_strength: float = 0.5       # train, val: P(background hue := the class's own), else random; test: random
    intensity_min: float = 0.5       # per-image expression level ~ U(intensity_min, intensity_max)
    intensity_max: float = 1.0
    expressiveness_min: float = 0.8  # per-identity factor on all intensities ~ U(min, max)
    expressiveness_max: float = 1.2
    au_dropout: float = 0.1          # P(a prototype AU is nearly absent in an image)
    leak_prob: float = 0.15          # P(an AU outside the prototype is weakly active)
    leak_max: float = 0.3            # weak activations ~ U(0, leak_max)
    max_rotation: float = 5.0        # in-plane rotation ~ U(-max, max) degrees
    scale_jitter: float = 0.05       # face scale × U(1 - j, 1 + j)
    max_shift: float = 0.02          # shift ~ U(-max, max) × size, per axis
    lighting: float = 0.4            # linear lighting gradient amplitude ~ U(0, lighting)
    blur: float = 0.5                # Gaussian blur σ ~ U(0, blur) pixels at 112 px
    noise: float = 0.02              # pixel noise std ~ U(0, noise) (fraction of 255)
    occlusion_prob: float = 0.1      # P(a hand or a bar covers part of the face)
    clutter: float = 2.0             # mean number of background clutter shapes
    mask_threshold: float = 0.2      # AUs at or above this intensity enter the mask

    def __post_init__(self):
        def need(ok: bool, field: str, what: str):
            if not ok:
                raise ValueError(f"SynthFERSettings.{field} must be {what}, got {getattr(self, field)!r}")

        for spec in fields(self):
            value = getattr(self, spec.name)
            kind = {"int": int, "float": (int, float)}[spec.type]
            need(isinstance(value, kind) and not isinstance(value, bool), spec.name, f"a number ({spec.type})")
        need(self.size >= 32, "size", "at least 32")
        need(self.classes in (7, 8), "classes", "7 or 8")
        for name in ("train_identities", "val_identities", "test_identities", "images_per_identity"):
            need(getattr(self, name) >= 1, name, "at least 1")
        for name in ("label_noise", "bias_strength", "au_dropout", "leak_prob", "occlusion_prob"):
            need(0 <= getattr(self, name) <= 1, name, "in [0, 1]")
        need(0 <= self.intensity_min <= self.intensity_max <= 1, "intensity_min",
             f"in [0, intensity_max={self.intensity_max}] with intensity_max <= 1")
        need(0 < self.expressiveness_min <= self.expressiveness_max, "expressiveness_min",
             f"in (0, expressiveness_max={self.expressiveness_max}]")
        for name in ("leak_max", "max_rotation", "scale_jitter", "max_shift", "lighting", "blur", "noise",
                     "clutter", "mask_threshold"):
            need(getattr(self, name) >= 0, name, "non-negative")
        need(self.scale_jitter < 1, "scale_jitter", "below 1")
        need(0 < self.mask_threshold <= 1, "mask_threshold", "in (0, 1]")

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASSES[: self.classes]

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------
# The plan: who appears in which image with which label, attribute and label noise
# ----------------------------------------------------------------------------------------------------

SPLIT_ORDER = ("train", "val", "test")  # identities are numbered in this order


@dataclass(frozen=True)
class Record:
    """One image of the plan. ``identity`` is global: val identities follow the train ones, test the val ones."""

    index: int
    split: str
    identity: int
    n: int            # the image's number within its identity
    true_label: int
    label: int        # given label: differs from true_label for the label-noise images (train and val)
    attribute: int    # background hue index; class c's linked value is c

    @property
    def name(self) -> str:
        return f"id{self.identity:04d}_{self.n:03d}.png"

    @property
    def bias_conflicting(self) -> bool:
        return self.attribute != self.true_label


def plan(settings: SynthFERSettings) -> list[Record]:
    """All images in order (train, val, then test), from one RNG seeded by ``(seed, 0)``.

    Labels: each identity gets ``images_per_identity`` labels cycling over the classes, shuffled.
    Label noise: exactly ``round(label_noise × n)`` of the n images of train, and of val, get a different
    class, uniformly. Attribute: train and val ``a = y`` with probability ``bias_strength``, else
    ``a ~ U{0..K-1}``; test ``a ~ U{0..K-1}``.
    """
    classes, per_identity = settings.classes, settings.images_per_identity
    rng = seeded_rng(settings.seed, 0)
    identities = {"train": settings.train_identities, "val": settings.val_identities,
                  "test": settings.test_identities}
    split = np.repeat(SPLIT_ORDER, [identities[name] * per_identity for name in SPLIT_ORDER])  # (N,) str
    true = np.concatenate([rng.permutation(np.arange(per_identity) % classes)
                           for _ in range(sum(identities.values()))])  # (N,) int, balanced per identity
    given = true.copy()
    for name in ("train", "val"):
        members = np.flatnonzero(split == name)
        noisy = rng.choice(members, size=round(settings.label_noise * members.size), replace=False)
        given[noisy] = (true[noisy] + rng.integers(1, classes, size=noisy.size)) % classes
    random_attribute = rng.integers(0, classes, size=true.size)  # (N,)
    linked = (rng.random(true.size) < settings.bias_strength) & (split != "test")  # (N,) bool
    attribute = np.where(linked, true, random_attribute)  # (N,) background hue index
    return [Record(i, str(split[i]), i // per_identity, i % per_identity, int(true[i]), int(given[i]),
                   int(attribute[i]))
            for i in range(true.size)]


# ----------------------------------------------------------------------------------------------------
# Identities and action units
# ----------------------------------------------------------------------------------------------------

# Colours are RGB, 0..255.
SKIN_DARK, SKIN_LIGHT = np.array([84, 52, 36]), np.array([246, 218, 196])
HAIR_COLOURS = np.array([[25, 20, 18], [70, 45, 30], [120, 80, 45], [200, 165, 100], [150, 60, 30],
                         [160, 160, 160]])
IRIS_COLOURS = np.array([[60, 40, 25], [95, 65, 35], [70, 110, 150], [80, 120, 80], [30, 25, 20]])


@dataclass(frozen=True)
class Identity:
    """A person: everything fixed across their images. Lengths and positions in face units, colours
    ``(r, g, b)`` int tuples in 0..255."""

    face_w: float          # half-width of the face
    face_h: float          # half-height
    jaw: float             # chin width relative to the cheeks (a ratio)
    skin: tuple            # colour
    lip: tuple             # colour
    eye_dx: float          # eye centres at x = ±eye_dx
    eye_y: float
    eye_w: float           # half-width of an eye
    eye_open: float        # upper-lid height at rest
    eye_tilt: float        # outer corners raised by this
    iris: tuple            # colour
    brow_gap: float        # brow above the eye centre
    brow_th: float         # brow thickness
    brow_arch: float       # height of the brow's arch
    nose_y: float          # nostril line
    nose_w: float
    mouth_y: float
    mouth_w: float         # half-width of the mouth at rest
    lip_up: float          # upper and lower lip thickness
    lip_lo: float
    rest_curve: float      # resting corner height: > 0 looks a little sad, < 0 a little happy
    folds: float           # nasolabial fold darkness at rest (age), 0..0.3
    hair: str              # bald | short | long
    hair_line: float
    hair_colour: tuple     # colour
    beard: str             # none | stubble | full | goatee
    glasses: str           # none | round | square
    glasses_colour: tuple  # colour
    clothes: tuple         # colour
    expressiveness: float  # factor on every AU intensity


def seeded_rng(*key: int) -> np.random.Generator:
    """PCG64 seeded by ``SeedSequence(key)``. The keys in use: ``(seed, 0)`` the plan, ``(seed, 1, identity)``
    a person, ``(seed, 2, image index)`` everything drawn for one image."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def sample_identity(settings: SynthFERSettings, identity: int) -> Identity:
    """The identity's face, from ``SeedSequence([seed, 1, identity])``."""
    rng = seeded_rng(settings.seed, 1, identity)
    uniform = rng.uniform  # the keyword arguments below are drawn in order: the order is part of the protocol
    skin = SKIN_DARK + (SKIN_LIGHT - SKIN_DARK) * uniform(0, 1) + rng.normal(0, 6, 3)  # (3,) float
    hair_colour = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 8, 3)  # (3,) float
    return Identity(
        face_w=uniform(0.82, 0.98), face_h=uniform(1.15, 1.32), jaw=uniform(0.5, 0.8), skin=rgb(skin),
        lip=rgb(blend(skin, np.array([170, 60, 70]), uniform(0.35, 0.6))),
        eye_dx=uniform(0.32, 0.42), eye_y=uniform(-0.2, -0.1), eye_w=uniform(0.17, 0.22),
        eye_open=uniform(0.075, 0.1), eye_tilt=uniform(-0.02, 0.03),
        iris=rgb(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]),
        brow_gap=uniform(0.15, 0.21), brow_th=uniform(0.045, 0.075), brow_arch=uniform(0.01, 0.05),
        nose_y=uniform(0.2, 0.32), nose_w=uniform(0.17, 0.25),
        mouth_y=uniform(0.55, 0.65), mouth_w=uniform(0.24, 0.32), lip_up=uniform(0.035, 0.06),
        lip_lo=uniform(0.045, 0.08), rest_curve=uniform(-0.03, 0.03), folds=uniform(0, 0.3),
        hair=str(rng.choice(["bald", "short", "short", "long", "long"])), hair_line=uniform(-0.95, -0.72),
        hair_colour=rgb(hair_colour),
        beard=str(rng.choice(["none"] * 6 + ["stubble", "full", "goatee"])),
        glasses=str(rng.choice(["none"] * 3 + ["round", "square"])),
        glasses_colour=rgb(rng.choice([[20, 20, 20], [90, 60, 30], [150, 150, 160], [120, 20, 30]])),
        clothes=rgb(rng.uniform(20, 235, 3)),
        expressiveness=uniform(settings.expressiveness_min, settings.expressiveness_max))


def sample_aus(settings: SynthFERSettings, label: int, expressiveness: float,
               rng: np.random.Generator) -> tuple[dict[int, tuple[float, float]], str]:
    """AU intensities in [0, 1] per side: ``{au: (left, right)}``, and the unilateral side.

    Prototype AUs: ``I = clip(e · level · U(0.75, 1.15))`` with the image level ``~ U(intensity_min,
    intensity_max)`` and identity expressiveness ``e``; with probability ``au_dropout`` an AU keeps only
    ``U(0, 0.25)`` of that. Companions (``COMPANIONS``) add a frequent extra AU at a fraction of the
    level. Every other AU leaks with probability ``leak_prob`` at ``U(0, leak_max)``. Sides differ by up to
    ±10 %, except unilateral AUs (contempt), which act on one random side only.
    """
    name = CLASSES[label]
    level = rng.uniform(settings.intensity_min, settings.intensity_max)
    draws = rng.random((len(AUS), 5))  # (AUs, 5) uniforms per AU: dropout, jitter, leak, leak level, asymmetry
    side_draw = rng.random()  # drawn for every class: the same RNG use whatever the label (pose etc. follow)
    aus, active_side = {}, "none"
    for (au, (p_drop, jitter, p_leak, leak, asym)) in zip(AUS, draws):
        if au in PROTOTYPES[name]:
            value = expressiveness * level * (0.75 + 0.4 * jitter)
            if p_drop < settings.au_dropout:
                value *= 0.25 * leak
        elif au in COMPANIONS.get(name, {}) and p_drop < COMPANIONS[name][au][0]:
            value = expressiveness * level * COMPANIONS[name][au][1] * (0.75 + 0.4 * jitter)
        elif p_leak < settings.leak_prob:
            value = settings.leak_max * leak
        else:
            value = 0.0
        spread = 0.1 * (asym - 0.5)
        aus[au] = (min(1.0, float(value * (1 + spread))), min(1.0, float(value * (1 - spread))))
    if name in UNILATERAL:
        active_side = "left" if side_draw < 0.5 else "right"
        for au in UNILATERAL[name]:
            aus[au] = (aus[au][0], 0.0) if active_side == "left" else (0.0, aus[au][1])
    return aus, active_side


# ----------------------------------------------------------------------------------------------------
# Drawing helpers
# ----------------------------------------------------------------------------------------------------

def blend(base, over, opacity: float) -> tuple:
    """``(1 - t) base + t over``: colour ``over`` laid over colour ``base`` at opacity ``t`` (clipped to
    [0, 1]); float channels."""
    opacity = min(max(float(opacity), 0.0), 1.0)
    return tuple((1 - opacity) * float(below) + opacity * float(above) for below, above in zip(base, over))


def rgb(colour) -> tuple:
    """A colour as an ``(r, g, b)`` int tuple: each channel rounded half up and clipped to 0..255."""
    return tuple(min(255, max(0, int(float(channel) + 0.5))) for channel in colour)


@functools.cache
def _unit_circle(n_points: int) -> np.ndarray:
    """``(n_points, 2)`` points ``(cos θ, sin θ)`` at ``θ = 2π i / n_points`` (shared: do not modify)."""
    theta = np.linspace(0, 2 * np.pi, n_points, endpoint=False)  # (n_points,) radians
    circle = np.stack([np.cos(theta), np.sin(theta)], 1)
    circle.flags.writeable = False
    return circle


def ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n_points: int = 24) -> np.ndarray:
    """``(n_points, 2)`` points of the ellipse with centre (cx, cy) and radii (rx, ry), turned by ``angle``
    radians; in the units of its arguments."""
    points = _unit_circle(n_points) * (rx, ry)
    if angle:
        cos, sin = math.cos(angle), math.sin(angle)
        points = points @ np.array([[cos, sin], [-sin, cos]])
    return points + (cx, cy)


def curve(x0: float, x1: float, y_of, n_points: int = 12) -> np.ndarray:
    """``(n_points, 2)`` points ``(x, y_of(x))`` at evenly spaced x from x0 to x1."""
    x = x0 + (x1 - x0) * steps(n_points)
    return np.stack([x, y_of(x)], 1)


@functools.cache
def steps(n: int) -> np.ndarray:
    """``(n,)`` evenly spaced values from 0 to 1 (shared: do not modify)."""
    values = np.linspace(0, 1, n)
    values.flags.writeable = False
    return values


def mean_of_sides(pair: tuple[float, float]) -> float:
    """The mean of an AU's (left, right) intensities."""
    return (pair[0] + pair[1]) / 2


def on_side(aus: dict, side: int) -> dict[int, float]:
    """AU → intensity on one side (index into ``SIDES``)."""
    return {au: pair[side] for au, pair in aus.items()}


def band(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The polygon between two ``(n, 2)`` curves sampled at the same x, left to right: ``(2n, 2)``."""
    return np.concatenate([upper, lower[::-1]])


class Canvas:
    """Draws face-unit shapes on an RGB image through the affine map ``matrix`` (2 × 3, face units →
    pixels), and AU areas on an L mask whose pixels are ``mask_scale`` times larger."""

    def __init__(self, image: Image.Image, mask: Image.Image, matrix: np.ndarray, mask_scale: int = 1):
        self.draw, self.mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
        self.linear, self.offset = matrix[:, :2].T.copy(), matrix[:, 2].copy()  # (2, 2) pixels/unit, (2,) pixels
        self.mask_scale = mask_scale
        self.unit = math.sqrt(abs(np.linalg.det(matrix[:, :2])))  # pixels per face unit

    def _px(self, points: np.ndarray, scale: int = 1) -> list:
        """``(n, 2)`` face units → the flat ``[x0, y0, x1, ...]`` pixel list Pillow draws, in pixels of size
        ``scale``."""
        pixels = np.asarray(points) @ self.linear + self.offset  # (n, 2) pixels
        return (pixels if scale == 1 else pixels / scale).ravel().tolist()

    def polygon(self, points: np.ndarray, colour) -> None:
        self.draw.polygon(self._px(points), fill=rgb(colour))

    def line(self, points: np.ndarray, colour, width: float) -> None:
        """A polyline ``width`` face units wide (at least one pixel)."""
        self.draw.line(self._px(points), fill=rgb(colour), width=max(1, round(width * self.unit)),
                       joint="curve" if len(points) > 2 else None)

    def area(self, points: np.ndarray) -> None:
        self.mask.polygon(self._px(points, self.mask_scale), fill=255)


DARK = (40, 25, 20)  # shading and line colour, blended over skin, hair or lips
SIDES = (-1, 1)  # x sign of the image-left and image-right side; a side index is a position here


# ----------------------------------------------------------------------------------------------------
# The face, part by part. ``aus`` maps AU → (left, right) intensity; ``side`` indexes SIDES (0: image
# left, x < 0) and ``sign`` is SIDES[side]. Points are (n, 2) arrays in face units.
# ----------------------------------------------------------------------------------------------------

def face_outline(person: Identity, jaw_drop: float) -> np.ndarray:
    """An egg: rounder above, narrowing to the chin below. AU26 (jaw drop) lengthens the lower face."""
    x, y = ellipse(0, 0, 1, 1, n_points=48).T  # (48,) each: the unit circle
    lower = np.clip(y, 0, 1)
    x = person.face_w * x * (1 - (1 - person.jaw) * lower ** 2)
    y = np.where(y < 0, 1.05 * person.face_h * y, person.face_h * y + 0.16 * jaw_drop * lower ** 3)
    return np.stack([x, y], 1)


def draw_head_back(canvas: Canvas, person: Identity) -> None:
    """Shoulders, neck, long hair behind the head, ears."""
    canvas.polygon(np.array([[-2.2, 2.4], [-1.5, 1.35], [1.5, 1.35], [2.2, 2.4]]), person.clothes)
    canvas.polygon(np.array([[-0.45, 0.6], [0.45, 0.6], [0.5, 1.6], [-0.5, 1.6]]), blend(person.skin, DARK, 0.15))
    if person.hair == "long":
        back = ellipse(0, -0.25, person.face_w + 0.22, person.face_h + 0.2)[12:]  # the upper half, left to right
        canvas.polygon(np.concatenate([back, [[person.face_w + 0.28, 1.45], [-person.face_w - 0.28, 1.45]]]),
                       person.hair_colour)
    for sign in SIDES:
        canvas.polygon(ellipse(sign * person.face_w * 0.98, -0.02, 0.12, 0.21), blend(person.skin, DARK, 0.1))


def draw_cheeks(canvas: Canvas, person: Identity, aus: dict) -> None:
    """AU6 (cheek raiser) lifts and reddens the cheek mound and deepens the furrow under the eye.
    AU12 also lifts the cheek a little."""
    for side, sign in enumerate(SIDES):
        au = on_side(aus, side)
        lift = 0.09 * au[6] + 0.04 * au[12]
        cy = person.eye_y + 0.3 - lift
        canvas.polygon(ellipse(sign * (person.eye_dx + 0.04), cy, 0.17, 0.1),
                       blend(person.skin, [235, 120, 120], 0.1 + 0.4 * au[6]))
        furrow_x = sign * (person.eye_dx + np.array([-0.14, -0.05, 0.05, 0.14]))  # (4,)
        canvas.line(np.stack([furrow_x, cy - 0.1 + np.array([0.0, 0.03, 0.03, 0.0])], 1),
                    blend(person.skin, DARK, 0.65 * au[6] + 0.15 * au[7]), 0.025)


def draw_folds(canvas: Canvas, person: Identity, aus: dict, corners: np.ndarray) -> None:
    """Nasolabial folds from the nose wing to past the mouth corner: deepened by AU12 (which also pulls
    them out and up), AU9 (raising the upper lip) and AU6. AU15 adds a short line down from the corner;
    AU14 a dimple beside it. Each fold is the quadratic Bézier ``(1-t)² start + 2t(1-t) mid + t² end``."""
    for side, sign in enumerate(SIDES):
        au = on_side(aus, side)
        depth = person.folds + 0.6 * au[12] + 0.5 * au[9] + 0.2 * au[6]
        start = np.array([sign * (person.nose_w * 0.55 + 0.03), person.nose_y - 0.03])
        end = corners[side] + np.array([sign * (0.07 + 0.03 * au[12]), 0.07 - 0.04 * au[12]])
        mid = (start + end) / 2 + np.array([sign * (0.05 + 0.04 * au[12]), -0.02])
        t = steps(8)[:, None]  # (8, 1)
        canvas.line((1 - t) ** 2 * start + 2 * t * (1 - t) * mid + t ** 2 * end,
                    blend(person.skin, DARK, 0.6 * depth), 0.025)
        cx, cy = corners[side]
        if au[15] > 0.05:
            canvas.line(np.array([[cx + sign * 0.01, cy + 0.02], [cx + sign * 0.03, cy + 0.12]]),
                        blend(person.skin, DARK, 0.7 * au[15]), 0.025)
        if au[14] > 0.05:
            dimple = [[cx + sign * 0.045, cy - 0.04], [cx + sign * 0.06, cy], [cx + sign * 0.045, cy + 0.04]]
            canvas.line(np.array(dimple), blend(person.skin, DARK, 0.9 * au[14]), 0.028)


def draw_forehead(canvas: Canvas, person: Identity, aus: dict, brow_top: float) -> None:
    """Horizontal forehead wrinkles ``y = y_i + 0.1 x²``: AU1 (frontalis, inner part) creases the centre,
    AU2 the sides."""
    for i in range(3):
        y = brow_top - 0.09 - 0.065 * i
        if mean_of_sides(aus[1]) > 0.05:
            canvas.line(curve(-0.25, 0.25, lambda x: y + 0.1 * x ** 2, 5),
                        blend(person.skin, DARK, 0.55 * mean_of_sides(aus[1])), 0.022)
        for side, sign in enumerate(SIDES):
            if aus[2][side] > 0.05:
                canvas.line(curve(sign * 0.2, sign * 0.5, lambda x: y + 0.1 * x ** 2, 4),
                            blend(person.skin, DARK, 0.55 * aus[2][side]), 0.022)


def draw_beard(canvas: Canvas, person: Identity, jaw_drop: float) -> None:
    """Stubble, a full beard or a goatee around the mouth and chin; it moves with the jaw."""
    if person.beard == "none":
        return
    colour = blend(person.skin, person.hair_colour, 0.45 if person.beard == "stubble" else 0.95)
    outline = face_outline(person, jaw_drop)  # (48, 2)
    if person.beard == "goatee":
        canvas.polygon(ellipse(0, person.mouth_y + 0.3 + 0.12 * jaw_drop, 0.2, 0.22), colour)
        canvas.polygon(ellipse(0, person.mouth_y - 0.08, person.mouth_w + 0.04, 0.06), colour)
        return
    lower = outline[outline[:, 1] > person.nose_y - 0.05]  # the outline below the nose
    lower = lower[np.argsort(np.arctan2(lower[:, 1], lower[:, 0]))]  # right to left around the chin
    top = curve(lower[-1, 0], lower[0, 0],
                lambda x: person.nose_y + 0.05 + 0.15 * (np.abs(x) / person.face_w) ** 2)
    canvas.polygon(np.concatenate([lower, top]), colour)


def draw_hair(canvas: Canvas, person: Identity) -> None:
    """The hair cap above the hairline, with a wavy fringe ``y = hair_line + 0.04 sin 9x + 0.08 (x/w)²``."""
    if person.hair == "bald":
        return
    top = ellipse(0, 0, person.face_w + 0.06, 1.05 * person.face_h + 0.08, n_points=48)
    top = top[top[:, 1] < person.hair_line + 0.02]  # the arc above the hairline
    top = top[np.argsort(-np.arctan2(top[:, 1], top[:, 0]))]  # right to left over the head
    x = top[-1, 0] + (top[0, 0] - top[-1, 0]) * steps(13)  # (13,) left to right
    fringe = np.stack([x, person.hair_line + 0.04 * np.sin(x * 9) + 0.08 * (np.abs(x) / person.face_w) ** 2], 1)
    canvas.polygon(np.concatenate([top, fringe]), person.hair_colour)


def eye_lids(person: Identity, aus: dict, side: int):
    """One eye: its centre ``(cx, cy)``, half-width and upper and lower lid curves ``y(x)``, in face units.

    AU5 (upper lid raiser) lifts the upper lid, baring white above the iris. AU7 (lid tightener) lowers
    the upper lid and raises and straightens the lower lid. AU6 pushes the lower lid up from below; AU4
    presses the upper lid down slightly.
    """
    sign, au = SIDES[side], on_side(aus, side)
    cx, cy = sign * person.eye_dx, person.eye_y
    up = person.eye_open * (1 + 1.3 * au[5] - 0.45 * au[7] - 0.2 * au[6] - 0.15 * au[4])
    lo = person.eye_open * 0.55 * max(0.15, 1 - 0.6 * au[7] - 0.5 * au[6])
    half_w = person.eye_w

    def upper(x):
        d = np.clip(np.abs(x - cx) / half_w, 0, 1)  # 0 at the centre, 1 at the corners
        return cy - up * (1 - d ** 2) ** 0.7 - person.eye_tilt * sign * (x - cx) / half_w

    def lower(x):
        d = np.clip(np.abs(x - cx) / half_w, 0, 1)
        return cy + lo * (1 - d ** 2) ** (0.9 - 0.5 * au[7]) - person.eye_tilt * sign * (x - cx) / half_w

    return cx, cy, half_w, upper, lower


def draw_eyes(canvas: Canvas, person: Identity, aus: dict, gaze: np.ndarray) -> None:
    """Sclera between the lids, iris and pupil clipped to them, lash line, crease, AU6 crow's feet,
    AU7's tension line under the lower lid. ``gaze`` (2,) in [-1, 1] shifts the iris."""
    for side, sign in enumerate(SIDES):
        au = on_side(aus, side)
        cx, cy, half_w, upper, lower = eye_lids(person, aus, side)
        top, bottom = curve(cx - half_w, cx + half_w, upper, 14), curve(cx - half_w, cx + half_w, lower, 14)
        canvas.polygon(band(top, bottom), [240, 238, 232])
        iris_r = 1.15 * person.eye_open
        for radius, colour in ((iris_r, person.iris), (0.45 * iris_r, [15, 10, 10])):
            disc = ellipse(cx + gaze[0] * half_w * 0.35, cy + 0.1 * iris_r + gaze[1] * iris_r * 0.3, radius, radius,
                           n_points=20)  # (20, 2)
            disc[:, 0] = np.clip(disc[:, 0], cx - half_w, cx + half_w)
            disc[:, 1] = np.clip(disc[:, 1], upper(disc[:, 0]), lower(disc[:, 0]))
            canvas.polygon(disc, colour)
        canvas.line(top, blend(person.skin, DARK, 0.9), 0.025)
        canvas.line(bottom, blend(person.skin, DARK, 0.35 + 0.3 * au[7]), 0.014)
        crease = top.copy()
        crease[:, 1] -= 0.05 + 0.02 * au[5]
        canvas.line(crease[2:-2], blend(person.skin, DARK, 0.35), 0.014)
        if au[7] > 0.05:
            canvas.line(bottom[3:-3] + [0, 0.035], blend(person.skin, DARK, 0.6 * au[7]), 0.022)
        if au[6] > 0.05:
            corner = np.array([cx + sign * (half_w + 0.03), cy])
            for angle in (-0.45, 0.0, 0.45):  # radians
                tip = corner + 0.08 * np.array([sign * math.cos(angle), math.sin(angle)])
                canvas.line(np.stack([corner, tip]), blend(person.skin, DARK, 0.8 * au[6]), 0.022)


def brow_curve(person: Identity, aus: dict, side: int) -> np.ndarray:
    """The brow's centre line, ``(8, 2)``, inner end first; ``t`` runs from 0 (inner) to 1 (outer).

    AU1 (inner brow raiser) lifts the inner end, making the brow oblique. AU2 (outer brow raiser) lifts
    the outer end and arches it. AU4 (brow lowerer) lowers the brow, most at the inner end, and pulls the
    inner ends together. AU9 lowers the inner end a little.
    """
    sign, au = SIDES[side], on_side(aus, side)
    t = steps(8)
    x = sign * (person.eye_dx - 0.95 * person.eye_w + t * 2.25 * person.eye_w)
    x = x - sign * 0.08 * au[4] * (1 - t)
    y = (person.eye_y - person.brow_gap - person.brow_arch * 4 * t * (1 - t) + 0.02 * t
         - 0.18 * au[1] * (1 - t) ** 1.5 - 0.15 * au[2] * t ** 1.2 - 0.05 * au[2] * 4 * t * (1 - t)
         + 0.11 * au[4] * (1 - 0.5 * t) + 0.04 * au[9] * (1 - t))
    return np.stack([x, y], 1)


def draw_brows(canvas: Canvas, person: Identity, aus: dict) -> float:
    """Both brows (thicker at the inner end) and AU4's vertical furrows between them; returns the brow top."""
    top = 0.0
    colour = blend(person.hair_colour, DARK, 0.3)
    for side in (0, 1):
        centre = brow_curve(person, aus, side)
        half = person.brow_th * (1.1 - 0.55 * steps(len(centre)))[:, None] / 2  # (8, 1) half thickness
        canvas.polygon(band(centre - [0, 1] * half, centre + [0, 1] * half), colour)
        top = min(top, float((centre[:, 1] - half[:, 0]).min()))
    if mean_of_sides(aus[4]) > 0.05:
        inner_y = float(brow_curve(person, aus, 0)[0, 1])
        for x in (-0.045, 0.045):
            canvas.line(np.array([[x, inner_y - 0.04], [x * 0.8, inner_y + 0.1]]),
                        blend(person.skin, DARK, 0.8 * mean_of_sides(aus[4])), 0.025)
    return top


def draw_nose(canvas: Canvas, person: Identity, aus: dict) -> None:
    """Bridge sides, wings, tip and nostrils. AU9 (nose wrinkler) raises and flares the wings and
    creases the bridge."""
    wrinkle = mean_of_sides(aus[9])
    lift, flare = 0.06 * wrinkle, 1 + 0.3 * wrinkle
    shade = blend(person.skin, DARK, 0.22)
    for sign in SIDES:
        canvas.line(np.array([[sign * 0.07, person.eye_y + 0.02], [sign * 0.08, person.nose_y - 0.12 - lift]]),
                    shade, 0.016)
        canvas.polygon(ellipse(sign * person.nose_w * 0.48 * flare, person.nose_y - 0.01 - lift, 0.07, 0.055), shade)
    canvas.polygon(ellipse(0, person.nose_y - 0.03 - lift / 2, person.nose_w * 0.38, 0.065),
                   blend(person.skin, [255, 255, 255], 0.08))
    for sign in SIDES:
        canvas.polygon(ellipse(sign * person.nose_w * 0.28 * flare, person.nose_y + 0.015 - lift, 0.042, 0.02),
                       blend(person.skin, DARK, 0.75))
    if wrinkle > 0.05:
        for i in range(3):
            y = person.eye_y + 0.06 + 0.045 * i
            canvas.line(np.array([[-0.09, y + 0.01], [0, y - 0.01], [0.09, y + 0.01]]),
                        blend(person.skin, DARK, 0.9 * wrinkle), 0.022)


def mouth_corners(person: Identity, aus: dict) -> np.ndarray:
    """Corner positions ``(2, 2)``: [left, right] × (x, y), face units.

    AU12 (lip corner puller) moves a corner up and out; AU15 (lip corner depressor) down; AU20 (lip
    stretcher) out sideways; AU14 (dimpler) pulls it in and tucks it; AU23 (lip tightener) narrows the
    mouth; AU26 (jaw drop) lowers the corners with the jaw.
    """
    corners = []
    for side, sign in enumerate(SIDES):
        au = on_side(aus, side)
        x = person.mouth_w * (1 + 0.25 * au[12] + 0.35 * au[20] - 0.12 * au[14] - 0.05 * au[15] - 0.2 * au[23])
        y = (person.mouth_y + person.rest_curve - 0.15 * au[12] + 0.12 * au[15] + 0.02 * au[20] - 0.03 * au[14]
             + 0.06 * au[26])
        corners.append([sign * x, y])
    return np.array(corners)


def draw_mouth(canvas: Canvas, person: Identity, aus: dict, corners: np.ndarray, smile_open: float) -> None:
    """Lips, and the open mouth's interior and teeth.

    Between the corners, the lip line is the parabola through both corners and the centre ``(0, mouth_y)``,
    so raised corners give a smile and lowered ones a frown; ``t`` runs from -1 (left corner) to 1 (right).
    AU26 drops the lower lip (the mouth opens); AU16 (lower lip depressor) pulls the lower lip's centre
    down, baring the lower teeth; AU20 opens a wide, flat slit; AU12 parts the lips in a smile
    (``smile_open``); AU23 thins and presses the lips together; AU9 lifts the upper lip.
    """
    mean = {au: mean_of_sides(pair) for au, pair in aus.items()}  # AU → mean intensity of both sides
    t = 2 * steps(17) - 1  # (17,)
    to_right = (1 + t) / 2  # 0 at the left corner, 1 at the right
    cx = (1 - to_right) * corners[0, 0] + to_right * corners[1, 0]
    line_y = ((1 - to_right) * corners[0, 1] + to_right * corners[1, 1]
              + (person.mouth_y - corners[:, 1].mean()) * (1 - t ** 2))
    bell = (1 - t ** 2) ** 0.6
    press = 1 - mean[23]
    open_up = (0.04 * mean[26] + 0.025 * mean[20] + 0.05 * mean[12] * smile_open) * press
    open_dn = (0.28 * mean[26] + 0.05 * mean[20] + 0.09 * mean[16] * (1 - t ** 2)
               + 0.05 * mean[12] * smile_open) * press  # (17,)
    up_in = np.stack([cx, line_y - open_up * bell], 1)  # (17, 2) inner edge of the upper lip
    lo_in = np.stack([cx, line_y + open_dn * bell], 1)
    thin = (1 - 0.6 * mean[23]) * (1 - 0.25 * mean[20])
    bow = 1 - 0.3 * np.exp(-(t / 0.15) ** 2)  # Cupid's bow: a dip in the upper lip's middle
    up_out = up_in - np.stack([0 * t, (person.lip_up * thin * bow + 0.03 * mean[9]) * (1 - t ** 2) ** 0.4], 1)
    lo_out = lo_in + np.stack([0 * t, person.lip_lo * thin * (1 + 0.4 * mean[16]) * (1 - t ** 2) ** 0.5], 1)
    if (open_up + open_dn.max()) > 0.008:
        canvas.polygon(band(up_in, lo_in), [70, 25, 30])
        teeth = up_in + [0, 0.045]
        teeth[:, 1] = np.minimum(teeth[:, 1], lo_in[:, 1])
        canvas.polygon(band(up_in, teeth), [235, 232, 220])
        if mean[16] > 0.15 or mean[26] > 0.3:
            low_teeth = lo_in - [0, 0.03]
            low_teeth[:, 1] = np.maximum(low_teeth[:, 1], up_in[:, 1])
            canvas.polygon(band(low_teeth, lo_in), [225, 222, 210])
    canvas.polygon(band(up_out, up_in), person.lip)
    canvas.polygon(band(lo_in, lo_out), blend(person.lip, [255, 255, 255], 0.08))
    canvas.line(up_in, blend(person.lip, DARK, 0.6 + 0.3 * mean[23]), 0.02 + 0.015 * mean[23])


def draw_glasses(canvas: Canvas, person: Identity) -> None:
    """Frames around both eyes, a bridge and the temples."""
    if person.glasses == "none":
        return
    rx, ry = person.eye_w * 1.45, 0.16
    for sign in SIDES:
        cx, cy = sign * person.eye_dx, person.eye_y
        if person.glasses == "square":
            rim = np.array([[cx - rx, cy - ry], [cx + rx, cy - ry], [cx + rx, cy + ry], [cx - rx, cy + ry],
                            [cx - rx, cy - ry]])  # (5, 2), closed
        else:
            rim = ellipse(cx, cy, rx, ry, n_points=24)
            rim = np.concatenate([rim, rim[:1]])  # (25, 2), closed
        canvas.line(rim, person.glasses_colour, 0.03)
        temple = np.array([[sign * (person.eye_dx + rx), cy - 0.05], [sign * person.face_w, cy - 0.08]])
        canvas.line(temple, person.glasses_colour, 0.03)
    bridge = [[-(person.eye_dx - rx), person.eye_y - 0.04], [0, person.eye_y - 0.08],
              [person.eye_dx - rx, person.eye_y - 0.04]]
    canvas.line(np.array(bridge), person.glasses_colour, 0.03)


def au_areas(person: Identity, aus: dict, corners: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Polygons (face units) of where each active AU (intensity ≥ threshold on that side) shows."""
    areas = []
    for side, sign in enumerate(SIDES):
        on = {au: intensity >= threshold for au, intensity in on_side(aus, side).items()}
        brow = brow_curve(person, aus, side)
        eye_x, eye_y = sign * person.eye_dx, person.eye_y
        corner_x, corner_y = corners[side]
        if on[1]:
            areas.append(ellipse(brow[1, 0], brow[1, 1] - 0.04, 0.14, 0.13))
        if on[2]:
            areas.append(ellipse(brow[-2, 0], brow[-2, 1] - 0.04, 0.14, 0.13))
        if on[4]:
            areas.append(ellipse(sign * 0.1, brow[0, 1], 0.17, 0.12))
        if on[5]:
            areas.append(ellipse(eye_x, eye_y - 0.04, person.eye_w * 1.2, 0.12))
        if on[6]:
            areas.append(ellipse(eye_x + sign * 0.05, eye_y + 0.18, 0.22, 0.15))
        if on[7]:
            areas.append(ellipse(eye_x, eye_y + 0.02, person.eye_w * 1.2, 0.11))
        if on[12]:
            areas.append(ellipse(corner_x + sign * 0.04, corner_y - 0.06, 0.17, 0.15))
        if on[14]:
            areas.append(ellipse(corner_x + sign * 0.03, corner_y, 0.1, 0.09))
        if on[15]:
            areas.append(ellipse(corner_x + sign * 0.01, corner_y + 0.06, 0.11, 0.11))
    peak = {au: max(pair) for au, pair in aus.items()}  # AU → the stronger side's intensity
    if peak[9] >= threshold:
        areas.append(ellipse(0, (person.eye_y + person.nose_y) / 2, 0.17, (person.nose_y - person.eye_y) / 2 + 0.06))
    if peak[16] >= threshold:
        areas.append(ellipse(0, person.mouth_y + 0.1, person.mouth_w * 0.8, 0.1))
    if peak[20] >= threshold:
        areas.append(ellipse(0, corners[:, 1].mean(), abs(corners[1, 0] - corners[0, 0]) / 2 + 0.1, 0.11))
    if peak[23] >= threshold:
        areas.append(ellipse(0, person.mouth_y, person.mouth_w + 0.04, 0.1))
    if peak[26] >= threshold:
        areas.append(ellipse(0, person.mouth_y + 0.16, person.mouth_w + 0.06, 0.24))
    return areas


def occluder_shapes(person: Identity, rng: np.random.Generator) -> tuple[str, list[tuple[np.ndarray, tuple]]]:
    """A hand (palm and four fingers) or a bar over a random part of the face: its kind and its
    ``(polygon, colour)`` shapes, in face units."""
    targets = [(0, person.mouth_y), (-person.eye_dx, person.eye_y), (person.eye_dx, person.eye_y),
               (0, person.eye_y), (0, person.nose_y), (-0.5, 0.4), (0.5, 0.4)]
    target_x, target_y = targets[rng.integers(len(targets))]
    centre = np.array([target_x, target_y]) + rng.uniform(-0.1, 0.1, 2)  # (2,)
    angle = rng.uniform(-math.pi, math.pi)  # radians
    if rng.random() < 0.5:
        skin = blend(SKIN_DARK, SKIN_LIGHT, rng.uniform(0, 1))
        shapes = []
        for i, spread in enumerate((-0.5, -0.17, 0.17, 0.5)):
            finger_angle = angle + spread * 0.6  # radians
            direction = np.array([math.cos(finger_angle), math.sin(finger_angle)])
            root = centre + 0.22 * direction
            shapes.append((ellipse(*(root + 0.14 * direction), 0.2, 0.055, finger_angle, n_points=12),
                           rgb(blend(skin, DARK, 0.08 * (i % 2)))))
        shapes.append((ellipse(*centre, 0.3, 0.26, angle, n_points=20), rgb(skin)))
        return "hand", shapes
    cos, sin = math.cos(angle / 4), math.sin(angle / 4)
    half = np.array([[-1.4, -1], [1.4, -1], [1.4, 1], [-1.4, 1]]) * [1, rng.uniform(0.09, 0.17)]  # (4, 2)
    bar = centre + half @ np.array([[cos, sin], [-sin, cos]])
    return "bar", [(bar, rgb(rng.uniform(0, 255, 3)))]


def draw_background(image: Image.Image, attribute: int, classes: int, clutter: float,
                    rng: np.random.Generator) -> None:
    """Fill with the attribute's hue (``h = attribute / classes``), then random clutter shapes."""
    hue = (attribute / classes + rng.uniform(-0.03, 0.03)) % 1.0
    image.paste(hsv_to_rgb(hue, rng.uniform(0.12, 0.3), rng.uniform(0.45, 0.9)), (0, 0, *image.size))
    draw, size = ImageDraw.Draw(image), image.size[0]  # pixels
    for _ in range(rng.poisson(clutter)):
        kind = rng.integers(3)
        x0, y0 = rng.uniform(-0.1, 1.0, 2) * size  # pixels
        width, height = rng.uniform(0.05, 0.4, 2) * size
        colour = hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.2, 0.95))
        if kind == 0:
            draw.rectangle((x0, y0, x0 + width, y0 + height), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x0 + width, y0 + height), fill=colour)
        else:
            draw.line((x0, y0, x0 + width, y0 + height), fill=colour, width=max(1, int(size * 0.02)))


def hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple:
    """HSV, each in [0, 1], to an ``(r, g, b)`` int tuple: the hexcone's six sectors, each a linear ramp."""
    sector, fraction = divmod(hue * 6, 1)
    low = value * (1 - saturation)
    falling = value * (1 - saturation * fraction)
    rising = value * (1 - saturation * (1 - fraction))
    red, green, blue = [(value, rising, low), (falling, value, low), (low, value, rising), (low, falling, value),
                        (rising, low, value), (value, low, falling)][int(sector) % 6]
    return rgb((255 * red, 255 * green, 255 * blue))


# ----------------------------------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------------------------------

def render(settings: SynthFERSettings, record: Record, identity: Identity | None = None
           ) -> tuple[Image.Image, Image.Image, dict]:
    """Draw one image: ``(RGB image, L mask 0/255, metadata)``, a function of (settings, record) only."""
    person = identity or sample_identity(settings, record.identity)
    rng = seeded_rng(settings.seed, 2, record.index)
    aus, active_side = sample_aus(settings, record.true_label, person.expressiveness, rng)
    canvas_size = settings.size * SUPERSAMPLE  # pixels

    # Pose: face units → canvas pixels. One unit is 0.32 × size at scale 1.
    angle = math.radians(rng.uniform(-settings.max_rotation, settings.max_rotation))  # radians
    scale = 0.32 * canvas_size * rng.uniform(1 - settings.scale_jitter, 1 + settings.scale_jitter)  # pixels/unit
    shift = rng.uniform(-settings.max_shift, settings.max_shift, 2) * canvas_size  # (2,) pixels
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    matrix = np.array([[cos, -sin, canvas_size / 2 + shift[0]],
                       [sin, cos, canvas_size * 0.53 + shift[1]]])  # (2, 3): face units → pixels
    gaze = rng.uniform(-1, 1, 2)  # (2,)
    smile_open = rng.random()

    image = Image.new("RGB", (canvas_size, canvas_size))
    mask = Image.new("L", (settings.size, settings.size), 0)  # drawn at 1×: it is thresholded anyway
    draw_background(image, record.attribute, settings.classes, settings.clutter, rng)
    canvas = Canvas(image, mask, matrix, mask_scale=SUPERSAMPLE)
    jaw_drop = mean_of_sides(aus[26])
    corners = mouth_corners(person, aus)  # (2, 2) face units
    draw_head_back(canvas, person)
    canvas.polygon(face_outline(person, jaw_drop), person.skin)
    draw_cheeks(canvas, person, aus)
    draw_folds(canvas, person, aus, corners)
    draw_beard(canvas, person, jaw_drop)
    draw_hair(canvas, person)
    draw_eyes(canvas, person, aus, gaze)
    brow_top = draw_brows(canvas, person, aus)
    draw_forehead(canvas, person, aus, brow_top)
    draw_nose(canvas, person, aus)
    draw_mouth(canvas, person, aus, corners, smile_open)
    draw_glasses(canvas, person)
    for area in au_areas(person, aus, corners, settings.mask_threshold):
        canvas.area(area)

    occluder, occluded = "none", 0.0
    if rng.random() < settings.occlusion_prob:
        occluder, shapes = occluder_shapes(person, rng)
        cover = Image.new("L", (settings.size, settings.size), 0)
        covering = Canvas(image, cover, matrix, mask_scale=SUPERSAMPLE)
        for points, colour in shapes:
            covering.polygon(points, colour)
            covering.area(points)
        inside = np.asarray(mask) > 0  # (size, size) bool
        if inside.any():
            occluded = float((np.asarray(cover)[inside] > 0).mean())

    image = finish(image.reduce(SUPERSAMPLE), rng, settings)

    meta = {f"au{au:02d}": round(max(pair), 4) for au, pair in aus.items()}
    meta.update(side=active_side, rotation=round(math.degrees(angle), 2), scale=round(scale / (0.32 * canvas_size), 4),
                occluder=occluder, occluded=round(occluded, 4), expressiveness=round(person.expressiveness, 4),
                glasses=person.glasses, beard=person.beard)
    return image, mask, meta


def gaussian_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) float array: kernel ``k_i ∝ exp(-i² / 2σ²)`` for
    ``|i| ≤ ⌈2σ⌉``, normalised to sum 1, edges replicated. (Pillow's GaussianBlur costs about three times
    as much at SynthFER's sub-pixel radii.)"""
    radius = math.ceil(2 * sigma)  # pixels
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)  # (2 radius + 1,)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    height, width = pixels.shape[:2]
    padded = np.pad(pixels, ((radius, radius), (0, 0), (0, 0)), mode="edge")  # (H + 2 radius, W, C)
    pixels = sum(weight * padded[i: i + height] for i, weight in enumerate(kernel))  # (H, W, C)
    padded = np.pad(pixels, ((0, 0), (radius, radius), (0, 0)), mode="edge")  # (H, W + 2 radius, C)
    return sum(weight * padded[:, i: i + width] for i, weight in enumerate(kernel))


def finish(image: Image.Image, rng: np.random.Generator, settings: SynthFERSettings) -> Image.Image:
    """Blur, lighting and sensor noise: ``blur_β(x) · b · (1 + g (d · p)) + σ z``.

    ``blur_β`` is a Gaussian blur of standard deviation ``β ~ U(0, blur) · size / 112`` pixels (skipped
    below a quarter pixel, where it changes nothing visible), ``p`` runs over [-1, 1]² across the image,
    ``d`` is a random unit direction, the gradient ``g ~ U(0, lighting)``, the brightness
    ``b ~ U(0.85, 1.15)``, ``σ ~ U(0, noise) · 255`` and ``z`` is standard normal per pixel, the same in all
    channels (luminance noise).
    """
    size = settings.size  # pixels
    pixels = np.asarray(image, dtype=np.float32)  # (size, size, 3) float32, 0..255
    blur = rng.uniform(0, settings.blur) * size / 112  # pixels
    if blur >= 0.25:
        pixels = gaussian_blur(pixels, blur)
    angle = rng.uniform(0, 2 * math.pi)  # radians
    p = np.linspace(-1, 1, size, dtype=np.float32)  # (size,)
    ramp = math.cos(angle) * p[None, :] + math.sin(angle) * p[:, None]  # (size, size): d · p
    gain = (1 + rng.uniform(0, settings.lighting) * ramp) * rng.uniform(0.85, 1.15)  # (size, size)
    pixels = pixels * gain[:, :, None]
    sigma = rng.uniform(0, settings.noise) * 255  # 0..255 grey levels
    if sigma > 0:
        pixels += (sigma * rng.standard_normal((size, size), dtype=np.float32))[:, :, None]
    pixels += 0.5  # rounds to nearest in the uint8 cast below
    return Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8))  # (size, size, 3) uint8


def write_png(path: str, image: Image.Image) -> None:
    """A PNG with the 'Up' filter and run-length deflate: about three times as fast as Pillow's encoder on
    noisy images (which tries every filter on every row), for files about 5 % larger. Lossless."""
    pixels = np.asarray(image)  # (H, W, 3) or (H, W) uint8
    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0  # RGB or grey
    rows = pixels.reshape(height, -1)  # (H, W × channels)
    up = np.concatenate([rows[:1], rows[1:] - rows[:-1]])  # uint8 wraps around, as PNG's filter 2 wants
    data = np.concatenate([np.full((height, 1), 2, np.uint8), up], 1).tobytes()  # each row: filter byte, row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    body = deflate.compress(data) + deflate.flush()
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------------------------------
# The dataset on disk
# ----------------------------------------------------------------------------------------------------

META_COLUMNS = (["path", "split", "identity", "label", "true_label", "noisy"] + [f"au{au:02d}" for au in AUS]
                + ["side", "attribute", "bias_conflicting", "mask", "rotation", "scale", "occluder", "occluded",
                   "expressiveness", "glasses", "beard"])
PARTIAL_MARK = ".synthfer-partial"


def _render_chunk(job: tuple[str, SynthFERSettings, list[Record]]) -> list[dict]:
    """Render and write the records of one job ``(root, settings, records)``; their meta.csv rows."""
    root, settings, records = job
    identities: dict[int, Identity] = {}
    rows = []
    for record in records:
        if record.identity not in identities:
            identities[record.identity] = sample_identity(settings, record.identity)
        image, mask, meta = render(settings, record, identities[record.identity])
        path, mask_path = f"images/{record.split}/{record.name}", f"masks/{record.split}/{record.name}"
        write_png(os.path.join(root, path), image)
        write_png(os.path.join(root, mask_path), mask)
        rows.append({"path": path, "split": record.split, "identity": record.identity, "label": record.label,
                     "true_label": record.true_label, "noisy": int(record.label != record.true_label), **meta,
                     "attribute": record.attribute, "bias_conflicting": int(record.bias_conflicting),
                     "mask": mask_path})
    return rows


def _stored_settings(settings: SynthFERSettings) -> dict:
    """settings.json's content: the generator version and every setting."""
    return {"version": VERSION, **settings.to_dict()}


def _check_existing(out: Path, settings: SynthFERSettings) -> bool:
    """True if ``out`` already holds this dataset; False if it is absent or empty; else ValueError."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise ValueError(f"SynthFER output {out} exists and is not a directory")
    marker = out / "settings.json"
    if not marker.exists():
        if any(out.iterdir()):
            raise ValueError(f"SynthFER output {out} is not empty and holds no settings.json, so it is not a "
                             f"complete SynthFER dataset; choose a new or empty directory")
        return False
    try:
        stored = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{marker} is not readable JSON ({error}); delete {out} to regenerate") from error
    wanted = _stored_settings(settings)
    diff = [f"{key}: {stored.get(key, '<missing>')!r} there, {wanted.get(key, '<missing>')!r} asked"
            for key in sorted(set(stored) | set(wanted)) if stored.get(key) != wanted.get(key)]
    if diff:
        raise ValueError(f"{out} holds a SynthFER dataset made with other settings ({'; '.join(diff)}); "
                         f"choose another directory or delete it")
    return True


def generate(out: str | Path, settings: SynthFERSettings = SynthFERSettings(), workers: int | None = None) -> Path:
    """Write the dataset to ``out`` and return ``out``; do nothing if it is already there.

    The images are drawn into a sibling ``.<name>.partial`` directory, which is renamed to ``out`` once
    ``settings.json`` is written, so ``out`` is either complete or absent. An existing ``out`` made with
    other settings (or by another generator version) is a ValueError naming the differences.
    """
    out = Path(out)
    if _check_existing(out, settings):
        return out
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        if not (tmp / PARTIAL_MARK).exists():
            raise ValueError(f"{tmp} exists but was not made by SynthFER; remove it to generate {out}")
        shutil.rmtree(tmp)
    for kind in ("images", "masks"):
        for split in SPLIT_ORDER:
            (tmp / kind / split).mkdir(parents=True)
    (tmp / PARTIAL_MARK).touch()

    records = plan(settings)
    per_job = max(1, min(64, len(records) // (4 * workers)))  # several jobs per worker, at most 64 images each
    jobs = [(str(tmp), settings, records[i: i + per_job]) for i in range(0, len(records), per_job)]
    if workers == 1:
        rows = [row for chunk_rows in map(_render_chunk, jobs) for row in chunk_rows]
    else:
        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            rows = [row for chunk_rows in pool.imap(_render_chunk, jobs) for row in chunk_rows]

    for split in SPLIT_ORDER:
        lines = [f"{row['path']} {row['label']}\n" for row in rows if row["split"] == split]
        (tmp / f"{split}.txt").write_text("".join(lines))
    (tmp / "classes.txt").write_text("".join(f"{name}\n" for name in settings.class_names))
    with open(tmp / "meta.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=META_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (tmp / PARTIAL_MARK).unlink()
    (tmp / "settings.json").write_text(json.dumps(_stored_settings(settings), indent=2) + "\n")
    if out.exists():
        out.rmdir()  # _check_existing allowed only an empty directory
    tmp.rename(out)
    return out
