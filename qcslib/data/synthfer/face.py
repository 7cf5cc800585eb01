"""The SynthFER face: a person (:class:`Identity`), drawing helpers, and the face part by part, each part
moved by the action units that move it in FACS.

Geometry lives in *face units*: the origin is the face centre, x points to image right, y down, and the
face is about 2 units wide; "left" and "right" (meta's ``side``) are the image's sides, x < 0 and x > 0.
A :class:`Canvas` takes face units to pixels.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .settings import SynthFERSettings, seeded_rng


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
