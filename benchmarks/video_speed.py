"""Video prediction end to end at 640 × 480 with the real detector: frames per second, agreement of the default
settings with detecting every frame, and peak memory over a 10-minute video.

    .venv/bin/python benchmarks/video_speed.py [--checkpoint STUDENT.pt] [--seconds 20] [--long-minutes 10]

The clip: 640 × 480 at 30 fps, H.264: real photos in turn (``SEGMENTS``: the astronaut, a cup, Grace Hopper, the
cameraman, the cup; ``qcslib.data.photo_clip.real_photos``), each face (``FACES``: centre and width in its photo,
found by MTCNN) 150 pixels wide and moving as a head before a webcam does: panning ±80 pixels (period 6 s),
zooming ±15 % (8 s) and rolling ±8° (5 s), over a grey backdrop. The cup's frames have no face: a face leaves and
a new one enters.

1. **Frames per second.** ``predict_video`` as ``python -m qcslib predict`` runs it (decode, MTCNN, track, align,
   classify, smooth, write the CSV, JSONL and annotated video, plot the timeline): wall time after a 1-second
   warm-up run, model loading excluded. Settings: the defaults (``--every EVERY --detect-side DETECT_SIDE``), the
   reference (``--every 1 --detect-side 0``: MTCNN on every full frame), settings in between (``SETTINGS``), and
   ``--smooth 0.1 --hysteresis 0.3`` (what notebook 09 chose on its validation clips) on the defaults. Each row's
   seconds per stage come from the summary ``predict_video`` returns.
2. **Agreement** with the reference, smoothed the same way: the share of frames with the same label (a frame
   with a face in one and none in the other counts as a disagreement), the share with a face in both or neither,
   and the mean landmark error (the crops' difference, whatever the model) in inter-ocular distances. With a
   SynthFER-trained model on real faces the labels are fragile (out of its domain), so the reference's own label
   changes are listed: they are the floor that label agreement is read against.
3. **Memory.** One subprocess per clip length (10 s and ``--long-minutes``), the defaults with the real detector:
   the highest resident set size (VmRSS, sampled every 50 ms) while the frames stream and while the timeline is
   plotted at the end, against the RSS after loading the model, and the long clip's frames per second (its
   steady state).

The student: ``--checkpoint`` (a trained one, e.g. notebook 10's ``resnet10t-kd`` ``best.pt``), else an untrained
``DEFAULT_STUDENT`` at the cpu profile's image size. Torch uses all cores (``torch.get_num_threads()``, on the
machine line). Writes reports/bench/video_speed.json.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from machine import machine_line, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import save_checkpoint
from qcslib.analysis.temporal import resmoothed
from qcslib.data.photo_clip import real_photos
from qcslib.faces import FaceDetector, load_predictor
from qcslib.models.student import DEFAULT_STUDENT, StudentConfig, StudentNet
from qcslib.train import load_profile
from qcslib.video import DETECT_SIDE, EVERY, VideoFile, predict_video
from qcslib.video import predict as video_predict
from qcslib.video.encode import VideoWriter

CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
WIDTH, HEIGHT, FPS = 640, 480, 30
# the photos in turn (name, share of the clip): three people, and a cup between them (no face)
SEGMENTS = [("astronaut", 7), ("coffee", 1), ("grace_hopper", 7), ("cameraman", 4), ("coffee", 1)]
FACES = {"astronaut": ((225, 123), 87), "grace_hopper": ((268, 235), 182), "cameraman": ((242, 166), 55)}
FACE_WIDTH = 150  # pixels: each face's width in the frame (MTCNN's box), a person about 60 cm from a webcam
SETTINGS = [  # (name, every, detect side (0: full), smooth τ s, hysteresis margin); the reference first
    ("reference", 1, 0, 0.0, 0.0),
    ("every 1, side 480", 1, 480, 0.0, 0.0),
    ("every 1, side 320", 1, 320, 0.0, 0.0),
    ("every 5, full side", 5, 0, 0.0, 0.0),
    ("every 5, side 480", 5, 480, 0.0, 0.0),
    ("every 3, side 320", 3, 320, 0.0, 0.0),
    ("defaults", EVERY, DETECT_SIDE, 0.0, 0.0),
    ("defaults + 09's smoother", EVERY, DETECT_SIDE, 0.1, 0.3),
]


def head_frames(seconds: float):
    """640 × 480 frames of ``SEGMENTS``' photos in turn, stretched to ``seconds`` in all, each face moving like a
    head before a webcam (the module docstring)."""
    photos, total = real_photos(), sum(s for _, s in SEGMENTS)
    frames = [round(seconds * FPS * s / total) for _, s in SEGMENTS]
    for (name, _), n in zip(SEGMENTS, frames):
        photo = Image.fromarray(photos[name])
        face, width = FACES.get(name, (np.array(photo.size) / 2, 0.6 * min(photo.size)))
        for i in range(n):
            t = i / FPS
            scale = FACE_WIDTH / width * (1 + 0.15 * np.sin(2 * np.pi * t / 8))
            angle = np.radians(8 * np.sin(2 * np.pi * t / 5))
            centre = np.array([WIDTH / 2 + 80 * np.sin(2 * np.pi * t / 6), HEIGHT / 2 - 20])
            # frame pixel → photo pixel: rotate and scale about the face, then put the face at ``centre``
            c, s = np.cos(angle) / scale, np.sin(angle) / scale
            shift = np.asarray(face) - np.array([[c, -s], [s, c]]) @ centre
            frame = photo.transform((WIDTH, HEIGHT), Image.Transform.AFFINE, (c, -s, shift[0], s, c, shift[1]),
                                    resample=Image.Resampling.BILINEAR, fillcolor=(110, 110, 110))
            yield np.asarray(frame)


def write_clip(path: Path, seconds: float) -> Path:
    writer = VideoWriter(path, FPS, preset="veryfast")
    for frame in head_frames(seconds):
        writer.write(frame)
    writer.close()
    return path


def student_checkpoint(path, folder) -> Path:
    if path:
        return Path(path)
    torch.manual_seed(0)
    out = Path(folder) / "student.pt"
    size = load_profile("cpu").model.image_size
    save_checkpoint(out, StudentNet(StudentConfig(DEFAULT_STUDENT, len(CLASSES), size)), classes=CLASSES)
    return out


class Counted:
    """A detector that counts its calls."""

    def __init__(self, detector):
        self.detector, self.calls = detector, 0

    def detect(self, image, frame=None):
        self.calls += 1
        return self.detector.detect(image, frame)


def run(predictor, clip, out, every, side, smooth=0.0, hysteresis=0.0, end=None) -> tuple[dict, float]:
    """→ (predict_video's summary with ``detector_calls``, wall seconds)."""
    detector = Counted(FaceDetector(max_side=side or None))
    start = time.perf_counter()
    summary = predict_video(predictor, VideoFile(clip, end=end), out, detector, every=every, smooth=smooth,
                            hysteresis=hysteresis, progress=False)
    return summary | {"detector_calls": detector.calls}, time.perf_counter() - start


LANDMARKS = [f"landmark{k}_{a}" for k in range(5) for a in "xy"]


def first_faces(table: pd.DataFrame) -> pd.DataFrame:
    """One row per frame: its first face's (NaN for a frame without one)."""
    return table.groupby("frame").first()


def agreement(found: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """How ``found`` (``first_faces``) matches the reference's: the share of frames with the same label (a frame
    with a face in one and none in the other disagrees), with a face in both or in neither, and the mean landmark
    error where both have a face, in inter-ocular distances of the reference."""
    found = found.reindex(reference.index)
    same = (found["label"] == reference["label"]) | (found["label"].isna() & reference["label"].isna())
    both = found["label"].notna() & reference["label"].notna()
    ours, theirs = (t.loc[both, LANDMARKS].to_numpy(float).reshape(-1, 5, 2) for t in (found, reference))
    eyes = np.linalg.norm(theirs[:, 0] - theirs[:, 1], axis=1)
    error = (np.linalg.norm(ours - theirs, axis=2).mean(axis=1) / eyes).mean() if len(eyes) else float("nan")
    return {"agreement": round(float(same.mean()), 4),
            "face_agreement": round(float((found["label"].isna() == reference["label"].isna()).mean()), 4),
            "landmark_error": round(float(error), 4)}


def speed(predictor, clip, folder) -> list[dict]:
    """One run of each of ``SETTINGS`` on ``clip``; each compared with the reference smoothed as it is
    (``analysis.temporal.resmoothed`` gives what ``predict_video`` would with that smoother)."""
    run(predictor, clip, Path(folder) / "warm", EVERY, DETECT_SIDE, end=1.0)
    rows, reference = [], None
    for name, every, side, smooth, hysteresis in SETTINGS:
        out = Path(folder) / name.replace(" ", "_").replace(",", "").replace("'", "")
        summary, seconds = run(predictor, clip, out, every, side, smooth, hysteresis)
        table = pd.read_csv(out / "predictions.csv")
        reference = reference if reference is not None else out / "predictions.csv"
        found = first_faces(table)
        frames = summary["frames"]
        rows.append(dict(setting=name, every=every, detect_side=side or "full", smooth=smooth, hysteresis=hysteresis,
                         frames=frames, frames_without_face=summary["frames_without_face"],
                         detector_calls=summary["detector_calls"], frames_per_s=round(frames / seconds, 1),
                         **agreement(found, first_faces(resmoothed(reference, smooth, hysteresis))),
                         label_changes=int((found["label"].to_numpy()[1:] != found["label"].to_numpy()[:-1]).sum()),
                         ms_per_frame={k: round(1000 * v / frames, 2) for k, v in summary["seconds"].items()}))
        print(rows[-1], flush=True)
    return rows


def rss_mb() -> float:
    """The process's resident set size now, in MiB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def memory_case(clip, checkpoint) -> dict:
    """Run in a subprocess: the defaults on ``clip`` → ``{rss_before_mb, peak_rss_mb, peak_plotting_mb, frames,
    frames_per_s}``: the peak while the frames stream, and while the timeline is plotted at the end (from the CSV
    read back, so it grows with the video: ``predict_video``'s docstring)."""
    predictor = load_predictor(checkpoint)
    before, samples, done = rss_mb(), {"frames": [rss_mb()], "plotting": []}, threading.Event()
    stage = ["frames"]

    def sample():
        while not done.wait(0.05):
            samples[stage[0]].append(rss_mb())

    def plot_timeline(*args, **kwargs):
        stage[0] = "plotting"
        return plotting(*args, **kwargs)

    plotting, video_predict.plot_timeline = video_predict.plot_timeline, plot_timeline
    sampler = threading.Thread(target=sample)
    sampler.start()
    summary, seconds = run(predictor, clip, Path(clip).with_suffix(""), EVERY, DETECT_SIDE)
    done.set()
    sampler.join()
    return {"rss_before_mb": round(before, 1), "peak_rss_mb": round(max(samples["frames"]), 1),
            "peak_plotting_mb": round(max(samples["plotting"] + [rss_mb()]), 1),
            "frames": summary["frames"], "frames_per_s": round(summary["frames"] / seconds, 1)}


def memory(seconds_list, checkpoint, folder) -> list[dict]:
    rows = []
    for seconds in seconds_list:
        clip = write_clip(Path(folder) / f"head_{seconds:g}s.mp4", seconds)
        out = subprocess.run([sys.executable, __file__, "--memory-case", str(clip), "--checkpoint", str(checkpoint)],
                             check=True, capture_output=True, text=True)
        rows.append(dict(seconds=seconds, **json.loads(out.stdout.strip().splitlines()[-1])))
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="the student to run (default: an untrained DEFAULT_STUDENT)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the speed clip (default 20)")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the long memory clip")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        print(json.dumps(memory_case(args.memory_case, args.checkpoint)))
        return
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = student_checkpoint(args.checkpoint, folder)
        predictor = load_predictor(checkpoint)
        model = predictor.model.config
        clip = write_clip(Path(folder) / "head.mp4", args.seconds)
        rows = speed(predictor, clip, folder)
        memory_rows = memory([10.0, 60 * args.long_minutes], checkpoint, folder)
    student = (f"{getattr(model, 'timm_name', 'QCS')} at {model.image_size} px, "
               + (f"trained ({args.checkpoint})" if args.checkpoint else "untrained"))
    machine = machine_line()
    print(f"\n{machine}\n\nstudent: {student}; clip: {args.seconds:g} s, {WIDTH} × {HEIGHT}, {FPS} fps\n\n"
          "| setting | --every | --detect-side | detector calls | frames/s | same label as reference | same face found |"
          " landmark error | label changes | ms/frame: decode / detect / align / classify / write |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ms = r["ms_per_frame"]
        print(f"| {r['setting']} | {r['every']} | {r['detect_side']} | {r['detector_calls']} of {r['frames']} | "
              f"{r['frames_per_s']:.1f} | {100 * r['agreement']:.1f} % | {100 * r['face_agreement']:.1f} % | "
              f"{r['landmark_error']:.3f} | {r['label_changes']} | "
              f"{ms['decode']:.1f} / {ms['detect']:.1f} / {ms['align']:.1f} / {ms['classify']:.1f} / "
              f"{ms['write']:.1f} |")
    print("\n| clip | frames | RSS after loading MiB | peak RSS while frames stream MiB | peak RSS while plotting "
          "MiB | frames/s |\n|---|---|---|---|---|---|")
    for r in memory_rows:
        print(f"| {r['seconds']:g} s | {r['frames']} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_plotting_mb']:.0f} | {r['frames_per_s']:.1f} |")
    write_json("video_speed", {"machine": machine, "student": student, "speed": rows, "memory": memory_rows})


if __name__ == "__main__":
    main()
