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

        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": (int, float)}[f.type]
            need(isinstance(value, kind) and not isinstance(value, bool), f.name, f"a number ({f.type})")
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
    s, k = settings, settings.classes
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([s.seed, 0])))
    per = s.images_per_identity
    ids = {"train": s.train_identities, "val": s.val_identities, "test": s.test_identities}
    split = np.repeat(SPLIT_ORDER, [ids[name] * per for name in SPLIT_ORDER])
    true = np.concatenate([rng.permutation(np.arange(per) % k) for _ in range(sum(ids.values()))])
    given = true.copy()
    for name in ("train", "val"):
        members = np.flatnonzero(split == name)
        noisy = rng.choice(members, size=round(s.label_noise * members.size), replace=False)
        given[noisy] = (true[noisy] + rng.integers(1, k, size=noisy.size)) % k
    random_attr = rng.integers(0, k, size=true.size)
    linked = (rng.random(true.size) < s.bias_strength) & (split != "test")
    attribute = np.where(linked, true, random_attr)
    return [Record(i, str(split[i]), i // per, i % per, int(true[i]), int(given[i]), int(attribute[i]))
            for i in range(true.size)]


# ----------------------------------------------------------------------------------------------------
# Identities and action units
# ----------------------------------------------------------------------------------------------------

SKIN_DARK, SKIN_LIGHT = np.array([84, 52, 36]), np.array([246, 218, 196])
HAIR_COLOURS = np.array([[25, 20, 18], [70, 45, 30], [120, 80, 45], [200, 165, 100], [150, 60, 30],
                         [160, 160, 160]])
IRIS_COLOURS = np.array([[60, 40, 25], [95, 65, 35], [70, 110, 150], [80, 120, 80], [30, 25, 20]])


@dataclass(frozen=True)
class Identity:
    """A person: everything fixed across their images. Lengths in face units."""

    face_w: float          # half-width of the face
    face_h: float          # half-height
    jaw: float             # chin width relative to the cheeks
    skin: tuple            # RGB
    lip: tuple
    eye_dx: float          # eye centres at x = ±eye_dx
    eye_y: float
    eye_w: float           # half-width of an eye
    eye_open: float        # upper-lid height at rest
    eye_tilt: float        # outer corners raised by this
    iris: tuple
    brow_gap: float        # brow above the eye centre
    brow_th: float         # brow thickness
    brow_arch: float
    nose_y: float          # nostril line
    nose_w: float
    mouth_y: float
    mouth_w: float         # half-width of the mouth at rest
    lip_up: float          # upper and lower lip thickness
    lip_lo: float
    rest_curve: float      # resting corner height: > 0 looks a little sad, < 0 a little happy
    folds: float           # nasolabial folds at rest (age)
    hair: str              # bald | short | long
    hair_line: float
    hair_colour: tuple
    beard: str             # none | stubble | full | goatee
    glasses: str           # none | round | square
    glasses_colour: tuple
    clothes: tuple
    expressiveness: float  # factor on every AU intensity


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def sample_identity(settings: SynthFERSettings, identity: int) -> Identity:
    """The identity's face, from ``SeedSequence([seed, 1, identity])``."""
    r = _rng(settings.seed, 1, identity)
    u = r.uniform
    skin = SKIN_DARK + (SKIN_LIGHT - SKIN_DARK) * u(0, 1) + r.normal(0, 6, 3)
    hair_colour = HAIR_COLOURS[r.integers(len(HAIR_COLOURS))] + r.normal(0, 8, 3)
    return Identity(
        face_w=u(0.82, 0.98), face_h=u(1.15, 1.32), jaw=u(0.5, 0.8), skin=_rgb(skin),
        lip=_rgb(_mix(skin, np.array([170, 60, 70]), u(0.35, 0.6))),
        eye_dx=u(0.32, 0.42), eye_y=u(-0.2, -0.1), eye_w=u(0.17, 0.22), eye_open=u(0.075, 0.1),
        eye_tilt=u(-0.02, 0.03), iris=_rgb(IRIS_COLOURS[r.integers(len(IRIS_COLOURS))]),
        brow_gap=u(0.15, 0.21), brow_th=u(0.045, 0.075), brow_arch=u(0.01, 0.05),
        nose_y=u(0.2, 0.32), nose_w=u(0.17, 0.25),
        mouth_y=u(0.55, 0.65), mouth_w=u(0.24, 0.32), lip_up=u(0.035, 0.06), lip_lo=u(0.045, 0.08),
        rest_curve=u(-0.03, 0.03), folds=u(0, 0.3),
        hair=str(r.choice(["bald", "short", "short", "long", "long"])), hair_line=u(-0.95, -0.72),
        hair_colour=_rgb(hair_colour),
        beard=str(r.choice(["none"] * 6 + ["stubble", "full", "goatee"])),
        glasses=str(r.choice(["none"] * 3 + ["round", "square"])),
        glasses_colour=_rgb(r.choice([[20, 20, 20], [90, 60, 30], [150, 150, 160], [120, 20, 30]])),
        clothes=_rgb(r.uniform(20, 235, 3)),
        expressiveness=u(settings.expressiveness_min, settings.expressiveness_max))


def sample_aus(settings: SynthFERSettings, label: int, expressiveness: float,
               rng: np.random.Generator) -> tuple[dict[int, tuple[float, float]], str]:
    """AU intensities in [0, 1] per side: ``{au: (left, right)}``, and the unilateral side.

    Prototype AUs: ``I = clip(e · level · U(0.75, 1.15))`` with the image level ``~ U(intensity_min,
    intensity_max)`` and identity expressiveness ``e``; with probability ``au_dropout`` an AU keeps only
    ``U(0, 0.25)`` of that. Companions (``COMPANIONS``) add a frequent extra AU at a fraction of the
    level. Every other AU leaks with probability ``leak_prob`` at ``U(0, leak_max)``. Sides differ by up to
    ±10 %, except unilateral AUs (contempt), which act on one random side only.
    """
    s, name = settings, CLASSES[label]
    level = rng.uniform(s.intensity_min, s.intensity_max)
    draws = rng.random((len(AUS), 5))
    side_draw = rng.random()  # drawn for every class: the same RNG use whatever the label (pose etc. follow)
    aus, side = {}, "none"
    for (au, (p_drop, jitter, p_leak, leak, asym)) in zip(AUS, draws):
        if au in PROTOTYPES[name]:
            value = expressiveness * level * (0.75 + 0.4 * jitter)
            if p_drop < s.au_dropout:
                value *= 0.25 * leak
        elif au in COMPANIONS.get(name, {}) and p_drop < COMPANIONS[name][au][0]:
            value = expressiveness * level * COMPANIONS[name][au][1] * (0.75 + 0.4 * jitter)
        elif p_leak < s.leak_prob:
            value = s.leak_max * leak
        else:
            value = 0.0
        spread = 0.1 * (asym - 0.5)
        aus[au] = (min(1.0, float(value * (1 + spread))), min(1.0, float(value * (1 - spread))))
    if name in UNILATERAL:
        side = "left" if side_draw < 0.5 else "right"
        for au in UNILATERAL[name]:
            aus[au] = (aus[au][0], 0.0) if side == "left" else (0.0, aus[au][1])
    return aus, side


# ----------------------------------------------------------------------------------------------------
# Drawing helpers
# ----------------------------------------------------------------------------------------------------

def _mix(a, b, t: float) -> tuple:
    """``(1 - t) a + t b``: colour ``b`` laid over colour ``a`` at opacity ``t`` (clipped to [0, 1])."""
    t = min(max(float(t), 0.0), 1.0)
    return tuple((1 - t) * float(x) + t * float(y) for x, y in zip(a, b))


def _rgb(c) -> tuple:
    return tuple(min(255, max(0, int(float(v) + 0.5))) for v in c)


_CIRCLES: dict[int, np.ndarray] = {}


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 24) -> np.ndarray:
    """``n`` points of the ellipse with centre (cx, cy) and radii (rx, ry), turned by ``angle`` radians."""
    if n not in _CIRCLES:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        _CIRCLES[n] = np.stack([np.cos(t), np.sin(t)], 1)
    points = _CIRCLES[n] * (rx, ry)
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        points = points @ np.array([[c, s], [-s, c]])
    return points + (cx, cy)


