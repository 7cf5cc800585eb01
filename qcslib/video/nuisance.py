"""What real video does to frames that a rendered clip lacks, added to a clip after it is rendered: camera shake
and pose jitter, motion blur, lighting flicker, brief occlusions and compression, all scaled by one ``strength``
s in [0, 1] (0: the clip as rendered) and seeded per frame, so a clip degraded twice is degraded the same way.

At strength s, frame t gets, in this order:

- **jitter**: a similarity transform about the frame's centre c, ``p' = c + k R(θ) (p − c) + d``, with the shift
  ``d ~ N(0, (SHAKE · s · side)²)`` pixels per axis (``side`` the frame's), the scale ``k = 1 + SCALE · s · ε``
  and the in-plane rotation ``θ = ROTATE · s · ε'`` degrees (``ε, ε' ~ N(0, 1)``), the edges repeated; the truth's
  landmarks move with it, and its box becomes the bounds of its moved corners;
- **motion blur**: a box filter ``1 + round(BLUR · s · side)`` pixels long along a random axis (x or y);
- **flicker**: every pixel times ``1 + FLICKER · s · ε``, ``ε ~ N(0, 1)`` drawn per frame, clipped to [0, 255];
- **occlusion**: with probability ``1 − exp(−OCCLUSIONS · s · Δt)`` per frame (``OCCLUSIONS · s`` per second on
  average) a grey bar starts, as wide as the face box and a third of its height, over a random third of it, and
  stays ``OCCLUSION_SECONDS``;
- **compression**: JPEG at quality ``round(95 − 70 s)`` (none at s = 0).
"""
from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import affine_transform, uniform_filter1d

from .decode import VideoFile
from .encode import VideoWriter

SHAKE = 0.02           # std of the shift, a fraction of the frame's side
SCALE = 0.05           # std of the scale factor's departure from 1
ROTATE = 4.0           # std of the in-plane rotation, degrees
BLUR = 0.06            # the longest blur, a fraction of the side
FLICKER = 0.15         # std of the brightness factor
OCCLUSIONS = 0.5       # occlusions per second at s = 1
OCCLUSION_SECONDS = 0.4
BOX = ["box_x0", "box_y0", "box_x1", "box_y1"]


def check_strength(strength: float) -> None:
    """Raise ValueError unless ``strength`` is a number in [0, 1]."""
    if not (isinstance(strength, (int, float)) and 0 <= strength <= 1):
        raise ValueError(f"nuisance strength must be a number in [0, 1], got {strength!r}")


def jitter(strength: float, side: int, rng: np.random.Generator) -> np.ndarray:
    """The jitter's forward map of pixel coordinates ``(x, y)`` about the centre of a ``side``-pixel frame, as a
    2 × 3 matrix ``[k R | c − k R c + d]`` (the module docstring); the identity at strength 0."""
    shift = rng.normal(0, SHAKE * strength * side, 2)  # (2,) pixels
    scale, angle = 1 + SCALE * strength * rng.normal(), math.radians(ROTATE * strength * rng.normal())
    linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.full(2, (side - 1) / 2)
    return np.hstack([linear, (centre - linear @ centre + shift)[:, None]])


def moved(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``points`` (N × 2, x and y) through a 2 × 3 forward map."""
    return np.asarray(points, dtype=float) @ matrix[:, :2].T + matrix[:, 2]


def degrade(image: np.ndarray, box: np.ndarray, strength: float, rng: np.random.Generator,
            occluded_part: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One square frame (H × W × 3 uint8) at ``strength`` → (degraded frame, the jitter's 2 × 3 forward map of
    pixel coordinates). ``box``: the face's ``(x0, y0, x1, y1)`` before the jitter; ``occluded_part``: which third
    of it (0 top, 1 middle, 2 bottom) a running occlusion covers, None for none. ``rng`` draws the jitter, the blur
    axis and the flicker."""
    check_strength(strength)
    side = max(image.shape[:2])
    matrix = jitter(strength, side, rng)
    out = np.asarray(image, dtype=np.float32)
    if strength > 0:  # sample the input at the inverse map of every output pixel, in (row, column) order
        inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
        rc = inverse[::-1, [1, 0, 2]]  # the same map with x and y swapped on both sides
        out = np.stack([affine_transform(out[..., k], rc[:, :2], rc[:, 2], order=1, mode="nearest")
                        for k in range(3)], axis=-1)
    length = 1 + round(BLUR * strength * side)
    axis = int(rng.integers(2))
    if length > 1:
        out = uniform_filter1d(out, length, axis=axis, mode="nearest")
    out = out * (1 + FLICKER * strength * rng.normal())
    if occluded_part is not None:
        corners = moved([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]], matrix)
        (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
        third = (y1 - y0) / 3
        top = int(round(y0 + occluded_part * third))
        out[max(top, 0):max(int(round(top + third)), 0), max(int(round(x0)), 0):max(int(round(x1)), 0)] = 128
    frame = np.clip(out, 0, 255).astype(np.uint8)
    if strength == 0:  # the clip as rendered: no compression either
        return frame, matrix
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=round(95 - 70 * strength))
    return np.asarray(Image.open(buffer).convert("RGB")), matrix


