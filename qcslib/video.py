"""Faces in videos and camera streams: frames decoded one at a time (PyAV, whose wheels bundle FFmpeg), faces
detected every K frames and tracked in between, each face's probabilities smoothed over time, and per-frame
records and an annotated video written as the frames go by: memory does not grow with the video's length, except
for the timeline plot, drawn at the end from the CSV read back (one row per face and frame).

- **Frame sources.** ``VideoFile`` (a file, honouring ``start``/``end`` seconds) and ``Camera`` (``/dev/videoN``
  through FFmpeg's v4l2 input) both yield ``Frame(index, time, image)``; anything that iterates ``Frame``\\ s and
  has ``name``, ``fps``, ``frames`` and ``error`` can stand in for them (a test's fake camera does). A file is
  decoded packet by packet: when a packet is damaged (a truncated or corrupt file) decoding stops, the frames the
  decoder still holds are flushed out, and ``error`` says where it stopped; the frames before the damage have
  already gone to the output (decoding is single-threaded: FFmpeg's frame threads lose the frames in flight at
  the damage). A frame without a timestamp (as flushed ones can be) is placed one frame after the previous one.
  Frames before ``start`` are decoded and dropped, so frame indices are exact.
- **Tracking** (``Tracker``). Between detections a face's box and landmarks move on at the velocity of its box
  centre between its last two detections (constant-velocity extrapolation; a new face stands still). At a
  detection frame, detections are matched to the tracks' extrapolated positions by the Hungarian algorithm on the
  cost ``(1 − IoU(box, box')) + mean_k |l_k − l'_k| / diag(box)`` over the 5 landmarks, a pair with IoU below
  ``min_iou`` never matching; an unmatched detection starts a new id. Extrapolation is what keeps the ids through
  a crossing: when two boxes overlap, each track's predicted position is still on its own side of its path.
- **Smoothing** (``Smoother``). Per face id, an exponential moving average with time constant τ seconds,
  ``p_t = p_{t−1} + (1 − exp(−Δt/τ)) (x_t − p_{t−1})``, Δt the time since that face's previous frame; it depends
  on time, not on the frame rate. The first frame of a face, and τ = 0, give ``p = x``. A record's ``label`` is the
  argmax of the smoothed probabilities.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
from PIL import Image

from .faces import Face, FaceDetector, Predictor, align

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
        import av

        if start < 0 or (end is not None and end <= start):
            raise VideoError(f"{name}: need 0 <= start < end, got start {start}, end {end}")
        self.name, self.start, self.end, self.error = name, start, end, None
        try:
            with self._open() as container:
                stream = self._stream(container)
                self.fps = float(stream.average_rate or stream.base_rate or 30)
                self.listed = stream.frames or None  # what the header says the whole video holds
        except av.FFmpegError as e:
            raise VideoError(f"{name}: cannot open the video: {e}") from None
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
        import av

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


class VideoFile(_PyAVSource):
    """A video file's frames with ``start <= time < end`` (seconds; ``end`` None: to the end)."""

    def __init__(self, path, start: float = 0.0, end: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: not found")
        super().__init__(str(self.path), start, end)

    def _open(self):
        import av
        return av.open(str(self.path))


class Camera(_PyAVSource):
    """Camera ``index`` (``/dev/video<index>``, FFmpeg's v4l2 input) until ``end`` seconds, or Ctrl-C."""

    def __init__(self, index: int, end: float | None = None):
        self.device = Path(f"/dev/video{index}")
        if not self.device.exists():
            raise VideoError(f"camera {index}: {self.device} does not exist (no camera on this machine?)")
        super().__init__(f"camera {index}", 0.0, end)

    def _open(self):
        import av
        return av.open(str(self.device), format="v4l2")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


@dataclass
class Track:
    """A face followed over frames: its id, box and landmarks at its last detection (frame ``frame``), and the
    velocity of its box centre in pixels per frame."""

    id: int
    box: np.ndarray
    landmarks: np.ndarray
    velocity: np.ndarray
    frame: int

    def at(self, frame: int) -> Face:
        """Where the track is at ``frame``: moved on by ``velocity`` × the frames since its last detection."""
        shift = self.velocity * (frame - self.frame)
        return Face(self.box + np.tile(shift, 2), self.landmarks + shift, 1.0)


class Tracker:
    """Stable face ids over frames (the matching is in the module docstring). ``update(frame, faces)`` at a
    detection frame, ``carry(frame)`` in between; both → ``[(id, Face)]``. A track not detected for more than
    ``max_gap`` frames is forgotten; one missed by a detection is not carried, but can still be matched again."""

    def __init__(self, min_iou: float = 0.1, max_gap: int = 30):
        self.min_iou, self.max_gap = min_iou, max_gap
        self.tracks: list[Track] = []
        self.next_id = 0
        self.last_detection = None

    def update(self, frame: int, faces: list[Face]) -> list[tuple[int, Face]]:
        from scipy.optimize import linear_sum_assignment

        self.tracks = [t for t in self.tracks if frame - t.frame <= self.max_gap]
        predicted = [t.at(frame) for t in self.tracks]
        cost = np.full((len(predicted), len(faces)), np.inf)
        for i, p in enumerate(predicted):
            diagonal = max(1e-6, float(np.hypot(p.box[2] - p.box[0], p.box[3] - p.box[1])))
            for j, f in enumerate(faces):
                overlap = iou(p.box, f.box)
                if overlap >= self.min_iou:
                    cost[i, j] = 1 - overlap + np.linalg.norm(p.landmarks - f.landmarks, axis=1).mean() / diagonal
        matched = {}
        if cost.size:
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
            matched = {j: i for i, j in zip(rows, cols) if np.isfinite(cost[i, j])}
        out = []
        for j, face in enumerate(faces):
            if j in matched:
                track = self.tracks[matched[j]]
                track.velocity = (_centre(face.box) - _centre(track.box)) / max(1, frame - track.frame)
                track.box, track.landmarks, track.frame = face.box, face.landmarks, frame
            else:
                track = Track(self.next_id, face.box, face.landmarks, np.zeros(2), frame)
                self.next_id += 1
                self.tracks.append(track)
            out.append((track.id, face))
        self.last_detection = frame
        return out

    def carry(self, frame: int) -> list[tuple[int, Face]]:
        return [(t.id, t.at(frame)) for t in self.tracks if t.frame == self.last_detection]


class Smoother:
    """Per-key EMA in time: ``p_t = p_{t−1} + (1 − exp(−Δt/τ)) (x_t − p_{t−1})``; the first value and τ = 0 give x."""

    def __init__(self, tau: float):
        if tau < 0:
            raise ValueError(f"--smooth must be >= 0 seconds, got {tau}")
        self.tau = tau
        self.state: dict = {}

    def __call__(self, key, time: float, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if key in self.state and self.tau > 0:
            t, p = self.state[key]
            x = p + (1 - math.exp(-(time - t) / self.tau)) * (x - p)
        self.state[key] = (time, x)
        return x


def _columns(classes: list[str]) -> list[str]:
    return (["frame", "time_s", "face_id", "detected", "box_x0", "box_y0", "box_x1", "box_y1"]
            + [f"landmark{k}_{a}" for k in range(5) for a in "xy"]
            + [f"p_{c}" for c in classes] + [f"smoothed_{c}" for c in classes] + ["label"])


def _csv_row(record: dict, classes: list[str]) -> list:
    if record["face_id"] is None:
        return [record["frame"], record["time_s"]] + [""] * (len(_columns(classes)) - 2)
    return ([record["frame"], record["time_s"], record["face_id"], int(record["detected"]), *record["box"]]
            + [v for xy in record["landmarks"] for v in xy]
            + [record["probabilities"][c] for c in classes] + [record["smoothed"][c] for c in classes]
            + [record["label"]])


def _draw(image: np.ndarray, records: list[dict]) -> np.ndarray:
    """The frame with each face's box, id, label and its smoothed probability; padded to even sides (yuv420p)."""
    from PIL import ImageDraw

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


class VideoWriter:
    """An H.264 (libx264, else MPEG-4 part 2) mp4, opened at the first frame. ``lossless``: H.264 at CRF 0, whose
    decoded frames are exactly the frames given (in yuv420p); lossy x264 in this build does not always encode the
    same frames the same way twice, lossless it decodes to the same pixels."""

    def __init__(self, path: Path, fps: float, lossless: bool = False):
        self.path, self.fps, self.lossless, self.container = path, fps, lossless, None

    def write(self, image: np.ndarray) -> None:
        import av

        if self.container is None:
            self.container = av.open(str(self.path), "w")
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self.stream = self.container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            self.stream.height, self.stream.width = image.shape[:2]
            self.stream.pix_fmt = "yuv420p"
            if self.lossless and codec == "libx264":
                self.stream.options = {"crf": "0"}
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()


def plot_timeline(csv_path, classes: list[str], out_path, max_faces: int = 6) -> None:
    """One panel per face id (the ``max_faces`` seen in most frames, in id order): its smoothed probabilities over
    time (lines) and the raw ones (faint), broken where the face is not in the frame."""
    import pandas as pd
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # not pyplot: a notebook's figures stay as they are

    table = pd.read_csv(csv_path)
    faces = table.dropna(subset=["face_id"])
    ids = sorted(faces["face_id"].value_counts().index[:max_faces])
    fig = Figure(figsize=(9, 2.2 * max(1, len(ids))))
    axes = fig.subplots(max(1, len(ids)), 1, sharex=True, squeeze=False)
    colours = colormaps["tab10"]
    every_frame = table[["frame", "time_s"]].drop_duplicates("frame")
    for ax, face_id in zip(axes[:, 0], ids):
        rows = every_frame.merge(faces[faces["face_id"] == face_id], on=["frame", "time_s"], how="left")  # gaps: NaN
        for k, c in enumerate(classes):
            ax.plot(rows["time_s"], rows[f"p_{c}"], color=colours(k % 10), alpha=0.25, linewidth=0.8)
            ax.plot(rows["time_s"], rows[f"smoothed_{c}"], color=colours(k % 10), label=c)
        ax.set_ylabel(f"face #{int(face_id)}")
        ax.set_ylim(0, 1)
    if len(ids) == 0:
        axes[0, 0].text(0.5, 0.5, "no face in any frame", ha="center", va="center", transform=axes[0, 0].transAxes)
    else:
        axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    title = "probabilities over time (smoothed; raw faint)"
    if faces["face_id"].nunique() > len(ids):
        title += f" · {len(ids)} of {faces['face_id'].nunique()} faces"
    fig.suptitle(title, fontsize=9)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)


STAGES = ("decode", "detect", "track", "align", "classify", "write")


class StageClock:
    """Seconds spent in each of ``STAGES``: ``with clock("detect"): ...`` adds the block's wall time."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.stage = None

    def __call__(self, stage: str):
        self.stage = stage
        return self

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self.stage] += time.perf_counter() - self.start


def _timed(frames: Iterator[Frame], clock: StageClock) -> Iterator[Frame]:
    """``frames`` with the time spent producing each one counted as ``decode``."""
    frames = iter(frames)
    while True:
        with clock("decode"):
            frame = next(frames, None)
        if frame is None:
            return
        yield frame


def predict_video(predictor: Predictor, source: FrameSource, out, detector=None, every: int = 1,
                  smooth: float = 0.0, progress: bool = True) -> dict:
    """Classify every face of every frame of ``source``, detecting faces every ``every`` frames and tracking them
    in between, smoothing with time constant ``smooth`` seconds. ``detector``: anything with ``detect(image,
    frame) -> list[Face]`` (``frame`` the frame's index; default MTCNN's ``FaceDetector``). Writes to ``out``:
    ``predictions.csv`` and ``predictions.jsonl`` (one record per face per frame, ``{frame, time_s, face_id,
    detected, box, landmarks, probabilities, smoothed, label}``, and ``{frame, time_s, face_id: null}`` for a
    frame with no face), ``annotated.mp4`` and ``timeline.png``. Ctrl-C stops early and keeps what was done. → a
    summary ``{video, frames, frames_without_face, face_ids, error, out, seconds}``; ``error`` is the source's
    (frames before the damage are in the output) or ``"interrupted"``; ``seconds`` the wall time of each of
    ``STAGES`` (``write``: smoothing, the records and the annotated video; the timeline plot is not counted)."""
    import torch
    from tqdm import tqdm

    from .data.transforms import build_transforms

    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    detector = detector or FaceDetector()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, classes, size = predictor.model, predictor.classes, predictor.model.config.image_size
    transform = build_transforms(predictor.recipe, size, train=False)
    tracker, smoother, clock = Tracker(max_gap=max(30, 3 * every)), Smoother(smooth), StageClock()
    video = VideoWriter(out / "annotated.mp4", source.fps)
    frames = empty = 0
    ids: set[int] = set()
    error = None
    model.eval()
    with open(out / "predictions.csv", "w", newline="") as csv_file, open(out / "predictions.jsonl", "w") as jsonl:
        table = csv.writer(csv_file)
        table.writerow(_columns(classes))
        try:
            for n, frame in enumerate(tqdm(_timed(source, clock), total=source.frames, unit="frame",
                                           desc=source.name, disable=not progress)):
                photo = Image.fromarray(frame.image)
                detected = n % every == 0
                if detected:
                    with clock("detect"):
                        found = detector.detect(photo, frame.index)
                with clock("track"):
                    faces = tracker.update(frame.index, found) if detected else tracker.carry(frame.index)
                records = []
                if faces:
                    with clock("align"):
                        crops = torch.stack([transform(align(photo, f.landmarks, predictor.template, size))
                                             for _, f in faces])
                    with clock("classify"), torch.inference_mode():
                        probabilities = torch.softmax(model(crops), dim=1).numpy()
                with clock("write"):
                    for (face_id, face), p in zip(faces, probabilities if faces else []):
                        s = smoother(face_id, frame.time, p)
                        records.append({"frame": frame.index, "time_s": round(frame.time, 4), "face_id": face_id,
                                        "detected": detected, "box": [round(float(v), 1) for v in face.box],
                                        "landmarks": [[round(float(v), 1) for v in xy] for xy in face.landmarks],
                                        "probabilities": {c: round(float(q), 4) for c, q in zip(classes, p)},
                                        "smoothed": {c: round(float(q), 4) for c, q in zip(classes, s)},
                                        "label": classes[int(s.argmax())]})
                        ids.add(face_id)
                    if not faces:
                        records.append({"frame": frame.index, "time_s": round(frame.time, 4), "face_id": None})
                        empty += 1
                    for r in records:
                        table.writerow(_csv_row(r, classes))
                        jsonl.write(json.dumps(r) + "\n")
                    video.write(_draw(frame.image, records))
                frames += 1
        except KeyboardInterrupt:
            error = f"{source.name}: interrupted after {frames} frames; they are kept"
        finally:
            video.close()
    plot_timeline(out / "predictions.csv", classes, out / "timeline.png")
    return {"video": source.name, "frames": frames, "frames_without_face": empty, "face_ids": sorted(ids),
            "error": error or source.error, "out": str(out), "seconds": {k: round(v, 4) for k, v in
                                                                          clock.seconds.items()}}
