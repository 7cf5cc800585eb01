"""Classifying every face of every frame of a video or camera stream: frames decoded one at a time, faces detected
every K frames and tracked in between, each face's probabilities smoothed over time, and per-frame records and an
annotated video written as the frames go by: memory does not grow with the video's length, except for the
timeline plot, drawn at the end from the CSV read back (one row per face and frame). A record's ``label`` is the
argmax of the smoothed probabilities.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image
from tqdm import tqdm

from ..data.transforms import build_transforms
from ..faces import FaceDetector, Predictor, align, classify
from .decode import Frame, FrameSource
from .draw import draw_records
from .encode import VideoWriter
from .report import StageClock, csv_columns, csv_row, plot_timeline
from .smooth import Hysteresis, Smoother, check_margin, check_tau
from .track import DetectionSchedule, Tracker

VIDEO_OUTPUTS = ("predictions.csv", "predictions.jsonl", "annotated.mp4", "timeline.png")  # what predict_video writes
EVERY = 5  # default: detect every 5th frame (sooner when tracking is in doubt: DetectionSchedule)
DETECT_SIDE = 320  # default: detect on frames shrunk to a longer side of 320 pixels (FaceDetector's max_side)

def _timed(frames: Iterator[Frame], clock: StageClock) -> Iterator[Frame]:
    """``frames`` with the time spent producing each one counted as ``decode``."""
    frames = iter(frames)
    while True:
        with clock("decode"):
            frame = next(frames, None)
        if frame is None:
            return
        yield frame


def check_options(every: int, smooth: float, hysteresis: float = 0.0) -> None:
    """Raise ValueError unless ``every`` >= 1, ``smooth`` is a finite number >= 0 and ``hysteresis`` a margin in
    [0, 1) (``predict_video``'s options)."""
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    check_tau(smooth)
    check_margin(hysteresis)


def predict_video(predictor: Predictor, source: FrameSource, out, detector=None, every: int = EVERY,
                  smooth: float = 0.0, progress: bool = True, hysteresis: float = 0.0) -> dict:
    """Classify every face of every frame of ``source``, detecting faces every ``every`` frames (or sooner:
    ``DetectionSchedule``) and tracking them in between, smoothing with time constant ``smooth`` seconds, then
    labelling with ``hysteresis``'s margin (``video.smooth``). ``detector``: anything with ``detect(image,
    frame) -> list[Face]`` (``frame`` the frame's index; default MTCNN's ``FaceDetector`` on frames shrunk to
    ``DETECT_SIDE``). Writes to ``out``:
    ``predictions.csv`` and ``predictions.jsonl`` (one record per face per frame, ``{frame, time_s, face_id,
    detected, box, landmarks, probabilities, smoothed, label}``, and ``{frame, time_s, face_id: null}`` for a
    frame with no face), ``annotated.mp4`` and ``timeline.png``. Ctrl-C stops early and keeps what was done. → a
    summary ``{video, frames, frames_without_face, face_ids, error, out, seconds}``; ``error`` is the source's
    (frames before the damage are in the output) or ``"interrupted"``; ``seconds`` the wall time of each of
    ``STAGES`` (``write``: smoothing, the records and the annotated video; the timeline plot is not counted)."""
    check_options(every, smooth, hysteresis)
    tracker, smoother, clock = Tracker(max_gap=max(30, 3 * every)), Smoother(smooth), StageClock()
    labeller, schedule = Hysteresis(hysteresis), DetectionSchedule(every)
    detector = detector or FaceDetector(max_side=DETECT_SIDE)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, classes, size = predictor.model, predictor.classes, predictor.model.config.image_size
    transform = build_transforms(predictor.recipe, size, train=False)
    video = VideoWriter(out / "annotated.mp4", source.fps, preset="veryfast")
    frames = empty = 0
    ids: set[int] = set()
    error = None
    model.eval()
    with open(out / "predictions.csv", "w", newline="") as csv_file, open(out / "predictions.jsonl", "w") as jsonl:
        table = csv.writer(csv_file)
        table.writerow(csv_columns(classes))
        try:
            for n, frame in enumerate(tqdm(_timed(source, clock), total=source.frames, unit="frame",
                                           desc=source.name, disable=not progress)):
                photo = Image.fromarray(frame.image)
                detected = schedule.due(n)
                if detected:
                    with clock("detect"):
                        found = detector.detect(photo, frame.index)
                with clock("track"):
                    if detected:
                        schedule.after(n, found, len(tracker.carry(frame.index)))
                    faces = tracker.update(frame.index, found) if detected else tracker.carry(frame.index)
                records = []
                if faces:
                    with clock("align"):
                        crops = torch.stack([transform(align(photo, f.landmarks, predictor.template, size))
                                             for _, f in faces])
                    with clock("classify"):
                        probabilities = classify(model, crops)
                with clock("write"):
                    for (face_id, face), p in zip(faces, probabilities if faces else []):
                        s = smoother(face_id, frame.time, p)
                        records.append({"frame": frame.index, "time_s": round(frame.time, 4), "face_id": face_id,
                                        "detected": detected, "box": [round(float(v), 1) for v in face.box],
                                        "landmarks": [[round(float(v), 1) for v in xy] for xy in face.landmarks],
                                        "probabilities": {c: round(float(q), 4) for c, q in zip(classes, p)},
                                        "smoothed": {c: round(float(q), 4) for c, q in zip(classes, s)},
                                        "label": classes[labeller(face_id, s)]})
                        ids.add(face_id)
                    if not faces:
                        records.append({"frame": frame.index, "time_s": round(frame.time, 4), "face_id": None})
                        empty += 1
                    for r in records:
                        table.writerow(csv_row(r, classes))
                        jsonl.write(json.dumps(r) + "\n")
                    video.write(draw_records(frame.image, records))
                frames += 1
        except KeyboardInterrupt:
            error = f"{source.name}: interrupted after {frames} frames; they are kept"
        finally:
            video.close()
    plot_timeline(out / "predictions.csv", classes, out / "timeline.png")
    return {"video": source.name, "frames": frames, "frames_without_face": empty, "face_ids": sorted(ids),
            "error": error or source.error, "out": str(out), "seconds": {k: round(v, 4) for k, v in
                                                                          clock.seconds.items()}}
