"""Stable face ids over video frames (``Tracker``).

Between detections a face's box and landmarks move on at the velocity of its box centre between its last two
detections (constant-velocity extrapolation; a new face stands still). At a detection frame, detections are matched
to the tracks' extrapolated positions by the Hungarian algorithm on the cost
``(1 − IoU(box, box')) + mean_k |l_k − l'_k| / diag(box)`` over the 5 landmarks, a pair with IoU below ``min_iou``
never matching; an unmatched detection starts a new id. Extrapolation is what keeps the ids through a crossing:
when two boxes overlap, each track's predicted position is still on its own side of its path.
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
