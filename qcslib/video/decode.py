"""Frame sources: ``VideoFile`` (a file, honouring ``start``/``end`` seconds) and ``Camera`` (``/dev/videoN``
through FFmpeg's v4l2 input), decoded one frame at a time by PyAV (whose wheels bundle FFmpeg); both yield
``Frame(index, time, image)``. Anything that iterates ``Frame``\\ s and has ``name``, ``fps``, ``frames`` and
``error`` can stand in for them (a test's fake camera does).

A file is decoded packet by packet: when a packet is damaged (a truncated or corrupt file) decoding stops, the
frames the decoder still holds are flushed out, and ``error`` says where it stopped; the frames before the damage
have already gone to the output (decoding is single-threaded: FFmpeg's frame threads lose the frames in flight at
the damage). A file that ends quietly before its header says (a cut file: the demuxer just stops) is an
``error`` too: fewer frames than the header's frame count, or, where the header lists only a duration (Matroska),
a last frame more than one frame's time before it. A frame without a timestamp (as flushed ones can be) is placed
one frame after the previous one. Frames before ``start`` are decoded and dropped, so frame indices are exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import av
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv")


class VideoError(ValueError):
    """A video or camera that cannot be opened, or holds no video stream."""


@dataclass
class Frame:
    """One decoded frame: its index in the video, its time in seconds from the video's start, H × W × 3 uint8 RGB."""

    index: int
    time: float
    image: np.ndarray


class FrameSource(Protocol):
    """An iterable of ``Frame``\\ s. ``fps``: nominal frame rate; ``frames``: how many frames the iteration is
    expected to give (None: unknown, e.g. a camera); ``error``: after iterating, why decoding stopped early (frames
    before it were yielded), or None."""

    name: str
    fps: float
    frames: int | None
    error: str | None

    def __iter__(self) -> Iterator[Frame]: ...


class _PyAVSource:
    """The PyAV decoding loop shared by files and cameras; a subclass says how to ``_open`` its container."""

    def __init__(self, name: str, start: float = 0.0, end: float | None = None):
        if not (math.isfinite(start) and 0 <= start and (end is None or (math.isfinite(end) and start < end))):
            raise ValueError(f"{name}: need finite 0 <= start < end, got start {start}, end {end}")
        self.name, self.start, self.end, self.error = name, start, end, None
        try:
            with self._open() as container:
                stream = self._stream(container)
                self.fps = float(stream.average_rate or stream.base_rate or 30)
                self.listed = stream.frames or None  # what the header says the whole video holds
                self.duration = (float(stream.duration * stream.time_base) if stream.duration else
                                 container.duration / av.time_base if container.duration else None)
        except av.FFmpegError as e:
            raise VideoError(f"{name}: cannot open the video: {e}") from None
        if self.duration is not None and start >= self.duration:
            raise ValueError(f"{name}: start {start:g} s is at or past the end of the video, which its header says "
                             f"is {self.duration:.2f} s long")
        self.frames = self._window(self.listed)

    def _open(self):
        raise NotImplementedError

    def _window(self, listed: int | None) -> int | None:
        if listed is None:
            return None
        last = listed if self.end is None else min(listed, math.ceil(self.end * self.fps))
        return max(0, last - math.ceil(self.start * self.fps))

    def _stream(self, container):
        if not container.streams.video:
            raise VideoError(f"{self.name}: no video stream (a damaged file, or one cut before its index?)")
        return container.streams.video[0]

    def _decoded(self, container, stream):
        """PyAV frames, packet by packet; on damage, set ``error``, flush what the decoder holds and stop."""
        try:
            for packet in container.demux(stream):
                yield from stream.decode(packet)
        except av.FFmpegError as e:
            self.error = str(e)
            try:
                yield from stream.codec_context.decode(None)
            except av.FFmpegError:
                pass  # nothing more to flush; the error above is what is reported

    def __iter__(self) -> Iterator[Frame]:
        self.error = None
        with self._open() as container:
            stream = self._stream(container)
            t0, count, index, time = None, 0, -1, -1 / self.fps
            for index, frame in enumerate(self._decoded(container, stream)):
                known = frame.time is not None and math.isfinite(frame.time)
                if t0 is None:
                    t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else (
                        frame.time if known else 0.0)
                time = frame.time - t0 if known else time + 1 / self.fps  # no timestamp: one frame on
                if self.end is not None and time >= self.end:
                    return
                if time >= self.start:
                    count += 1
                    yield Frame(index, time, frame.to_ndarray(format="rgb24"))
        decoded = index + 1
        if self.error:
            self.error = (f"{self.name}: decoding stopped after frame {decoded} ({time:.2f} s) of "
                          f"{self.listed or 'an unknown number'}: {self.error}; the {count} frames before it are kept")
        elif self.listed and decoded < self.listed:
            self.error = (f"{self.name}: the stream ended after {decoded} of the {self.listed} frames its header "
                          f"lists (a truncated file?); the {count} frames before it are kept")
        elif not self.listed and self.duration and time + 2 / self.fps < self.duration:  # over a frame missing
            self.error = (f"{self.name}: the stream ended at {time:.2f} s of the {self.duration:.2f} s its header "
                          f"lists (a truncated file?); the {count} frames before it are kept")
        elif count == 0 and decoded:
            self.error = f"{self.name}: no frame at or after start {self.start:g} s (the last is at {time:.2f} s)"


class VideoFile(_PyAVSource):
    """A video file's frames with ``start <= time < end`` (seconds; ``end`` None: to the end)."""

    def __init__(self, path, start: float = 0.0, end: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: not found")
        super().__init__(str(self.path), start, end)

    def _open(self):
        return av.open(str(self.path))


class Camera(_PyAVSource):
    """Camera ``index`` (``/dev/video<index>``, FFmpeg's v4l2 input) until ``end`` seconds, or Ctrl-C."""

    def __init__(self, index: int, end: float | None = None):
        self.device = Path(f"/dev/video{index}")
        if not self.device.exists():
            raise VideoError(f"camera {index}: {self.device} does not exist (no camera on this machine?)")
        super().__init__(f"camera {index}", 0.0, end)

    def _open(self):
        return av.open(str(self.device), format="v4l2")
