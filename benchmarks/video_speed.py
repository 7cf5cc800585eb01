"""Video pipeline speed (frames/s of ``predict_video``: decode, detect, track, align, classify, write) and its peak
memory on a long clip against a short one.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_speed.py [--sizes tiny paper] [--every 1 5]
        [--long-seconds 600] [--short-seconds 10]

1. **MTCNN on SynthFER clips.** The share of frames of a 160-pixel ``synthfer-video`` clip in which MTCNN
   finds a face. When it is below half, the speed clip is the astronaut pan instead (below), and the table says so.
2. **Frames per second.** Real MTCNN on the CPU, an untrained QCSNet of each ``--sizes`` (saved and loaded as a
   checkpoint, like ``predict``), each ``--every`` K, on a 50-frame 256 × 256 clip panning over scikit-image's
   astronaut (or the SynthFER clip): the wall time of ``predict_video`` after a 5-frame warm-up run, model loading
   excluded.
3. **Peak memory.** One subprocess per clip length (10 s and 10 min at 64 × 64, 5 fps, a noisy frame): the tiny
   model with a fake detector (one fixed face in every frame): the highest resident set size (VmRSS, sampled
   every 10 ms) while ``predict_video`` runs, against the RSS after loading the model. (``ru_maxrss`` would
   hide it under the peak of loading.) Streaming means the two clips' peaks are about equal.

Writes reports/bench/video_speed.json.
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
import torch
from PIL import Image
from skimage import data

from machine import machine_line, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import QCSConfig, QCSNet, save_checkpoint
from qcslib.data.synthfer.video import ClipSettings, render_clip, write_clips
from qcslib.faces import TEMPLATES, Face, FaceDetector, load_predictor
from qcslib.video import VideoFile, predict_video
from qcslib.video.encode import VideoWriter

CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]


def write_frames(path, frames, fps):
    writer = VideoWriter(Path(path), fps)
    for image in frames:
        writer.write(image)
    writer.close()
    return path


def astronaut_pan(n=50, side=256):
    """``n`` frames of a ``side``-pixel window moving right and down over scikit-image's 512-pixel astronaut."""
    photo = data.astronaut()  # (512, 512, 3) uint8
    for i in range(n):
        x, y = 60 + 2 * i, i
        yield np.ascontiguousarray(photo[y: y + side, x: x + side])


def checkpoint(size, folder):
    torch.manual_seed(0)
    path = Path(folder) / f"{size}.pt"
    save_checkpoint(path, QCSNet(QCSConfig.sized(size)), classes=CLASSES)
    return path


def synthfer_detection_rate(folder):
    """The share of a 6-second, 4 fps, 160-pixel SynthFER clip's frames where MTCNN finds a face."""
    detector = FaceDetector()
    found = [bool(detector.detect(Image.fromarray(image)))
             for image, _ in render_clip(ClipSettings(seed=0, fps=4, seconds=6, size=160), 0)]
    return float(np.mean(found)), len(found)


def speed(clip, sizes, everies, folder):
    detector, rows = FaceDetector(), []
    for size in sizes:
        predictor = load_predictor(checkpoint(size, folder))
        predict_video(predictor, VideoFile(clip, end=0.5), Path(folder) / "warm", detector, progress=False)
        for every in everies:
            start = time.perf_counter()
            summary = predict_video(predictor, VideoFile(clip), Path(folder) / f"{size}_{every}", detector,
                                    every=every, smooth=0.5, progress=False)
            seconds = time.perf_counter() - start
            rows.append(dict(size=size, every=every, frames=summary["frames"],
                             frames_without_face=summary["frames_without_face"],
                             frames_per_s=round(summary["frames"] / seconds, 2)))
            print(rows[-1], flush=True)
    return rows


class FixedFace:
    """A fake detector: one face, the same box and SynthFER-template landmarks, in every frame."""

    def detect(self, image, frame=None):
        box = np.array([8.0, 8.0, 56.0, 56.0])
        return [Face(box, box[:2] + TEMPLATES["synthfer"] * 48, 0.99)]


def rss_mb() -> float:
    """The process's resident set size now, in MiB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def memory_case(clip, checkpoint_path):
    """Run in a subprocess: → ``{rss_before_mb, peak_rss_mb, frames}``: the RSS after loading the model, and the
    highest RSS sampled every 10 ms while predict_video runs on ``clip``."""
    predictor = load_predictor(checkpoint_path)
    before, peak, done = rss_mb(), [rss_mb()], threading.Event()

    def sample():
        while not done.wait(0.01):
            peak.append(rss_mb())

    sampler = threading.Thread(target=sample)
    sampler.start()
    summary = predict_video(predictor, VideoFile(clip), Path(clip).with_suffix(""), FixedFace(), progress=False)
    done.set()
    sampler.join()
    return {"rss_before_mb": round(before, 1), "peak_rss_mb": round(max(peak + [rss_mb()]), 1),
            "frames": summary["frames"]}


def memory(seconds_list, folder, fps=5):
    rows, weights = [], checkpoint("tiny", folder)
    rng = np.random.default_rng(0)
    for seconds in seconds_list:
        clip = Path(folder) / f"noise_{seconds:g}s.mp4"
        write_frames(clip, (rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(round(seconds * fps))),
                     fps)
        out = subprocess.run([sys.executable, __file__, "--memory-case", str(clip), "--checkpoint", str(weights)],
                             check=True, capture_output=True, text=True)
        rows.append(dict(seconds=seconds, **json.loads(out.stdout.strip().splitlines()[-1])))
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--every", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--short-seconds", type=float, default=10.0)
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        print(json.dumps(memory_case(args.memory_case, args.checkpoint)))
        return
    with tempfile.TemporaryDirectory() as folder:
        rate, checked = synthfer_detection_rate(folder)
        print(f"MTCNN finds a face in {rate:.0%} of {checked} SynthFER clip frames", flush=True)
        if rate >= 0.5:
            clip_name = "SynthFER clip (5 s, 10 fps, 160 px)"
            clip = write_clips(folder, ClipSettings(seed=0, fps=10, seconds=5, size=160))[0]["video"]
        else:
            clip_name = "astronaut pan (50 frames, 256 px)"
            clip = write_frames(Path(folder) / "astronaut.mp4", astronaut_pan(), 10)
        rows = speed(clip, args.sizes, args.every, folder)
        memory_rows = memory([args.short_seconds, args.long_seconds], folder)
    machine = machine_line()
    print(f"\n{machine}\n\nMTCNN found a face in {rate:.0%} of {checked} frames of a SynthFER clip; speed clip: "
          f"{clip_name}\n\n| model | --every | frames | frames without face | frames/s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['every']} | {r['frames']} | {r['frames_without_face']} | {r['frames_per_s']:.1f} |")
    print("\n| clip | frames | RSS before MiB | peak RSS MiB |\n|---|---|---|---|")
    for r in memory_rows:
        print(f"| {r['seconds']:g} s | {r['frames']} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    write_json("video_speed", {"machine": machine, "synthfer_detection_rate": rate, "speed_clip": clip_name,
                               "speed": rows, "memory": memory_rows})


if __name__ == "__main__":
    main()
