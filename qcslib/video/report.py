"""What ``predict_video`` reports: the columns of ``predictions.csv`` (one row per face and frame), the timeline plot
drawn from it, and the time spent in each stage (``STAGES``, ``StageClock``)."""
from __future__ import annotations

import time

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure  # not pyplot: a notebook's figures stay as they are


def csv_columns(classes: list[str]) -> list[str]:
    """The header of ``predictions.csv``: frame, time, face id, box, 5 landmarks, raw and smoothed probabilities, label."""
    return (["frame", "time_s", "face_id", "detected", "box_x0", "box_y0", "box_x1", "box_y1"]
            + [f"landmark{k}_{a}" for k in range(5) for a in "xy"]
            + [f"p_{c}" for c in classes] + [f"smoothed_{c}" for c in classes] + ["label"])


def csv_row(record: dict, classes: list[str]) -> list:
    """A record's row under ``csv_columns``; a frame without a face leaves all but its frame and time empty."""
    if record["face_id"] is None:
        return [record["frame"], record["time_s"]] + [""] * (len(csv_columns(classes)) - 2)
    return ([record["frame"], record["time_s"], record["face_id"], int(record["detected"]), *record["box"]]
            + [v for xy in record["landmarks"] for v in xy]
            + [record["probabilities"][c] for c in classes] + [record["smoothed"][c] for c in classes]
            + [record["label"]])


def plot_timeline(csv_path, classes: list[str], out_path, max_faces: int = 6) -> None:
    """One panel per face id (the ``max_faces`` seen in most frames, in id order): its smoothed probabilities over
    time (lines) and the raw ones (faint), broken where the face is not in the frame."""
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