LANDMARKS = [(f"landmark{k}_x", f"landmark{k}_y") for k in range(5)]


def degrade_clip(video: str | Path, truth: str | Path, out: str | Path, strength: float, seed: int = 0) -> dict:
    """A SynthFER clip (``video`` and its ``truth`` CSV) degraded at ``strength`` into the folder ``out``: the same
    file names, the truth's landmarks moved by each frame's jitter and its box the bounds of its moved corners,
    and ``jitter_dx``, ``jitter_dy`` (the centre's shift, pixels), ``jitter_scale``, ``jitter_deg`` and ``bar``
    (the occluded third, −1 for none) added → ``{video, truth, frames}``. Frame t draws from
    ``default_rng((seed, 0, t))``, the occlusions from ``default_rng((seed, 1))``."""
    check_strength(strength)
    video, truth, out = Path(video), Path(truth), Path(out)
    if out.resolve() == video.parent.resolve():
        raise ValueError(f"{out}: the degraded clip would replace the clean one; write it to another folder")
    table = pd.read_csv(truth)
    needed = BOX + [c for pair in LANDMARKS for c in pair] + ["frame", "time_s"]
    if missing := [c for c in needed if c not in table.columns]:
        raise ValueError(f"{truth}: a clip truth CSV without the columns {missing}; render the clip again")
    out.mkdir(parents=True, exist_ok=True)
    if strength == 0:  # the clip as rendered, byte for byte (encoding decoded frames again would shift colours)
        shutil.copyfile(video, out / video.name)
        table.assign(jitter_dx=0.0, jitter_dy=0.0, jitter_scale=1.0, jitter_deg=0.0, bar=-1).to_csv(
            out / truth.name, index=False)
        return {"video": str(out / video.name), "truth": str(out / truth.name), "frames": len(table)}
    source = VideoFile(video)
    writer = VideoWriter(out / video.name, source.fps, lossless=True)
    occlusions, bar, until = np.random.default_rng((seed, 1)), -1, -math.inf
    rows = table.set_index("frame")
    moved_rows = []
    try:
        for frame in source:
            if frame.index not in rows.index:
                raise ValueError(f"{truth}: no row for frame {frame.index} of {video}")
            if frame.time >= until and occlusions.random() < 1 - math.exp(-OCCLUSIONS * strength / source.fps):
                bar, until = int(occlusions.integers(3)), frame.time + OCCLUSION_SECONDS
            running = bar if frame.time < until else -1
            row = rows.loc[frame.index]
            image, matrix = degrade(frame.image, row[BOX].to_numpy(float), strength,
                                    np.random.default_rng((seed, 0, frame.index)), None if running < 0 else running)
            writer.write(image)
            moved_rows.append(_moved_truth(row, matrix, image.shape[0], running))
    finally:
        writer.close()
    if source.error or len(moved_rows) != len(table):
        raise ValueError(f"{video}: decoded {len(moved_rows)} of the truth's {len(table)} frames"
                         + (f" ({source.error})" if source.error else ""))
    degraded = table.copy()
    changes = pd.DataFrame(moved_rows, index=table.index)
    degraded[changes.columns] = changes
    degraded.to_csv(out / truth.name, index=False)
    return {"video": str(out / video.name), "truth": str(out / truth.name), "frames": len(degraded)}


def _moved_truth(row: pd.Series, matrix: np.ndarray, side: int, bar: int) -> dict:
    """A truth row's box and landmarks through the jitter's forward ``matrix``, and what the jitter was."""
    x0, y0, x1, y1 = row[BOX].to_numpy(float)
    corners = moved([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], matrix)
    out = dict(zip(BOX, np.round(np.concatenate([corners.min(0), corners.max(0)]), 1)))
    points = moved(np.array([[row[x], row[y]] for x, y in LANDMARKS]), matrix)
    for (x, y), (px, py) in zip(LANDMARKS, np.round(points, 1)):
        out[x], out[y] = px, py
    centre = np.full(2, (side - 1) / 2)
    shift = moved(centre[None], matrix)[0] - centre
    return {**out, "jitter_dx": round(float(shift[0]), 2), "jitter_dy": round(float(shift[1]), 2),
            "jitter_scale": round(float(np.hypot(*matrix[:, 0])), 4),
            "jitter_deg": round(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])), 2), "bar": bar}
