"""One SynthFER image: the background, the posed face, an occluder, then blur, lighting and noise.

One affine map (pose × supersampling) takes face units to canvas pixels; the face is drawn at
``SUPERSAMPLE``× and box-downsampled, which anti-aliases it.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .face import (DARK, SKIN_DARK, SKIN_LIGHT, Canvas, Identity, au_areas, blend, draw_beard, draw_brows,
                   draw_cheeks, draw_eyes, draw_folds, draw_forehead, draw_glasses, draw_hair, draw_head_back,
                   draw_mouth, draw_nose, ellipse, face_outline, mean_of_sides, mouth_corners, rgb,
                   sample_identity)
from .settings import Record, SynthFERSettings, sample_aus, seeded_rng


SUPERSAMPLE = 2  # the face is drawn at this many times the output size, then box-downsampled


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


def pose_matrix(canvas_size: int, angle: float, scale: float, shift: np.ndarray) -> np.ndarray:
    """The (2, 3) affine map from face units to canvas pixels: rotation ``angle`` (radians), ``scale`` pixels per
    face unit, the face centre at ``(canvas_size / 2, 0.53 canvas_size) + shift`` pixels."""
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[cos, -sin, canvas_size / 2 + shift[0]],
                     [sin, cos, canvas_size * 0.53 + shift[1]]])


def draw_face(canvas: Canvas, person: Identity, aus: dict, gaze: np.ndarray, smile_open: float,
              mask_threshold: float) -> None:
    """The posed face of ``person`` showing ``aus`` (``{au: (left, right)}``), with the AU areas at or above
    ``mask_threshold`` on the canvas's mask; nothing random."""
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
    for area in au_areas(person, aus, corners, mask_threshold):
        canvas.area(area)


def draw_occluder(image: Image.Image, mask: Image.Image, matrix: np.ndarray,
                  shapes: list[tuple[np.ndarray, tuple]]) -> float:
    """Draw the occluder ``shapes`` (face units) over the canvas ``image``; → the fraction of the mask's face-area
    pixels it covers (0 when the mask is empty)."""
    cover = Image.new("L", mask.size, 0)
    covering = Canvas(image, cover, matrix, mask_scale=SUPERSAMPLE)
    for points, colour in shapes:
        covering.polygon(points, colour)
        covering.area(points)
    inside = np.asarray(mask) > 0  # (size, size) bool
    return float((np.asarray(cover)[inside] > 0).mean()) if inside.any() else 0.0


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
    matrix = pose_matrix(canvas_size, angle, scale, shift)
    gaze = rng.uniform(-1, 1, 2)  # (2,)
    smile_open = rng.random()

    image = Image.new("RGB", (canvas_size, canvas_size))
    mask = Image.new("L", (settings.size, settings.size), 0)  # drawn at 1×: it is thresholded anyway
    draw_background(image, record.attribute, settings.classes, settings.clutter, rng)
    draw_face(Canvas(image, mask, matrix, mask_scale=SUPERSAMPLE), person, aus, gaze, smile_open,
              settings.mask_threshold)

    occluder, occluded = "none", 0.0
    if rng.random() < settings.occlusion_prob:
        occluder, shapes = occluder_shapes(person, rng)
        occluded = draw_occluder(image, mask, matrix, shapes)

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
    """Blur, lighting, sensor noise and colour: ``y = blur_β(x) · b · (1 + g (d · p)) + σ z``, then
    ``y ← ℓ + s (y − ℓ)`` with ``ℓ = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601 luma) and ``s = saturation``.

    ``blur_β`` is a Gaussian blur of standard deviation ``β ~ U(0, blur) · size / 112`` pixels (skipped
    below a quarter pixel, where it changes nothing visible), ``p`` runs over [-1, 1]² across the image,
    ``d`` is a random unit direction, the gradient ``g ~ U(0, lighting)``, the brightness
    ``b ~ U(0.85, 1.15)``, ``σ ~ U(0, noise) · 255`` and ``z`` is standard normal per pixel, the same in all
    channels (luminance noise). ``s = 1`` (the default) leaves the colours as drawn and draws nothing; ``s = 0``
    gives grey images (still three channels).
    """
    size = settings.size  # pixels
    blur = rng.uniform(0, settings.blur) * size / 112  # pixels
    angle = rng.uniform(0, 2 * math.pi)  # radians
    gradient = rng.uniform(0, settings.lighting)
    brightness = rng.uniform(0.85, 1.15)
    sigma = rng.uniform(0, settings.noise) * 255  # 0..255 grey levels
    return shade(image, blur, angle, gradient, brightness, sigma, rng, settings.saturation)


def shade(image: Image.Image, blur: float, angle: float, gradient: float, brightness: float, sigma: float,
          rng: np.random.Generator, saturation: float = 1.0) -> Image.Image:
    """``blur_β(x) · b · (1 + g (d · p)) + σ z``, then the colour ``ℓ + s (y − ℓ)``, with the values given (see
    :func:`finish`): ``blur`` β pixels (skipped below 0.25), ``angle`` of d in radians, ``gradient`` g,
    ``brightness`` b, ``sigma`` σ grey levels, ``saturation`` s; ``rng`` draws only the noise z."""
    size = image.size[0]  # pixels
    pixels = np.asarray(image, dtype=np.float32)  # (size, size, 3) float32, 0..255
    if blur >= 0.25:
        pixels = gaussian_blur(pixels, blur)
    p = np.linspace(-1, 1, size, dtype=np.float32)  # (size,)
    ramp = math.cos(angle) * p[None, :] + math.sin(angle) * p[:, None]  # (size, size): d · p
    gain = (1 + gradient * ramp) * brightness  # (size, size)
    pixels = pixels * gain[:, :, None]
    if sigma > 0:
        pixels += (sigma * rng.standard_normal((size, size), dtype=np.float32))[:, :, None]
    if saturation != 1:
        luma = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (size, size)
        pixels = luma[:, :, None] + saturation * (pixels - luma[:, :, None])
    pixels += 0.5  # rounds to nearest in the uint8 cast below
    return Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8))  # (size, size, 3) uint8