def _curve(x0: float, x1: float, f, n: int = 12) -> np.ndarray:
    x = x0 + (x1 - x0) * _steps(n)
    return np.stack([x, f(x)], 1)


@functools.cache
def _steps(n: int) -> np.ndarray:
    """``n`` evenly spaced values from 0 to 1 (shared: do not modify)."""
    steps = np.linspace(0, 1, n)
    steps.flags.writeable = False
    return steps


def _avg(pair: tuple[float, float]) -> float:
    return (pair[0] + pair[1]) / 2


def _band(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The polygon between two curves sampled at the same x, left to right."""
    return np.concatenate([upper, lower[::-1]])


class Canvas:
    """Draws face-unit shapes on an RGB image through the affine map ``matrix`` (2 × 3, face units →
    pixels), and AU areas on an L mask whose pixels are ``mask_scale`` times larger."""

    def __init__(self, image: Image.Image, mask: Image.Image, matrix: np.ndarray, mask_scale: int = 1):
        self.draw, self.mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
        self.linear, self.offset = matrix[:, :2].T.copy(), matrix[:, 2].copy()
        self.mask_scale = mask_scale
        self.unit = math.sqrt(abs(np.linalg.det(matrix[:, :2])))  # pixels per face unit

    def _px(self, points: np.ndarray, scale: int = 1) -> list:
        pixels = np.asarray(points) @ self.linear + self.offset
        return (pixels if scale == 1 else pixels / scale).ravel().tolist()

    def polygon(self, points: np.ndarray, colour) -> None:
        self.draw.polygon(self._px(points), fill=_rgb(colour))

    def line(self, points: np.ndarray, colour, width: float) -> None:
        self.draw.line(self._px(points), fill=_rgb(colour), width=max(1, round(width * self.unit)),
                       joint="curve" if len(points) > 2 else None)

    def area(self, points: np.ndarray) -> None:
        self.mask.polygon(self._px(points, self.mask_scale), fill=255)


DARK = (40, 25, 20)


# ----------------------------------------------------------------------------------------------------
# The face, part by part. ``a`` maps AU → [left, right]; side index k = 0 is image left (x < 0).
# ----------------------------------------------------------------------------------------------------

def face_outline(f: Identity, jaw_drop: float) -> np.ndarray:
    """An egg: rounder above, narrowing to the chin below. AU26 (jaw drop) lengthens the lower face."""
    x, y = _ellipse(0, 0, 1, 1, n=48).T
    lower = np.clip(y, 0, 1)
    x = f.face_w * x * (1 - (1 - f.jaw) * lower ** 2)
    y = np.where(y < 0, 1.05 * f.face_h * y, f.face_h * y + 0.16 * jaw_drop * lower ** 3)
    return np.stack([x, y], 1)


def draw_head_back(c: Canvas, f: Identity) -> None:
    """Shoulders, neck, long hair behind the head, ears."""
    c.polygon(np.array([[-2.2, 2.4], [-1.5, 1.35], [1.5, 1.35], [2.2, 2.4]]), f.clothes)
    c.polygon(np.array([[-0.45, 0.6], [0.45, 0.6], [0.5, 1.6], [-0.5, 1.6]]), _mix(f.skin, DARK, 0.15))
    if f.hair == "long":
        c.polygon(np.concatenate([_ellipse(0, -0.25, f.face_w + 0.22, f.face_h + 0.2)[12:],
                                  [[f.face_w + 0.28, 1.45], [-f.face_w - 0.28, 1.45]]]), f.hair_colour)
    for s in (-1, 1):
        c.polygon(_ellipse(s * f.face_w * 0.98, -0.02, 0.12, 0.21), _mix(f.skin, DARK, 0.1))


def draw_cheeks(c: Canvas, f: Identity, a: dict) -> None:
    """AU6 (cheek raiser) lifts and reddens the cheek mound and deepens the furrow under the eye.
    AU12 also lifts the cheek a little."""
    for k, s in enumerate((-1, 1)):
        lift = 0.09 * a[6][k] + 0.04 * a[12][k]
        cy = f.eye_y + 0.3 - lift
        c.polygon(_ellipse(s * (f.eye_dx + 0.04), cy, 0.17, 0.1), _mix(f.skin, [235, 120, 120], 0.1 + 0.4 * a[6][k]))
        fx = s * (f.eye_dx + np.array([-0.14, -0.05, 0.05, 0.14]))
        c.line(np.stack([fx, cy - 0.1 + np.array([0.0, 0.03, 0.03, 0.0])], 1),
               _mix(f.skin, DARK, 0.65 * a[6][k] + 0.15 * a[7][k]), 0.025)


def draw_folds(c: Canvas, f: Identity, a: dict, corners: np.ndarray) -> None:
    """Nasolabial folds from the nose wing to past the mouth corner: deepened by AU12 (which also pulls
    them out and up), AU9 (raising the upper lip) and AU6. AU15 adds a short line down from the corner;
    AU14 a dimple beside it."""
    for k, s in enumerate((-1, 1)):
        depth = f.folds + 0.6 * a[12][k] + 0.5 * a[9][k] + 0.2 * a[6][k]
        start = np.array([s * (f.nose_w * 0.55 + 0.03), f.nose_y - 0.03])
        end = corners[k] + np.array([s * (0.07 + 0.03 * a[12][k]), 0.07 - 0.04 * a[12][k]])
        mid = (start + end) / 2 + np.array([s * (0.05 + 0.04 * a[12][k]), -0.02])
        t = _steps(8)[:, None]
        c.line((1 - t) ** 2 * start + 2 * t * (1 - t) * mid + t ** 2 * end, _mix(f.skin, DARK, 0.6 * depth), 0.025)
        cx, cy = corners[k]
        if a[15][k] > 0.05:
            c.line(np.array([[cx + s * 0.01, cy + 0.02], [cx + s * 0.03, cy + 0.12]]),
                   _mix(f.skin, DARK, 0.7 * a[15][k]), 0.025)
        if a[14][k] > 0.05:
            c.line(np.array([[cx + s * 0.045, cy - 0.04], [cx + s * 0.06, cy], [cx + s * 0.045, cy + 0.04]]),
                   _mix(f.skin, DARK, 0.9 * a[14][k]), 0.028)


def draw_forehead(c: Canvas, f: Identity, a: dict, brow_top: float) -> None:
    """Horizontal forehead wrinkles: AU1 (frontalis, inner part) creases the centre, AU2 the sides."""
    for i in range(3):
        y = brow_top - 0.09 - 0.065 * i
        if _avg(a[1]) > 0.05:
            c.line(_curve(-0.25, 0.25, lambda x: y + 0.1 * x ** 2, 5), _mix(f.skin, DARK, 0.55 * _avg(a[1])), 0.022)
        for k, s in enumerate((-1, 1)):
            if a[2][k] > 0.05:
                c.line(_curve(s * 0.2, s * 0.5, lambda x: y + 0.1 * x ** 2, 4), _mix(f.skin, DARK, 0.55 * a[2][k]),
                       0.022)


def draw_beard(c: Canvas, f: Identity, jaw_drop: float) -> None:
    """Stubble, a full beard or a goatee around the mouth and chin; it moves with the jaw."""
    if f.beard == "none":
        return
    colour = _mix(f.skin, f.hair_colour, 0.45 if f.beard == "stubble" else 0.95)
    outline = face_outline(f, jaw_drop)
    if f.beard == "goatee":
        c.polygon(_ellipse(0, f.mouth_y + 0.3 + 0.12 * jaw_drop, 0.2, 0.22), colour)
        c.polygon(_ellipse(0, f.mouth_y - 0.08, f.mouth_w + 0.04, 0.06), colour)
        return
    lower = outline[outline[:, 1] > f.nose_y - 0.05]
    lower = lower[np.argsort(np.arctan2(lower[:, 1], lower[:, 0]))]
    top = _curve(lower[-1, 0], lower[0, 0], lambda x: f.nose_y + 0.05 + 0.15 * (np.abs(x) / f.face_w) ** 2)
    c.polygon(np.concatenate([lower, top]), colour)


def draw_hair(c: Canvas, f: Identity) -> None:
    """The hair cap above the hairline, with a wavy fringe."""
    if f.hair == "bald":
        return
    top = _ellipse(0, 0, f.face_w + 0.06, 1.05 * f.face_h + 0.08, n=48)
    top = top[top[:, 1] < f.hair_line + 0.02]
    top = top[np.argsort(-np.arctan2(top[:, 1], top[:, 0]))]
    x = top[-1, 0] + (top[0, 0] - top[-1, 0]) * _steps(13)
    fringe = np.stack([x, f.hair_line + 0.04 * np.sin(x * 9) + 0.08 * (np.abs(x) / f.face_w) ** 2], 1)
    c.polygon(np.concatenate([top, fringe]), f.hair_colour)


def eye_lids(f: Identity, a: dict, k: int):
    """Upper and lower lid curves of one eye and its geometry.

    AU5 (upper lid raiser) lifts the upper lid, baring white above the iris. AU7 (lid tightener) lowers
    the upper lid and raises and straightens the lower lid. AU6 pushes the lower lid up from below; AU4
    presses the upper lid down slightly.
    """
    s = (-1, 1)[k]
    cx, cy = s * f.eye_dx, f.eye_y
    up = f.eye_open * (1 + 1.3 * a[5][k] - 0.45 * a[7][k] - 0.2 * a[6][k] - 0.15 * a[4][k])
    lo = f.eye_open * 0.55 * max(0.15, 1 - 0.6 * a[7][k] - 0.5 * a[6][k])
    w = f.eye_w

    def upper(x):
        d = np.clip(np.abs(x - cx) / w, 0, 1)
        return cy - up * (1 - d ** 2) ** 0.7 - f.eye_tilt * s * (x - cx) / w

    def lower(x):
        d = np.clip(np.abs(x - cx) / w, 0, 1)
        return cy + lo * (1 - d ** 2) ** (0.9 - 0.5 * a[7][k]) - f.eye_tilt * s * (x - cx) / w

    return cx, cy, w, up, lo, upper, lower


def draw_eyes(c: Canvas, f: Identity, a: dict, gaze: np.ndarray) -> None:
    """Sclera between the lids, iris and pupil clipped to them, lash line, crease, AU6 crow's feet,
    AU7's tension line under the lower lid."""
    for k, s in enumerate((-1, 1)):
        cx, cy, w, up, lo, upper, lower = eye_lids(f, a, k)
        top, bottom = _curve(cx - w, cx + w, upper, 14), _curve(cx - w, cx + w, lower, 14)
        c.polygon(_band(top, bottom), [240, 238, 232])
        r = 1.15 * f.eye_open
        for radius, colour in ((r, f.iris), (0.45 * r, [15, 10, 10])):
            disc = _ellipse(cx + gaze[0] * w * 0.35, cy + 0.1 * r + gaze[1] * r * 0.3, radius, radius, n=20)
            disc[:, 0] = np.clip(disc[:, 0], cx - w, cx + w)
            disc[:, 1] = np.clip(disc[:, 1], upper(disc[:, 0]), lower(disc[:, 0]))
            c.polygon(disc, colour)
        c.line(top, _mix(f.skin, DARK, 0.9), 0.025)
        c.line(bottom, _mix(f.skin, DARK, 0.35 + 0.3 * a[7][k]), 0.014)
        crease = top.copy()
        crease[:, 1] -= 0.05 + 0.02 * a[5][k]
        c.line(crease[2:-2], _mix(f.skin, DARK, 0.35), 0.014)
        if a[7][k] > 0.05:
            c.line(bottom[3:-3] + [0, 0.035], _mix(f.skin, DARK, 0.6 * a[7][k]), 0.022)
        if a[6][k] > 0.05:
            corner = np.array([cx + s * (w + 0.03), cy])
            for ang in (-0.45, 0.0, 0.45):
                tip = corner + 0.08 * np.array([s * math.cos(ang), math.sin(ang)])
                c.line(np.stack([corner, tip]), _mix(f.skin, DARK, 0.8 * a[6][k]), 0.022)


def brow_curve(f: Identity, a: dict, k: int) -> np.ndarray:
    """The brow's centre line, inner end first.

    AU1 (inner brow raiser) lifts the inner end, making the brow oblique. AU2 (outer brow raiser) lifts
    the outer end and arches it. AU4 (brow lowerer) lowers the brow, most at the inner end, and pulls the
    inner ends together. AU9 lowers the inner end a little.
    """
    s = (-1, 1)[k]
    t = _steps(8)
    x = s * (f.eye_dx - 0.95 * f.eye_w + t * 2.25 * f.eye_w)
    x = x - s * 0.08 * a[4][k] * (1 - t)
    y = (f.eye_y - f.brow_gap - f.brow_arch * 4 * t * (1 - t) + 0.02 * t
         - 0.18 * a[1][k] * (1 - t) ** 1.5 - 0.15 * a[2][k] * t ** 1.2 - 0.05 * a[2][k] * 4 * t * (1 - t)
         + 0.11 * a[4][k] * (1 - 0.5 * t) + 0.04 * a[9][k] * (1 - t))
    return np.stack([x, y], 1)


def draw_brows(c: Canvas, f: Identity, a: dict) -> float:
    """Both brows (thicker at the inner end) and AU4's vertical furrows between them; returns the brow top."""
    top = 0.0
    colour = _mix(f.hair_colour, DARK, 0.3)
    for k in (0, 1):
        centre = brow_curve(f, a, k)
        half = f.brow_th * (1.1 - 0.55 * _steps(len(centre)))[:, None] / 2
        c.polygon(_band(centre - [0, 1] * half, centre + [0, 1] * half), colour)
        top = min(top, float((centre[:, 1] - half[:, 0]).min()))
    if _avg(a[4]) > 0.05:
        inner_y = float(brow_curve(f, a, 0)[0, 1])
        for x in (-0.045, 0.045):
            c.line(np.array([[x, inner_y - 0.04], [x * 0.8, inner_y + 0.1]]),
                   _mix(f.skin, DARK, 0.8 * _avg(a[4])), 0.025)
    return top


def draw_nose(c: Canvas, f: Identity, a: dict) -> None:
    """Bridge sides, wings, tip and nostrils. AU9 (nose wrinkler) raises and flares the wings and
    creases the bridge."""
    n9 = _avg(a[9])
    lift, flare = 0.06 * n9, 1 + 0.3 * n9
    shade = _mix(f.skin, DARK, 0.22)
    for s in (-1, 1):
        c.line(np.array([[s * 0.07, f.eye_y + 0.02], [s * 0.08, f.nose_y - 0.12 - lift]]), shade, 0.016)
        c.polygon(_ellipse(s * f.nose_w * 0.48 * flare, f.nose_y - 0.01 - lift, 0.07, 0.055), shade)
    c.polygon(_ellipse(0, f.nose_y - 0.03 - lift / 2, f.nose_w * 0.38, 0.065), _mix(f.skin, [255, 255, 255], 0.08))
    for s in (-1, 1):
        c.polygon(_ellipse(s * f.nose_w * 0.28 * flare, f.nose_y + 0.015 - lift, 0.042, 0.02), _mix(f.skin, DARK, 0.75))
    if n9 > 0.05:
        for i in range(3):
            y = f.eye_y + 0.06 + 0.045 * i
            c.line(np.array([[-0.09, y + 0.01], [0, y - 0.01], [0.09, y + 0.01]]), _mix(f.skin, DARK, 0.9 * n9), 0.022)


def mouth_corners(f: Identity, a: dict) -> np.ndarray:
    """Corner positions [left, right].

    AU12 (lip corner puller) moves a corner up and out; AU15 (lip corner depressor) down; AU20 (lip
    stretcher) out sideways; AU14 (dimpler) pulls it in and tucks it; AU23 (lip tightener) narrows the
    mouth; AU26 (jaw drop) lowers the corners with the jaw.
    """
    out = []
    for k, s in enumerate((-1, 1)):
        x = f.mouth_w * (1 + 0.25 * a[12][k] + 0.35 * a[20][k] - 0.12 * a[14][k] - 0.05 * a[15][k] - 0.2 * a[23][k])
        y = (f.mouth_y + f.rest_curve - 0.15 * a[12][k] + 0.12 * a[15][k] + 0.02 * a[20][k] - 0.03 * a[14][k]
             + 0.06 * a[26][k])
        out.append([s * x, y])
    return np.array(out)


def draw_mouth(c: Canvas, f: Identity, a: dict, corners: np.ndarray, smile_open: float) -> None:
    """Lips, and the open mouth's interior and teeth.

    Between the corners, the lip line is the parabola through both corners and the centre ``(0, mouth_y)``,
    so raised corners give a smile and lowered ones a frown. AU26 drops the lower lip (the mouth opens);
    AU16 (lower lip depressor) pulls the lower lip's centre down, baring the lower teeth; AU20 opens a
    wide, flat slit; AU12 parts the lips in a smile (``smile_open``); AU23 thins and presses the lips
    together; AU9 lifts the upper lip.
    """
    m = {au: _avg(v) for au, v in a.items()}
    t = 2 * _steps(17) - 1
    w = (1 + t) / 2
    cx = (1 - w) * corners[0, 0] + w * corners[1, 0]
    line_y = (1 - w) * corners[0, 1] + w * corners[1, 1] + (f.mouth_y - corners[:, 1].mean()) * (1 - t ** 2)
    bell = (1 - t ** 2) ** 0.6
    press = 1 - m[23]
    open_up = (0.04 * m[26] + 0.025 * m[20] + 0.05 * m[12] * smile_open) * press
    open_dn = (0.28 * m[26] + 0.05 * m[20] + 0.09 * m[16] * (1 - t ** 2) + 0.05 * m[12] * smile_open) * press
    up_in = np.stack([cx, line_y - open_up * bell], 1)
    lo_in = np.stack([cx, line_y + open_dn * bell], 1)
    thin = (1 - 0.6 * m[23]) * (1 - 0.25 * m[20])
    bow = 1 - 0.3 * np.exp(-(t / 0.15) ** 2)
    up_out = up_in - np.stack([0 * t, (f.lip_up * thin * bow + 0.03 * m[9]) * (1 - t ** 2) ** 0.4], 1)
    lo_out = lo_in + np.stack([0 * t, f.lip_lo * thin * (1 + 0.4 * m[16]) * (1 - t ** 2) ** 0.5], 1)
    if (open_up + open_dn.max()) > 0.008:
        c.polygon(_band(up_in, lo_in), [70, 25, 30])
        teeth = up_in + [0, 0.045]
        teeth[:, 1] = np.minimum(teeth[:, 1], lo_in[:, 1])
        c.polygon(_band(up_in, teeth), [235, 232, 220])
        if m[16] > 0.15 or m[26] > 0.3:
            low_teeth = lo_in - [0, 0.03]
            low_teeth[:, 1] = np.maximum(low_teeth[:, 1], up_in[:, 1])
            c.polygon(_band(low_teeth, lo_in), [225, 222, 210])
    c.polygon(_band(up_out, up_in), f.lip)
    c.polygon(_band(lo_in, lo_out), _mix(f.lip, [255, 255, 255], 0.08))
    c.line(up_in, _mix(f.lip, DARK, 0.6 + 0.3 * m[23]), 0.02 + 0.015 * m[23])


def draw_glasses(c: Canvas, f: Identity) -> None:
    """Frames around both eyes, a bridge and the temples."""
    if f.glasses == "none":
        return
    rx, ry, n = f.eye_w * 1.45, 0.16, (24 if f.glasses == "round" else 4)
    for s in (-1, 1):
        cx = s * f.eye_dx
        if n == 4:
            rim = np.array([[cx - rx, f.eye_y - ry], [cx + rx, f.eye_y - ry], [cx + rx, f.eye_y + ry],
                            [cx - rx, f.eye_y + ry], [cx - rx, f.eye_y - ry]])
        else:
            rim = _ellipse(cx, f.eye_y, rx, ry, n=24)
            rim = np.concatenate([rim, rim[:1]])
        c.line(rim, f.glasses_colour, 0.03)
        temple = np.array([[s * (f.eye_dx + rx), f.eye_y - 0.05], [s * f.face_w, f.eye_y - 0.08]])
        c.line(temple, f.glasses_colour, 0.03)
    c.line(np.array([[-(f.eye_dx - rx), f.eye_y - 0.04], [0, f.eye_y - 0.08], [f.eye_dx - rx, f.eye_y - 0.04]]),
           f.glasses_colour, 0.03)


def au_areas(f: Identity, a: dict, corners: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Polygons (face units) of where each active AU (intensity ≥ threshold on that side) shows."""
    areas = []
    for k, s in enumerate((-1, 1)):
        on = {au: a[au][k] >= threshold for au in AUS}
        brow = brow_curve(f, a, k)
        ex, ey = s * f.eye_dx, f.eye_y
        mx, my = corners[k]
        if on[1]:
            areas.append(_ellipse(brow[1, 0], brow[1, 1] - 0.04, 0.14, 0.13))
        if on[2]:
            areas.append(_ellipse(brow[-2, 0], brow[-2, 1] - 0.04, 0.14, 0.13))
        if on[4]:
            areas.append(_ellipse(s * 0.1, brow[0, 1], 0.17, 0.12))
        if on[5]:
            areas.append(_ellipse(ex, ey - 0.04, f.eye_w * 1.2, 0.12))
        if on[6]:
            areas.append(_ellipse(ex + s * 0.05, ey + 0.18, 0.22, 0.15))
        if on[7]:
            areas.append(_ellipse(ex, ey + 0.02, f.eye_w * 1.2, 0.11))
        if on[12]:
            areas.append(_ellipse(mx + s * 0.04, my - 0.06, 0.17, 0.15))
        if on[14]:
            areas.append(_ellipse(mx + s * 0.03, my, 0.1, 0.09))
        if on[15]:
            areas.append(_ellipse(mx + s * 0.01, my + 0.06, 0.11, 0.11))
    m = {au: max(v) for au, v in a.items()}
    if m[9] >= threshold:
        areas.append(_ellipse(0, (f.eye_y + f.nose_y) / 2, 0.17, (f.nose_y - f.eye_y) / 2 + 0.06))
    if m[16] >= threshold:
        areas.append(_ellipse(0, f.mouth_y + 0.1, f.mouth_w * 0.8, 0.1))
    if m[20] >= threshold:
        areas.append(_ellipse(0, corners[:, 1].mean(), abs(corners[1, 0] - corners[0, 0]) / 2 + 0.1, 0.11))
    if m[23] >= threshold:
        areas.append(_ellipse(0, f.mouth_y, f.mouth_w + 0.04, 0.1))
    if m[26] >= threshold:
        areas.append(_ellipse(0, f.mouth_y + 0.16, f.mouth_w + 0.06, 0.24))
    return areas


def occluder_shapes(f: Identity, rng: np.random.Generator) -> tuple[str, list[tuple[np.ndarray, tuple]]]:
    """A hand (palm and four fingers) or a bar over a random part of the face, in face units."""
    targets = [(0, f.mouth_y), (-f.eye_dx, f.eye_y), (f.eye_dx, f.eye_y), (0, f.eye_y), (0, f.nose_y),
               (-0.5, 0.4), (0.5, 0.4)]
    tx, ty = targets[rng.integers(len(targets))]
    centre = np.array([tx, ty]) + rng.uniform(-0.1, 0.1, 2)
    angle = rng.uniform(-math.pi, math.pi)
    if rng.random() < 0.5:
        skin = _mix(SKIN_DARK, SKIN_LIGHT, rng.uniform(0, 1))
        shapes = []
        for i, spread in enumerate((-0.5, -0.17, 0.17, 0.5)):
            a = angle + spread * 0.6
            root = centre + 0.22 * np.array([math.cos(a), math.sin(a)])
            shapes.append((_ellipse(*(root + 0.14 * np.array([math.cos(a), math.sin(a)])), 0.2, 0.055, a, n=12),
                           _rgb(_mix(skin, DARK, 0.08 * (i % 2)))))
        shapes.append((_ellipse(*centre, 0.3, 0.26, angle, n=20), _rgb(skin)))
        return "hand", shapes
    c, s = math.cos(angle / 4), math.sin(angle / 4)
    half = np.array([[-1.4, -1], [1.4, -1], [1.4, 1], [-1.4, 1]]) * [1, rng.uniform(0.09, 0.17)]
    bar = centre + half @ np.array([[c, s], [-s, c]])
    return "bar", [(bar, _rgb(rng.uniform(0, 255, 3)))]


def draw_background(image: Image.Image, attribute: int, classes: int, clutter: float,
                    rng: np.random.Generator) -> None:
    """Fill with the attribute's hue (``h = attribute / classes``), then random clutter shapes."""
    hue = (attribute / classes + rng.uniform(-0.03, 0.03)) % 1.0
    image.paste(_hsv(hue, rng.uniform(0.12, 0.3), rng.uniform(0.45, 0.9)), (0, 0, *image.size))
    draw, size = ImageDraw.Draw(image), image.size[0]
    for _ in range(rng.poisson(clutter)):
        kind = rng.integers(3)
        x0, y0 = rng.uniform(-0.1, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.4, 2) * size
        colour = _hsv(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.2, 0.95))
        if kind == 0:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.line((x0, y0, x0 + w, y0 + h), fill=colour, width=max(1, int(size * 0.02)))


def _hsv(h: float, s: float, v: float) -> tuple:
    i, fr = divmod(h * 6, 1)
    p, q, t = v * (1 - s), v * (1 - s * fr), v * (1 - s * (1 - fr))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][int(i) % 6]
    return _rgb((255 * r, 255 * g, 255 * b))


