"""SynthFER's settings and protocol: every knob, the class and AU vocabulary, the plan of who appears in
which image with which label, and the draw of each image's AU intensities.

The protocol is the order of the random draws. The plan comes from ``seeded_rng(seed, 0)``, a person from
``seeded_rng(seed, 1, identity)`` (:func:`.face.sample_identity`) and everything in one image from
``seeded_rng(seed, 2, index)``: its AUs (:func:`sample_aus`) first, then pose, background, occluder and
finish (:func:`.render.render`). A change to any of it changes the images: bump ``VERSION``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..sources import CLASS_NAMES


VERSION = 3  # bump whenever the same settings would draw different images; it invalidates caches
# Settings added since without a VERSION bump, with the default that draws what a dataset made before them holds
# (so that its settings.json, which lacks them, still matches).
ADDED_SETTINGS = {"saturation": 1.0}

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
    """Every knob of the generator; all fields are plain ints and floats. Defaults: see :mod:`qcslib.data.synthfer`."""

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
    saturation: float = 1.0          # colour: pixel ← luma + saturation · (pixel − luma); 1 as drawn, 0 greyscale
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
                     "saturation", "clutter", "mask_threshold"):
            need(getattr(self, name) >= 0, name, "non-negative")
        need(self.scale_jitter < 1, "scale_jitter", "below 1")
        need(0 < self.mask_threshold <= 1, "mask_threshold", "in (0, 1]")

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASSES[: self.classes]

    def to_dict(self) -> dict:
        return asdict(self)


# Domain presets: settings overrides that shift SynthFER's domain, applied on top of a profile's settings (the
# profile key ``synthfer_domain: NAME``, or ``--set synthfer_domain=NAME``; see ``qcslib.train.config``). None
# touches ``classes``, ``size`` or the protocol, so every domain's test split has the same classes, and a model
# trained on one domain is scored on another's test split as it is.
DOMAINS = {
    "studio": {},                                        # the profile's own settings
    "identities": {"seed": 2411},                        # other people (and other draws of all else): no shift
    "lighting": {"lighting": 0.8},                       # strong light gradients, up to black or blown-out corners
    "pose": {"max_rotation": 15.0, "scale_jitter": 0.12, "max_shift": 0.05},  # tilted, scaled, off-centre faces
    "occluded": {"occlusion_prob": 0.6},                 # a hand or a bar over most faces
    "style": {"saturation": 0.0},                        # greyscale, as FER2013/FERPlus images are
}


def domain_settings(settings: SynthFERSettings, domain: str) -> SynthFERSettings:
    """``settings`` with the ``DOMAINS[domain]`` overrides; an unknown domain is a one-line ValueError."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown SynthFER domain {domain!r}; expected one of {', '.join(DOMAINS)}")
    return SynthFERSettings(**{**settings.to_dict(), **DOMAINS[domain]})


def seeded_rng(*key: int) -> np.random.Generator:
    """PCG64 seeded by ``SeedSequence(key)``. The keys in use: ``(seed, 0)`` the plan, ``(seed, 1, identity)``
    a person, ``(seed, 2, image index)`` everything drawn for one image."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


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
# The action units of one image
# ----------------------------------------------------------------------------------------------------

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
