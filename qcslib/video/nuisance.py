"""What real video does to frames that a rendered clip lacks, added to a clip after it is rendered: camera shake,
motion blur, lighting flicker, brief occlusions and compression, all scaled by one ``strength`` s in [0, 1]
(0: the clip as rendered) and seeded per frame, so a clip degraded twice is degraded the same way.

At strength s, frame t of a clip whose face box is ``w × h`` pixels gets, in this order:

- **shake**: a shift ``(dx, dy) ~ N(0, (SHAKE · s · side)²)`` pixels, ``side`` the frame's, the edges repeated;
  the truth's box and landmarks move with it;
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
from scipy.ndimage import uniform_filter1d

from .decode import VideoFile
from .encode import VideoWriter

SHAKE = 0.02           # std of the shift, a fraction of the frame's side
BLUR = 0.06            # the longest blur, a fraction of the side
FLICKER = 0.15         # std of the brightness factor
OCCLUSIONS = 0.5       # occlusions per second at s = 1
OCCLUSION_SECONDS = 0.4
BOX = ["box_x0", "box_y0", "box_x1", "box_y1"]


def check_strength(strength: float) -> None:
    """Raise ValueError unless ``strength`` is a number in [0, 1]."""
    if not (isinstance(strength, (int, float)) and 0 <= strength <= 1):
        raise ValueError(f"nuisance strength must be a number in [0, 1], got {strength!r}")


def degrade(image: np.ndarray, box: np.ndarray, strength: float, rng: np.random.Generator,
            occluded_part: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame (H × W × 3 uint8) at ``strength`` → (degraded frame, its shift ``(dx, dy)`` in pixels). ``box``:
    the face's ``(x0, y0, x1, y1)`` before the shift; ``occluded_part``: which third of it (0 top, 1 middle, 2
    bottom) a running occlusion covers, None for none. ``rng`` draws the shake, the blur axis and the flicker."""
    check_strength(strength)
    side = max(image.shape[:2])
    shift = np.round(rng.normal(0, SHAKE * strength * side, 2)).astype(int)  # (2,) pixels: dx, dy
    out = np.asarray(image, dtype=np.float32)
    rows = np.clip(np.arange(out.shape[0]) - shift[1], 0, out.shape[0] - 1)
    columns = np.clip(np.arange(out.shape[1]) - shift[0], 0, out.shape[1] - 1)
    out = out[rows][:, columns]
    length = 1 + round(BLUR * strength * side)
    axis = int(rng.integers(2))
    if length > 1:
        out = uniform_filter1d(out, length, axis=axis, mode="nearest")
    out = out * (1 + FLICKER * strength * rng.normal())
    if occluded_part is not None:
        x0, y0, x1, y1 = np.asarray(box, dtype=float) + np.tile(shift, 2)
        third = (y1 - y0) / 3
        top = int(round(y0 + occluded_part * third))
        out[max(top, 0):max(int(round(top + third)), 0), max(int(round(x0)), 0):max(int(round(x1)), 0)] = 128
    frame = np.clip(out, 0, 255).astype(np.uint8)
    if strength == 0:  # the clip as rendered: no compression either
        return frame, shift
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=round(95 - 70 * strength))
    return np.asarray(Image.open(buffer).convert("RGB")), shift


def degrade_clip(video: str | Path, truth: str | Path, out: str | Path, strength: float, seed: int = 0) -> dict:
    """A SynthFER clip (``video`` and its ``truth`` CSV) degraded at ``strength`` into the folder ``out``: the same
    file names, the truth's box and landmark columns moved by each frame's shake, and ``shake_x``, ``shake_y`` and
    ``bar`` (the occluded third, −1 for none) added → ``{video, truth, frames}``. Frame t draws from
    ``default_rng((seed, 0, t))``, the occlusions from ``default_rng((seed, 1))``."""
    check_strength(strength)
    video, truth, out = Path(video), Path(truth), Path(out)
    if out.resolve() == video.parent.resolve():
        raise ValueError(f"{out}: the degraded clip would replace the clean one; write it to another folder")
    table = pd.read_csv(truth)
    if missing := [c for c in BOX + ["frame", "time_s"] if c not in table.columns]:
        raise ValueError(f"{truth}: a clip truth CSV without the columns {missing}; render the clip again")
    out.mkdir(parents=True, exist_ok=True)
    if strength == 0:  # the clip as rendered, byte for byte (encoding decoded frames again would shift colours)
        shutil.copyfile(video, out / video.name)
        table.assign(shake_x=0, shake_y=0, bar=-1).to_csv(out / truth.name, index=False)
        return {"video": str(out / video.name), "truth": str(out / truth.name), "frames": len(table)}
    source = VideoFile(video)
    writer = VideoWriter(out / video.name, source.fps, lossless=True)
    occlusions, bar, until = np.random.default_rng((seed, 1)), -1, -math.inf
    shakes, bars = [], []
    try:
        for frame in source:
            start = 1 - math.exp(-OCCLUSIONS * strength / source.fps)
            if frame.time >= until and occlusions.random() < start:
                bar, until = int(occlusions.integers(3)), frame.time + OCCLUSION_SECONDS
            running = bar if frame.time < until else -1
            row = table.loc[table["frame"] == frame.index, BOX].to_numpy(float)
            if not len(row):
                raise ValueError(f"{truth}: no row for frame {frame.index} of {video}")
            image, shift = degrade(frame.image, row[0], strength, np.random.default_rng((seed, 0, frame.index)),
                                   None if running < 0 else running)
            writer.write(image)
            shakes.append(shift)
            bars.append(running)
    finally:
        writer.close()
    if source.error or len(shakes) != len(table):
        raise ValueError(f"{video}: decoded {len(shakes)} of the truth's {len(table)} frames"
                         + (f" ({source.error})" if source.error else ""))
    shakes = np.asarray(shakes, dtype=float)  # (frames, 2)
    moved = table.copy()
    for column in moved.columns:
        if column in BOX or column.startswith("landmark"):
            moved[column] = moved[column] + shakes[:, 0 if column.endswith(("x0", "x1", "_x")) else 1]
    moved = moved.assign(shake_x=shakes[:, 0].astype(int), shake_y=shakes[:, 1].astype(int), bar=bars)
    moved.to_csv(out / truth.name, index=False)
    return {"video": str(out / video.name), "truth": str(out / truth.name), "frames": len(moved)}