# ----------------------------------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------------------------------

def render(settings: SynthFERSettings, record: Record, identity: Identity | None = None
           ) -> tuple[Image.Image, Image.Image, dict]:
    """Draw one image: ``(RGB image, L mask 0/255, metadata)``, a function of (settings, record) only."""
    s = settings
    f = identity or sample_identity(s, record.identity)
    rng = _rng(s.seed, 2, record.index)
    aus, side = sample_aus(s, record.true_label, f.expressiveness, rng)
    big = s.size * SUPERSAMPLE

    # Pose: face units → canvas pixels. One unit is 0.32 × size at scale 1.
    angle = math.radians(rng.uniform(-s.max_rotation, s.max_rotation))
    scale = 0.32 * big * rng.uniform(1 - s.scale_jitter, 1 + s.scale_jitter)
    shift = rng.uniform(-s.max_shift, s.max_shift, 2) * big
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    matrix = np.array([[cos, -sin, big / 2 + shift[0]], [sin, cos, big * 0.53 + shift[1]]])
    gaze = rng.uniform(-1, 1, 2)
    smile_open = rng.random()

    image = Image.new("RGB", (big, big))
    mask = Image.new("L", (s.size, s.size), 0)  # drawn at 1×: it is thresholded anyway
    draw_background(image, record.attribute, s.classes, s.clutter, rng)
    c = Canvas(image, mask, matrix, mask_scale=SUPERSAMPLE)
    jaw = _avg(aus[26])
    corners = mouth_corners(f, aus)
    draw_head_back(c, f)
    c.polygon(face_outline(f, jaw), f.skin)
    draw_cheeks(c, f, aus)
    draw_folds(c, f, aus, corners)
    draw_beard(c, f, jaw)
    draw_hair(c, f)
    draw_eyes(c, f, aus, gaze)
    brow_top = draw_brows(c, f, aus)
    draw_forehead(c, f, aus, brow_top)
    draw_nose(c, f, aus)
    draw_mouth(c, f, aus, corners, smile_open)
    draw_glasses(c, f)
    for area in au_areas(f, aus, corners, s.mask_threshold):
        c.area(area)

    occluder, occluded = "none", 0.0
    if rng.random() < s.occlusion_prob:
        occluder, shapes = occluder_shapes(f, rng)
        cover = Image.new("L", (s.size, s.size), 0)
        covering = Canvas(image, cover, matrix, mask_scale=SUPERSAMPLE)
        for points, colour in shapes:
            covering.polygon(points, colour)
            covering.area(points)
        inside = np.asarray(mask) > 0
        if inside.any():
            occluded = float((np.asarray(cover)[inside] > 0).mean())

    image = finish(image.reduce(SUPERSAMPLE), rng, s)

    meta = {f"au{au:02d}": round(max(v), 4) for au, v in aus.items()}
    meta.update(side=side, rotation=round(math.degrees(angle), 2), scale=round(scale / (0.32 * big), 4),
                occluder=occluder, occluded=round(occluded, 4), expressiveness=round(f.expressiveness, 4),
                glasses=f.glasses, beard=f.beard)
    return image, mask, meta


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) float array: kernel ``k_i ∝ exp(-i² / 2σ²)`` for
    ``|i| ≤ ⌈2σ⌉``, normalised to sum 1, edges replicated. (Pillow's GaussianBlur costs about three times
    as much at SynthFER's sub-pixel radii.)"""
    r = math.ceil(2 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    n, m = x.shape[:2]
    p = np.pad(x, ((r, r), (0, 0), (0, 0)), mode="edge")
    x = sum(w * p[i: i + n] for i, w in enumerate(k))
    p = np.pad(x, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(w * p[:, i: i + m] for i, w in enumerate(k))


def finish(image: Image.Image, rng: np.random.Generator, s: SynthFERSettings) -> Image.Image:
    """Blur, lighting and sensor noise: ``blur_β(x) · b · (1 + g (d · p)) + σ z``.

    ``blur_β`` is a Gaussian blur of standard deviation ``β ~ U(0, blur) · size / 112`` pixels (skipped
    below a quarter pixel, where it changes nothing visible), ``p`` runs over [-1, 1]² across the image,
    ``d`` is a random unit direction, the gradient ``g ~ U(0, lighting)``, the brightness
    ``b ~ U(0.85, 1.15)``, ``σ ~ U(0, noise) · 255`` and ``z`` is standard normal per pixel, the same in all
    channels (luminance noise).
    """
    n = s.size
    x = np.asarray(image, dtype=np.float32)
    blur = rng.uniform(0, s.blur) * n / 112
    if blur >= 0.25:
        x = gaussian_blur(x, blur)
    angle = rng.uniform(0, 2 * math.pi)
    p = np.linspace(-1, 1, n, dtype=np.float32)
    ramp = math.cos(angle) * p[None, :] + math.sin(angle) * p[:, None]
    gain = (1 + rng.uniform(0, s.lighting) * ramp) * rng.uniform(0.85, 1.15)
    x = x * gain[:, :, None]
    sigma = rng.uniform(0, s.noise) * 255
    if sigma > 0:
        x += (sigma * rng.standard_normal((n, n), dtype=np.float32))[:, :, None]
    x += 0.5
    return Image.fromarray(np.clip(x, 0, 255, out=x).astype(np.uint8))


def write_png(path: str, image: Image.Image) -> None:
    """A PNG with the 'Up' filter and run-length deflate: about three times as fast as Pillow's encoder on
    noisy images (which tries every filter on every row), for files about 5 % larger. Lossless."""
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0  # RGB or grey
    rows = pixels.reshape(height, -1)
    up = np.concatenate([rows[:1], rows[1:] - rows[:-1]])  # uint8 wraps around, as PNG's filter 2 wants
    data = np.concatenate([np.full((height, 1), 2, np.uint8), up], 1).tobytes()

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
    root, settings, records = job
    identities: dict[int, Identity] = {}
    rows = []
    for r in records:
        if r.identity not in identities:
            identities[r.identity] = sample_identity(settings, r.identity)
        image, mask, meta = render(settings, r, identities[r.identity])
        path, mask_path = f"images/{r.split}/{r.name}", f"masks/{r.split}/{r.name}"
        write_png(os.path.join(root, path), image)
        write_png(os.path.join(root, mask_path), mask)
        rows.append({"path": path, "split": r.split, "identity": r.identity, "label": r.label,
                     "true_label": r.true_label, "noisy": int(r.label != r.true_label), **meta,
                     "attribute": r.attribute, "bias_conflicting": int(r.bias_conflicting), "mask": mask_path})
    return rows


def _stored_settings(settings: SynthFERSettings) -> dict:
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
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{marker} is not readable JSON ({e}); delete {out} to regenerate") from e
    wanted = _stored_settings(settings)
    diff = [f"{k}: {stored.get(k, '<missing>')!r} there, {wanted.get(k, '<missing>')!r} asked"
            for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
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
    chunk = max(1, min(64, len(records) // (4 * workers)))  # several chunks per worker, at most 64 images
    jobs = [(str(tmp), settings, records[i: i + chunk]) for i in range(0, len(records), chunk)]
    if workers == 1:
        rows = [row for rs in map(_render_chunk, jobs) for row in rs]
    else:
        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            rows = [row for rs in pool.imap(_render_chunk, jobs) for row in rs]

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
