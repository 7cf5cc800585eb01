"""Writing frames to a video file (``VideoWriter``)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoWriter:
    """An H.264 (libx264, else MPEG-4 part 2) mp4, opened at the first frame. ``lossless``: H.264 at CRF 0, whose
    decoded frames are exactly the frames given (in yuv420p); lossy x264 in this build does not always encode the
    same frames the same way twice, lossless it decodes to the same pixels. ``preset``: x264's speed/size trade-off
    (``veryfast``: faster than the default ``medium``, in a larger file; None: x264's default)."""

    def __init__(self, path: Path, fps: float, lossless: bool = False, preset: str | None = None):
        self.path, self.fps, self.lossless, self.preset, self.container = path, fps, lossless, preset, None

    def write(self, image: np.ndarray) -> None:
        if self.container is None:
            self.container = av.open(str(self.path), "w")
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self.stream = self.container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            self.stream.height, self.stream.width = image.shape[:2]
            self.stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self.stream.options = ({"crf": "0"} if self.lossless else {}) | (
                    {"preset": self.preset} if self.preset else {})
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
