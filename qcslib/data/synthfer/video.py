"""SynthFER clips: one identity moving through expressions over time, with every frame's truth in a CSV.

A clip is a sequence of expression *episodes*, each of ``EPISODE_SECONDS`` (the last ones share what is left):
neutral, then **onset** (the AU intensities ramp up from 0), **apex** (held), **offset** (ramp down to 0), and
neutral again. The envelope is ``e(t) = s((t - t_on) / d_on)`` in the onset and ``1 - s((t - t_off) / d_off)``
in the offset, with the smoothstep ``s(u) = 3u² - 2u³``; a frame's AUs are ``e(t)`` times the episode's apex
AUs, drawn by :func:`.settings.sample_aus` for its class.

**Label rule.** A frame's label is the episode's class while ``e(t) >= 0.5`` (at least half its apex
intensity), else ``neutral``; its phase is where ``t`` falls: ``onset``, ``apex``, ``offset`` or ``neutral``.

Nuisances change smoothly over time: head rotation ``r(t) = R sin(2π t / 5 + φ)`` degrees and shift
``(S sin(2π t / 7 + φ'), S sin(2π t / 6 + φ''))`` of the image size; the lighting gradient's direction turns
once over the clip and the brightness drifts linearly between two draws; one occluder (a hand or a bar, from
:func:`.render.occluder_shapes`) crosses the face from left to right during ``OCCLUDER_SECONDS`` at a random
time. Blur, noise and the background are those of SynthFER images (the background and clutter are fixed for a
clip; the noise is new in every frame).

Every value is a function of ``(seed, clip index, frame)``: the clip's draws come from
``seeded_rng(seed, 3, clip)``, its person is SynthFER identity ``IDENTITY_BASE + clip`` of the same seed (beyond
any split's identities) and a frame's noise from ``seeded_rng(seed, 4, clip, frame)``. Frames are drawn with
SynthFER's own renderer (:func:`.render.draw_face` etc.); only the values vary.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image

from ...faces import Face
from ...video.encode import VideoWriter
from .face import Canvas, Identity, sample_identity
from .render import SUPERSAMPLE, draw_background, draw_face, draw_occluder, occluder_shapes, pose_matrix, shade
from .settings import AUS, CLASSES, SynthFERSettings, sample_aus, seeded_rng

EPISODE_SECONDS = 3.0  # one expression's neutral lead, onset, apex, offset and neutral tail
PHASES = (("neutral", 0.15), ("onset", 0.2), ("apex", 0.3), ("offset", 0.2), ("neutral", 0.15))  # fractions
OCCLUDER_SECONDS = 1.0  # how long the occluder takes to cross the face
IDENTITY_BASE = 1_000_000  # clip k shows SynthFER identity IDENTITY_BASE + k
MAX_ROTATION, MAX_SHIFT = 8.0, 0.04  # degrees, fraction of the size


@dataclass(frozen=True)
class ClipSettings:
    """One set of clips: ``seed``, frames per second, length in seconds, square frame side in pixels (even, at
    least 32), classes (7 or 8, as SynthFER); ``look``: the SynthFER settings whose AU draws, blur, noise, lighting,
    saturation and clutter the clips take (e.g. a training profile's, so that clips look like its images); its
    seed, size and classes are replaced by the clip's."""

    seed: int = 0
    fps: float = 10.0
    seconds: float = 9.0
    size: int = 112
    classes: int = 7
    look: SynthFERSettings = field(default_factory=SynthFERSettings)

    def __post_init__(self):
        if not (isinstance(self.fps, (int, float)) and 1 <= self.fps <= 120):
            raise ValueError(f"ClipSettings.fps must be a number in [1, 120], got {self.fps!r}")
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds)
                and self.seconds * self.fps >= 1):
            raise ValueError(f"ClipSettings.seconds must be finite and give at least one frame at {self.fps} fps, got "
                             f"{self.seconds!r}")
        self.synthfer  # checks size, classes and seed
        if self.size % 2:
            raise ValueError(f"ClipSettings.size must be even (the encoder's yuv420p), got {self.size}")

    @property
    def synthfer(self) -> SynthFERSettings:
        """The SynthFER settings whose identities, AU draws, blur and noise the clips use."""
        return replace(self.look, seed=self.seed, size=self.size, classes=self.classes)

    @property
    def frames(self) -> int:
        return math.floor(self.seconds * self.fps + 1e-9)


def smoothstep(u: float) -> float:
    """``3u² - 2u³`` for u clipped to [0, 1]."""
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


