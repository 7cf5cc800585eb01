"""Drawing a frame's face records on it: each face's box (red where detected, orange where tracked), its id, its
label and the label's smoothed probability."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def draw_records(image: np.ndarray, records: list[dict]) -> np.ndarray:
    """The frame with each face's box, id, label and its smoothed probability; padded to even sides (yuv420p)."""
    photo = Image.fromarray(image)
    draw = ImageDraw.Draw(photo)
    width = max(1, round(max(photo.size) / 250))
    for r in records:
        if r["face_id"] is None:
            continue
        x0, y0, x1, y1 = r["box"]
        draw.rectangle((x0, y0, x1, y1), outline=(255, 40, 40) if r["detected"] else (255, 160, 40), width=width)
        draw.text((x0, max(0, y0 - 12)), f"#{r['face_id']} {r['label']} {r['smoothed'][r['label']]:.2f}",
                  fill=(255, 255, 0))
    out = np.asarray(photo)
    return np.pad(out, ((0, out.shape[0] % 2), (0, out.shape[1] % 2), (0, 0)))
