"""A video made of real photos, for running the video pipeline on real faces where no video ships: each photo in
turn, panned and zoomed.

``real_photos()`` are the photos of people that installed packages ship, and one without a face (so that the clip
has frames with no face): scikit-image's astronaut (Eileen Collins) and cameraman, matplotlib's Grace Hopper, and
scikit-image's coffee cup. In photo k's ``n`` frames, at ``u = i / (n − 1)``, the window is a square of side
``(0.95 − 0.35 u) · min(H, W)`` (a zoom in) centred at ``(W/2 + 0.1 (u − ½) W, H/2)`` (a pan to the right), moved
inside the photo where it would leave it, and resized to the clip's side.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..video.encode import VideoWriter


def real_photos() -> dict[str, np.ndarray]:
    """``{name: H × W × 3 uint8 RGB}``: astronaut, grace_hopper, cameraman (grey, as RGB), coffee (no face)."""
    import matplotlib.cbook
    from skimage import data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    camera = data.camera()  # (512, 512) uint8
    return {"astronaut": data.astronaut(), "grace_hopper": hopper, "cameraman": np.stack([camera] * 3, axis=2),
            "coffee": data.coffee()}


def pan_and_zoom(photo: np.ndarray, frames: int, side: int):
    """``frames`` ``side`` × ``side`` views of ``photo``, zooming in and panning right (the module docstring)."""
    height, width = photo.shape[:2]
    image = Image.fromarray(photo)
    for i in range(frames):
        u = i / max(1, frames - 1)
        window = (0.95 - 0.35 * u) * min(height, width)  # pixels
        x = min(max(width / 2 + 0.1 * (u - 0.5) * width - window / 2, 0), width - window)
        y = min(max(height / 2 - window / 2, 0), height - window)
        yield np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, box=(x, y, x + window, y + window)))


def write_photo_clip(path, photos: dict[str, np.ndarray] | None = None, frames_per_photo: int = 20,
                     side: int = 256, fps: float = 10.0) -> dict:
    """Write the clip of ``photos`` (default ``real_photos()``) to ``path`` (mp4) → ``{video, frames, photos}``,
    ``photos`` listing ``(name, first frame, last frame)``."""
    if frames_per_photo < 1 or side < 32 or side % 2:
        raise ValueError(f"need frames_per_photo >= 1 and an even side >= 32, got {frames_per_photo} and {side}")
    photos = real_photos() if photos is None else photos
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer, spans = VideoWriter(Path(path), fps), []
    try:
        for k, (name, photo) in enumerate(photos.items()):
            for image in pan_and_zoom(photo, frames_per_photo, side):
                writer.write(image)
            spans.append((name, k * frames_per_photo, (k + 1) * frames_per_photo - 1))
    finally:
        writer.close()
    return {"video": str(path), "frames": len(photos) * frames_per_photo, "photos": spans}