@dataclass(frozen=True)
class Episode:
    """One expression: its class index, phase boundaries (seconds from the clip's start) and apex AUs."""

    label: int
    bounds: tuple[float, ...]  # start, onset start, apex start, offset start, neutral start, end
    aus: dict

    def phase(self, t: float) -> tuple[str, float]:
        """``(phase, envelope e(t))`` at time ``t`` inside the episode."""
        start, onset, apex, offset, tail, _ = self.bounds
        if t < onset:
            return "neutral", 0.0
        if t < apex:
            return "onset", smoothstep((t - onset) / (apex - onset))
        if t < offset:
            return "apex", 1.0
        if t < tail:
            return "offset", 1 - smoothstep((t - offset) / (tail - offset))
        return "neutral", 0.0


def episodes(settings: ClipSettings, rng: np.random.Generator, expressiveness: float) -> list[Episode]:
    """``max(1, round(seconds / EPISODE_SECONDS))`` episodes splitting the clip evenly, classes drawn without
    neutral (no class twice in a row)."""
    count = max(1, round(settings.seconds / EPISODE_SECONDS))
    length = settings.seconds / count
    labels, out = [], []
    for k in range(count):
        choices = [c for c in range(1, settings.classes) if not labels or c != labels[-1]]
        labels.append(int(rng.choice(choices)))
        edges = np.cumsum([0.0] + [fraction for _, fraction in PHASES]) * length + k * length  # (6,)
        aus, _ = sample_aus(settings.synthfer, labels[-1], expressiveness, rng)
        out.append(Episode(labels[-1], tuple(float(e) for e in edges), aus))
    return out


def render_clip(settings: ClipSettings, clip: int) -> Iterator[tuple[np.ndarray, dict]]:
    """The clip's frames in order: ``(H × W × 3 uint8 RGB, truth row)``, the row ``{frame, time_s, label, phase,
    au01 … au26, rotation, occluded}`` (AUs: the larger side, rounded to 4 places; ``occluded``: the fraction of
    the face's AU areas the occluder covers)."""
    synth = settings.synthfer
    person = sample_identity(synth, IDENTITY_BASE + clip)
    rng = seeded_rng(settings.seed, 3, clip)
    plan = episodes(settings, rng, person.expressiveness)
    canvas_size = settings.size * SUPERSAMPLE  # pixels
    phases = rng.uniform(0, 2 * math.pi, 3)  # (3,) radians: rotation, shift x, shift y
    light_start, brightness = rng.uniform(0, 2 * math.pi), rng.uniform(0.85, 1.15, 2)  # radians, (2,) start/end
    gradient = rng.uniform(0, synth.lighting)
    blur = rng.uniform(0, synth.blur) * settings.size / 112  # pixels
    sigma = rng.uniform(0, synth.noise) * 255  # grey levels
    gaze, smile_open = rng.uniform(-1, 1, 2), rng.random()
    _, shapes = occluder_shapes(person, rng)
    cross_start = rng.uniform(0, max(0.0, settings.seconds - OCCLUDER_SECONDS))  # seconds
    background = Image.new("RGB", (canvas_size, canvas_size))
    draw_background(background, int(rng.integers(settings.classes)), settings.classes, synth.clutter, rng)

    for frame in range(settings.frames):
        t = frame / settings.fps  # seconds
        episode = next(e for e in plan if t < e.bounds[-1] or e is plan[-1])
        phase, envelope = episode.phase(t)
        aus = {au: (envelope * left, envelope * right) for au, (left, right) in episode.aus.items()}
        rotation = MAX_ROTATION * math.sin(2 * math.pi * t / 5 + phases[0])  # degrees
        shift = MAX_SHIFT * canvas_size * np.array([math.sin(2 * math.pi * t / 7 + phases[1]),
                                                    math.sin(2 * math.pi * t / 6 + phases[2])])  # (2,) pixels
        matrix = pose_matrix(canvas_size, math.radians(rotation), 0.32 * canvas_size, shift)
        image, mask = background.copy(), Image.new("L", (settings.size, settings.size), 0)
        draw_face(Canvas(image, mask, matrix, mask_scale=SUPERSAMPLE), person, aus, gaze, smile_open,
                  synth.mask_threshold)
        crossing = (t - cross_start) / OCCLUDER_SECONDS  # 0 → 1 while it crosses
        occluded = 0.0
        if 0 <= crossing <= 1:
            offset = np.array([-3.0 + 6.0 * crossing, 0.0])  # face units: from off the left to off the right
            occluded = draw_occluder(image, mask, matrix, [(points + offset, colour) for points, colour in shapes])
        progress = t / settings.seconds
        image = shade(image.reduce(SUPERSAMPLE), blur, light_start + 2 * math.pi * progress, gradient,
                      float(brightness[0] + (brightness[1] - brightness[0]) * progress), sigma,
                      seeded_rng(settings.seed, 4, clip, frame), synth.saturation)
        row = {"frame": frame, "time_s": round(t, 4),
               "label": CLASSES[episode.label] if envelope >= 0.5 else "neutral", "phase": phase}
        row.update({f"au{au:02d}": round(max(aus[au]), 4) for au in AUS})
        row.update(rotation=round(rotation, 2), occluded=round(occluded, 4))
        row.update(face_position(person, matrix))
        yield np.asarray(image), row


