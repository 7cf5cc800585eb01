"""Stable face ids over video frames (``Tracker``).

Between detections a face's box corners and landmarks each move on at their own velocity between its last two
detections (constant-velocity extrapolation of every point, so a face that pans, zooms or rolls is followed to
first order; a new face stands still). At a detection frame, detections are matched
to the tracks' extrapolated positions by the Hungarian algorithm on the cost
``(1 − IoU(box, box')) + mean_k |l_k − l'_k| / diag(box)`` over the 5 landmarks, a pair with IoU below ``min_iou``
never matching; an unmatched detection starts a new id. Extrapolation is what keeps the ids through a crossing:
when two boxes overlap, each track's predicted position is still on its own side of its path.

``DetectionSchedule`` says on which frames to run the detector: every K-th frame, and sooner when tracking
cannot be trusted (``DetectionSchedule.after``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..faces import Face


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def _points(box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(7, 2): the box's two corners, then the 5 landmarks."""
    return np.concatenate([np.reshape(box, (2, 2)), landmarks])


@dataclass
class Track:
    """A face followed over frames: its id, box and landmarks at its last detection (frame ``frame``), and the
    velocity of each of their points (``_points``: 7 × 2) in pixels per frame."""

    id: int
    box: np.ndarray
    landmarks: np.ndarray
    velocity: np.ndarray
    frame: int

    def at(self, frame: int) -> Face:
        """Where the track is at ``frame``: each point moved on by its velocity × the frames since its last
        detection."""
        points = _points(self.box, self.landmarks) + self.velocity * (frame - self.frame)
        return Face(points[:2].ravel(), points[2:], 1.0)


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
                track.velocity = ((_points(face.box, face.landmarks) - _points(track.box, track.landmarks))
                                  / max(1, frame - track.frame))
                track.box, track.landmarks, track.frame = face.box, face.landmarks, frame
            else:
                track = Track(self.next_id, face.box, face.landmarks, np.zeros((7, 2)), frame)
                self.next_id += 1
                self.tracks.append(track)
            out.append((track.id, face))
        self.last_detection = frame
        return out

    def carry(self, frame: int) -> list[tuple[int, Face]]:
        return [(t.id, t.at(frame)) for t in self.tracks if t.frame == self.last_detection]


class DetectionSchedule:
    """Run the detector on frame 0, then ``every`` frames after each detection, or on the very next frame when
    that detection found no face, found fewer faces than were being tracked (a track lost), or found one whose
    probability is below ``confident`` (a blurred, turned or half-hidden face, whose landmarks will not stay
    where constant velocity puts them). So while no face is in view every frame is searched, and the first face to
    enter is found at once rather than up to ``every`` frames later; a face that is lost is searched for at once."""

    def __init__(self, every: int = 1, confident: float = 0.95):
        self.every, self.confident, self.next = every, confident, 0

    def due(self, frame: int) -> bool:
        return frame >= self.next

    def after(self, frame: int, faces: list[Face], tracked: int) -> None:
        """Record a detection at ``frame`` that found ``faces`` while ``tracked`` faces were being carried."""
        doubtful = not faces or len(faces) < tracked or min(f.probability for f in faces) < self.confident
        self.next = frame + (1 if doubtful else self.every)