def face_position(person: Identity, matrix: np.ndarray) -> dict:
    """Where the face is in the output frame (pixels, rounded to 0.1): its box, the posed corners
    ``(±face_w, ±face_h)`` face units bounded, and its 5 landmarks in the order of ``faces.TEMPLATES``: the eye
    centres ``(±eye_dx, eye_y)``, the nose ``(0, nose_y)`` and the resting mouth corners ``(±mouth_w, mouth_y)``.
    ``matrix`` maps face units to canvas pixels, ``SUPERSAMPLE`` times the output's."""
    corners = np.array([[sx * person.face_w, sy * person.face_h] for sx in (-1, 1) for sy in (-1, 1)])  # (4, 2)
    points = np.array([[-person.eye_dx, person.eye_y], [person.eye_dx, person.eye_y], [0.0, person.nose_y],
                       [-person.mouth_w, person.mouth_y], [person.mouth_w, person.mouth_y]])  # (5, 2) face units
    posed = (np.vstack([corners, points]) @ matrix[:, :2].T + matrix[:, 2]) / SUPERSAMPLE  # (9, 2) output pixels
    box = np.concatenate([posed[:4].min(0), posed[:4].max(0)])  # (4,)
    out = {name: round(float(v), 1) for name, v in zip(BOX_COLUMNS, box)}
    out.update({name: round(float(v), 1) for name, v in zip(LANDMARK_COLUMNS, posed[4:].ravel())})
    return out


BOX_COLUMNS = ["box_x0", "box_y0", "box_x1", "box_y1"]  # as in predict_video's predictions.csv
LANDMARK_COLUMNS = [f"landmark{k}_{a}" for k in range(5) for a in "xy"]


def truth_columns() -> list[str]:
    return (["frame", "time_s", "label", "phase"] + [f"au{au:02d}" for au in AUS] + ["rotation", "occluded"]
            + BOX_COLUMNS + LANDMARK_COLUMNS)


class ClipFaces:
    """A face detector that knows the answer: ``detect(image, frame)`` → the clip's one face at ``frame``, box and
    landmarks from its truth CSV (``face_position``), probability 1. For measuring the temporal model on clips
    without a detector's misses (MTCNN, trained on photos, finds few of SynthFER's drawn faces)."""

    def __init__(self, truth):
        table = pd.read_csv(truth)
        if missing := [c for c in BOX_COLUMNS + LANDMARK_COLUMNS + ["frame"] if c not in table.columns]:
            raise ValueError(f"{truth}: a clip truth CSV without the face position columns {missing[:3]}…; "
                             f"render the clip again with this version")
        self.boxes = dict(zip(table["frame"], table[BOX_COLUMNS].to_numpy(np.float64)))
        self.landmarks = dict(zip(table["frame"], table[LANDMARK_COLUMNS].to_numpy(np.float64).reshape(-1, 5, 2)))

    def detect(self, image, frame: int | None = None):
        if frame not in self.boxes:
            raise ValueError(f"ClipFaces: frame {frame} is not in the clip's truth")
        return [Face(self.boxes[frame], self.landmarks[frame], 1.0)]


def write_clips(out, settings: ClipSettings, clips: int = 1) -> list[dict]:
    """Write ``clipNNN.mp4`` (lossless H.264 via PyAV, so that every run decodes the same pixels; else MPEG-4) and ``clipNNN.csv`` (:func:`render_clip`'s rows) for
    each of ``clips`` clips under ``out``; → ``[{video, truth, frames}]``. Frames stream to the encoder one at a
    time."""
    if clips < 1:
        raise ValueError(f"--clips must be >= 1, got {clips}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for clip in range(clips):
        video, truth = out / f"clip{clip:03d}.mp4", out / f"clip{clip:03d}.csv"
        writer = VideoWriter(video, settings.fps, lossless=True)
        with open(truth, "w", newline="") as f:
            table = csv.DictWriter(f, fieldnames=truth_columns())
            table.writeheader()
            try:
                for image, row in render_clip(settings, clip):
                    writer.write(image)
                    table.writerow(row)
            finally:
                writer.close()
        written.append({"video": str(video), "truth": str(truth), "frames": settings.frames})
    return written
