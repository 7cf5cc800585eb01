"""Video and streaming prediction: frame sources (file, window, damage, a fake camera), the tracker through a
crossing, the EMA's frame-rate independence, and the per-frame outputs of predict_video and the CLI."""
import json
import math
import re

import av
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage

import qcslib.__main__
from qcslib import QCSConfig, save_checkpoint
from qcslib.__main__ import main
from qcslib.faces import TEMPLATES, Face, Predictor, load_predictor, predict_faces
from qcslib.video import (DETECT_SIDE, VIDEO_OUTPUTS, Camera, DetectionSchedule, Frame, Smoother, Tracker, VideoError,
                          VideoFile, iou, predict_video)

CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
SIDE, SQUARE = 64, 20


def square_frame(x: int | None, rng) -> np.ndarray:
    """A dark, noisy 64 × 64 frame with a white SQUARE-pixel square at (x, 20), or none when x is None."""
    image = rng.integers(0, 90, (SIDE, SIDE, 3), dtype=np.uint8)
    if x is not None:
        image[20:20 + SQUARE, x:x + SQUARE] = 255
    return image


def write_video(path, images, fps=10, options=None):
    """An H.264 mp4 written by PyAV (``movflags=faststart``: the index first, so a cut file still opens)."""
    with av.open(str(path), "w", options=options or {"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class SquareDetector:
    """Finds the bright squares (no MTCNN): each one a face, its landmarks on SynthFER's template in its box.
    (``max_side``, FaceDetector's, is taken and ignored.)"""

    def __init__(self, max_side=None):
        self.max_side = max_side

    def detect(self, image, frame=None):
        mask = np.asarray(image).mean(axis=2) > 200
        labels, n = ndimage.label(mask)
        faces = []
        for ys, xs in ndimage.find_objects(labels):
            box = np.array([xs.start, ys.start, xs.stop, ys.stop], dtype=float)
            if (box[2:] - box[:2]).min() >= 8:
                faces.append(Face(box, box[:2] + TEMPLATES["synthfer"] * (box[2:] - box[:2]), 0.99))
        return faces


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return load_predictor(tiny_checkpoint[0])


def test_a_video_file_yields_every_frame_with_its_index_and_time_and_honours_the_window(tmp_path):
    rng = np.random.default_rng(0)
    path = write_video(tmp_path / "clip.mp4", [square_frame(2 * i, rng) for i in range(20)])
    frames = list(VideoFile(path))
    assert [f.index for f in frames] == list(range(20))
    np.testing.assert_allclose([f.time for f in frames], np.arange(20) / 10, atol=1e-3)
    assert frames[0].image.shape == (SIDE, SIDE, 3) and frames[0].image.dtype == np.uint8
    assert frames[3].image[30, 2 * 3 + 10].min() > 200  # the square is where it was drawn, RGB decoded
    window = VideoFile(path, start=0.5, end=1.5)
    assert window.frames == 10 and [f.index for f in window] == list(range(5, 15)) and window.error is None
    with pytest.raises(ValueError, match="start < end"):
        VideoFile(path, start=2, end=1)
    with pytest.raises(ValueError, match="at or past the end of the video, which its header says is 2.00 s long"):
        VideoFile(path, start=2)
    late = VideoFile(path, start=1.95)  # inside the header's 2 s, after the last frame (1.9 s)
    assert list(late) == [] and late.error == f"{path}: no frame at or after start 1.95 s (the last is at 1.90 s)"


def test_a_truncated_video_keeps_the_frames_before_the_damage_and_says_where_it_stopped(tmp_path, predictor):
    rng = np.random.default_rng(1)
    path = write_video(tmp_path / "whole.mp4", [square_frame(2 * i, rng) for i in range(20)])
    whole = path.read_bytes()
    with av.open(str(path)) as container:
        packet_ends = [p.pos + p.size for p in container.demux(video=0) if p.pos is not None]
    cut = tmp_path / "cut.mp4"
    # cut after the 10th packet: the demuxer ends quietly, and only the header's frame count shows the loss
    cut.write_bytes(whole[: packet_ends[9]])
    source = VideoFile(cut)
    assert [f.index for f in source] == list(range(10))
    assert source.error == (f"{cut}: the stream ended after 10 of the 20 frames its header lists (a truncated "
                            "file?); the 10 frames before it are kept")
    # cut inside a packet: the decoder fails on it, and the frames it still held are flushed out and kept
    cut.write_bytes(whole[: len(whole) // 2])
    source = VideoFile(cut)
    frames = list(source)
    assert 0 < len(frames) < 20 and [f.index for f in frames] == list(range(len(frames)))
    np.testing.assert_allclose([f.time for f in frames], np.arange(len(frames)) / 10, atol=1e-3)
    assert re.fullmatch(rf"{re.escape(str(cut))}: decoding stopped after frame {len(frames)} \({frames[-1].time:.2f} "
                        rf"s\) of 20: .*Invalid data.*; the {len(frames)} frames before it are kept", source.error)
    summary = predict_video(predictor, VideoFile(cut), tmp_path / "out", SquareDetector(), progress=False)
    assert summary["frames"] == len(frames) and summary["error"] == source.error
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(table["frame"].unique()) == list(range(len(frames)))
    assert _decoded_frames(tmp_path / "out" / "annotated.mp4") == len(frames)

    (tmp_path / "garbage.mp4").write_bytes(b"not a video at all " * 50)
    with pytest.raises(VideoError, match=r"garbage.mp4: cannot open the video: .*Invalid data"):
        VideoFile(tmp_path / "garbage.mp4")
    (tmp_path / "headless.mp4").write_bytes(whole[:200])
    with pytest.raises(VideoError, match="headless.mp4: (no video stream|cannot open the video)"):
        VideoFile(tmp_path / "headless.mp4")


def _decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def crossing(frame: int):
    """Two 20-pixel faces crossing: A left → right at y 20, B right → left at y 24, 3 pixels a frame each."""
    a, b = np.array([3.0 * frame, 20]), np.array([60 - 3.0 * frame, 24])
    rafdb, synthfer = TEMPLATES["rafdb"], TEMPLATES["synthfer"]
    return (Face(np.r_[a, a + 20], a + rafdb * 20, 0.99), Face(np.r_[b, b + 20], b + synthfer * 20, 0.99))


def test_face_ids_survive_a_crossing(tmp_path):
    every, tracker, ids = 4, Tracker(), {"A": set(), "B": set()}
    for frame in range(21):
        a, b = crossing(frame)
        if frame % every == 0:
            # the detector's order says nothing: B first on odd detections
            found = tracker.update(frame, [b, a] if (frame // every) % 2 else [a, b])
        else:
            found = tracker.carry(frame)
        assert len(found) == 2
        for face_id, face in found:
            name, true = min((("A", a), ("B", b)), key=lambda n: np.abs(face.box - n[1].box).max())
            if frame > every:  # a new face stands still until its second detection; then it moves on exactly
                assert np.abs(face.box - true.box).max() < 1e-6
            ids[name].add(face_id)
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1 and ids["A"] != ids["B"]
    # the crossing is hard: at frame 12, A's box overlaps B's last detected box (frame 8) more than its own
    assert iou(crossing(12)[0].box, crossing(8)[1].box) > 2 * iou(crossing(12)[0].box, crossing(8)[0].box)


def test_a_face_missed_by_a_detection_is_not_carried_but_keeps_its_id_when_found_again():
    tracker = Tracker()
    a0, _ = crossing(0)
    assert [i for i, _ in tracker.update(0, [a0])] == [0]
    assert tracker.update(2, []) == [] and tracker.carry(3) == []
    assert [i for i, _ in tracker.update(4, [crossing(1)[0]])] == [0]  # still near where it was
    far = Face(a0.box + 40, a0.landmarks + 40, 0.99)
    assert [i for i, _ in tracker.update(6, [far])] == [1]  # no overlap: a new face


def test_a_zooming_rolling_face_is_carried_point_by_point():
    def face(frame):  # centred at (50, 40), growing 2 % a frame and turning 1° a frame
        scale, angle = 30 * 1.02 ** frame, np.radians(frame)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = np.array([50.0, 40.0]) + scale * (TEMPLATES["rafdb"] - 0.5) @ rotation.T
        half = np.array([scale / 2, scale / 2])
        return Face(np.r_[np.array([50.0, 40.0]) - half, np.array([50.0, 40.0]) + half], points, 0.99)

    tracker = Tracker()
    tracker.update(0, [face(0)])
    tracker.update(4, [face(4)])
    (_, carried), = tracker.carry(6)
    true, still = face(6), face(4)
    error = np.linalg.norm(carried.landmarks - true.landmarks, axis=1).max()
    assert error < 0.1 * np.linalg.norm(still.landmarks - true.landmarks, axis=1).max()  # first order: close
    assert carried.box[2] - carried.box[0] > still.box[2] - still.box[0]  # the box grows on


def test_the_detector_runs_every_k_frames_and_again_at_once_when_tracking_is_in_doubt():
    sure, unsure = crossing(0)[0], Face(crossing(0)[0].box, crossing(0)[0].landmarks, 0.93)
    schedule = DetectionSchedule(every=5)
    assert schedule.due(0)
    schedule.after(0, [sure], tracked=0)
    assert [f for f in range(1, 8) if schedule.due(f)] == [5, 6, 7]  # the next one is frame 5
    for found, tracked in (([], 1), ([sure], 2), ([unsure], 1)):  # none, a face lost, a doubtful face
        schedule.after(5, found, tracked)
        assert schedule.due(6)
    schedule.after(6, [sure, sure], tracked=2)
    assert not schedule.due(10) and schedule.due(11)


def test_the_ema_depends_on_time_not_on_the_frame_rate():
    tau = 0.4

    def signal(t):  # a rise of 0.8 around 1 s (0.1 s wide) plus a slow wave, as a 2-class probability
        x = 0.1 + 0.8 / (1 + math.exp(-(t - 1.0) / 0.1)) + 0.05 * math.sin(2 * math.pi * 0.5 * t)
        return np.array([x, 1 - x])

    smoothed = {}
    for fps in (10, 30):
        smoother = Smoother(tau)
        smoothed[fps] = {round(i / fps, 6): smoother("face", i / fps, signal(i / fps))[0] for i in range(3 * fps)}
    common = [t for t in smoothed[10] if t in smoothed[30]]
    assert len(common) == 30
    gap = max(abs(smoothed[10][t] - smoothed[30][t]) for t in common)
    assert gap < 0.04
    # a per-frame constant α (tuned for 10 fps) run at 30 fps reacts three times faster: far off
    alpha, p = 1 - math.exp(-0.1 / tau), signal(0)[0]
    for i in range(1, 37):
        p += alpha * (signal(i / 30)[0] - p)
    assert abs(p - smoothed[10][1.2]) > 3 * gap
    # one step: 1 − exp(−Δt/τ) of the way from the last value to the new one; the first value and τ = 0 give x
    smoother = Smoother(tau)
    assert smoother("f", 0.0, np.array([0.2, 0.8]))[0] == 0.2
    assert smoother("f", 0.3, np.array([1.0, 0.0]))[0] == pytest.approx(0.2 + 0.8 * (1 - math.exp(-0.3 / tau)))
    assert smoother("g", 0.3, np.array([1.0, 0.0]))[0] == 1.0  # another face: its own state
    assert Smoother(0)("f", 1.0, signal(1.0))[0] == signal(1.0)[0]
    with pytest.raises(ValueError, match="--smooth must be a finite number >= 0"):
        Smoother(-1)


def test_predict_video_writes_a_record_per_face_per_frame_and_a_row_per_frame_without_one(tmp_path, predictor,
                                                                                           capsys):
    rng = np.random.default_rng(2)
    gap = range(6, 10)  # the face is hidden in frames 6-9
    clip = write_video(tmp_path / "clip.mp4", [square_frame(None if i in gap else 2 * i, rng) for i in range(20)])
    out = tmp_path / "out"
    tau = 0.5
    summary = predict_video(predictor, VideoFile(clip), out, SquareDetector(), every=2, smooth=tau)
    assert "frame/s" in capsys.readouterr().err  # the progress bar's rate
    seconds = summary.pop("seconds")
    assert summary == {"video": str(clip), "frames": 20, "frames_without_face": 4, "face_ids": [0], "error": None,
                       "out": str(out)}
    assert list(seconds) == ["decode", "detect", "track", "align", "classify", "write"]
    assert all(s > 0 for s in seconds.values())  # every stage ran and was timed
    table = pd.read_csv(out / "predictions.csv")
    assert list(table["frame"]) == list(range(20))
    empty = table[table["face_id"].isna()]
    assert list(empty["frame"]) == list(gap) and empty["label"].isna().all()
    faces = table.dropna(subset=["face_id"])
    assert (faces["face_id"] == 0).all()  # the same id after the gap
    assert list(faces["detected"]) == [int(f % 2 == 0) for f in faces["frame"]]
    seen = faces[faces["detected"] == 1]
    np.testing.assert_allclose(seen["box_x0"], 2 * seen["frame"], atol=1.5)
    # the smoothed columns follow the EMA of the raw ones in time, and the label is their argmax
    raw, smooth = faces[[f"p_{c}" for c in CLASSES]].to_numpy(), faces[[f"smoothed_{c}" for c in CLASSES]].to_numpy()
    times, expected = faces["time_s"].to_numpy(), raw[0].copy()
    for k in range(1, len(faces)):
        expected = expected + (1 - math.exp(-(times[k] - times[k - 1]) / tau)) * (raw[k] - expected)
        np.testing.assert_allclose(smooth[k], expected, atol=2e-4)
    assert list(faces["label"]) == [CLASSES[i] for i in smooth.argmax(axis=1)]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 20 and records[7] == {"frame": 7, "time_s": pytest.approx(0.7, abs=1e-3), "face_id": None}
    assert set(records[0]) == {"frame", "time_s", "face_id", "detected", "box", "landmarks", "probabilities",
                               "smoothed", "label"}
    assert len(records[0]["landmarks"]) == 5 and list(records[0]["probabilities"]) == CLASSES
    assert _decoded_frames(out / "annotated.mp4") == 20
    with Image.open(out / "timeline.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 300


def test_predict_video_labels_with_hysteresis_as_relabelling_its_csv_does(tmp_path, predictor):
    from qcslib.analysis.temporal import resmoothed

    rng = np.random.default_rng(4)
    clip = write_video(tmp_path / "clip.mp4", [square_frame(2 * i, rng) for i in range(16)])
    plain = predict_video(predictor, VideoFile(clip), tmp_path / "plain", SquareDetector(), smooth=0.2, progress=False)
    held = predict_video(predictor, VideoFile(clip), tmp_path / "held", SquareDetector(), smooth=0.2,
                         hysteresis=0.05, progress=False)
    table = pd.read_csv(f"{held['out']}/predictions.csv")
    assert list(table["label"]) == list(resmoothed(f"{plain['out']}/predictions.csv", 0.2, 0.05)["label"])
    changes = (table["label"].to_numpy()[1:] != table["label"].to_numpy()[:-1]).sum()
    plain_labels = pd.read_csv(f"{plain['out']}/predictions.csv")["label"].to_numpy()
    assert changes <= (plain_labels[1:] != plain_labels[:-1]).sum()  # hysteresis never adds a change


class FakeCamera:
    """A camera stand-in: frames at jittery times, no known length, like a live stream."""

    name, fps, frames, error = "fake camera", 15.0, None, None

    def __iter__(self):
        rng = np.random.default_rng(3)
        t = 0.0
        for i in range(12):
            yield Frame(i, t, square_frame(3 * i, rng))
            t += rng.uniform(0.04, 0.1)


def test_a_camera_goes_through_the_same_path_and_a_missing_one_is_a_clear_error(tmp_path, predictor):
    summary = predict_video(predictor, FakeCamera(), tmp_path / "cam", SquareDetector(), every=3, smooth=0.2,
                            progress=False)
    assert summary["frames"] == 12 and summary["face_ids"] == [0] and summary["error"] is None
    table = pd.read_csv(tmp_path / "cam" / "predictions.csv")
    np.testing.assert_allclose(table["time_s"], [f.time for f in FakeCamera()], atol=1e-4)
    assert _decoded_frames(tmp_path / "cam" / "annotated.mp4") == 12
    with pytest.raises(VideoError, match=r"camera 97: /dev/video97 does not exist \(no camera on this machine\?\)"):
        Camera(97)


def test_the_predict_command_sends_videos_to_the_video_path(tmp_path, predictor, monkeypatch, capsys):
    built = []
    monkeypatch.setattr(qcslib.__main__, "FaceDetector", lambda **options: built.append(options) or SquareDetector())
    rng = np.random.default_rng(4)
    clip = write_video(tmp_path / "walk.mp4", [square_frame(2 * i, rng) for i in range(20)])
    (tmp_path / "cut.mkv").write_bytes(b"")  # an empty file with a video suffix
    checkpoint = str(tmp_path / "tiny.pt")
    save_checkpoint(checkpoint, predictor.model, classes=CLASSES)
    out = tmp_path / "out"
    code = main(["predict", str(clip), str(tmp_path / "cut.mkv"), "--checkpoint", checkpoint, "--every", "3",
                 "--smooth", "0.3", "--start", "0.5", "--end", "1.5", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1  # one video could not be opened; the other is still done
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cut.mkv: cannot open the video" in errors[0]
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["frames"] == 10 and summary["face_ids"] == [0]
    assert built == [{"max_side": DETECT_SIDE}]  # detection on shrunk frames by default
    table = pd.read_csv(out / "000_walk" / "predictions.csv")
    assert list(table["frame"]) == list(range(5, 15)) and list(table["detected"]) == [1, 0, 0] * 3 + [1]
    assert {p.name for p in (out / "000_walk").iterdir()} == set(VIDEO_OUTPUTS) == {
        "predictions.csv", "predictions.jsonl", "annotated.mp4", "timeline.png"}
    assert main(["predict", str(clip), "--checkpoint", checkpoint]) == 2
    assert "pass --out" in capsys.readouterr().err
    elsewhere = str(tmp_path / "elsewhere")  # out holds this run's predictions now
    assert main(["predict", str(clip), "--checkpoint", checkpoint, "--every", "0", "--out", elsewhere]) == 2
    assert "--every must be >= 1, got 0" in capsys.readouterr().err
    assert main(["predict", "--camera", "97", "--checkpoint", checkpoint, "--out", elsewhere]) == 1
    assert "/dev/video97 does not exist" in capsys.readouterr().err


def one_error_line(err: str) -> str:
    """The one error line of ``err`` (its other lines are the progress bar's)."""
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("flags, message", [
    (["--end", "inf"], "need finite 0 <= start < end, got start 0.0, end inf"),
    (["--start", "nan"], "need finite 0 <= start < end, got start nan"),
    (["--start", "2", "--end", "1"], "need finite 0 <= start < end, got start 2.0, end 1.0"),
    (["--start", "5"], "start 5 s is at or past the end of the video, which its header says is 2.00 s long"),
    (["--smooth", "inf"], "--smooth must be a finite number >= 0 seconds, got inf"),
    (["--hysteresis", "1"], "--hysteresis must be a margin in [0, 1), got 1.0"),
    (["--detect-side", "16"], "--detect-side must be 0 (full size) or at least 32 pixels, got 16"),
])
def test_a_bad_window_or_a_non_finite_value_is_a_one_line_error_before_any_work(tmp_path, predictor, capsys, flags,
                                                                                message):
    clip = write_video(tmp_path / "walk.mp4", [square_frame(2 * i, np.random.default_rng(5)) for i in range(20)])
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, predictor.model, classes=CLASSES)
    out = tmp_path / "out"
    assert main(["predict", str(clip), "--checkpoint", str(checkpoint), "--out", str(out), *flags]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_synthfer_video_refuses_a_non_finite_length(tmp_path, capsys):
    assert main(["synthfer-video", "--out", str(tmp_path / "clips"), "--seconds", "inf"]) == 2
    assert "ClipSettings.seconds must be finite" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "clips").exists()


def test_a_truncated_mkv_whose_header_lists_no_frame_count_is_an_error_and_keeps_its_frames(tmp_path, predictor,
                                                                                              monkeypatch, capsys):
    monkeypatch.setattr(qcslib.__main__, "FaceDetector", SquareDetector)
    rng = np.random.default_rng(6)
    whole = write_video(tmp_path / "whole.mkv", [square_frame(2 * i, rng) for i in range(20)])
    source = VideoFile(whole)
    assert source.listed is None and source.duration == pytest.approx(2.0)  # Matroska: a duration, no count
    assert len(list(source)) == 20 and source.error is None
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, predictor.model, classes=CLASSES)
    out = tmp_path / "out"
    assert main(["predict", str(cut), "--checkpoint", str(checkpoint), "--out", str(out)]) == 1
    error = one_error_line(capsys.readouterr().err)
    kept = len(pd.read_csv(out / "000_cut" / "predictions.csv")["frame"].unique())
    assert 0 < kept < 20
    assert re.search(rf"cut.mkv: the stream ended at [0-9.]+ s of the 2.00 s its header lists \(a truncated file\?\); "
                     rf"the {kept} frames before it are kept", error)


def test_predict_refuses_an_out_holding_earlier_predictions_unless_overwrite(tmp_path, predictor, monkeypatch,
                                                                            capsys):
    monkeypatch.setattr(qcslib.__main__, "FaceDetector", SquareDetector)  # videos
    monkeypatch.setattr(qcslib.faces, "FaceDetector", SquareDetector)  # photos
    rng = np.random.default_rng(7)
    walk = write_video(tmp_path / "walk.mp4", [square_frame(2 * i, rng) for i in range(10)])
    talk = write_video(tmp_path / "talk.mp4", [square_frame(30 - 2 * i, rng) for i in range(10)])
    Image.fromarray(square_frame(20, rng)).save(tmp_path / "one.png")
    Image.fromarray(square_frame(10, rng)).save(tmp_path / "two.png")
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, predictor.model, classes=CLASSES)
    out = tmp_path / "out"
    run = lambda *paths: main(["predict", *map(str, paths), "--checkpoint", str(checkpoint), "--out", str(out)])

    assert run(walk, tmp_path / "one.png") == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for other in ([talk], [tmp_path / "two.png"]):
        capsys.readouterr()
        assert run(*other) == 2
        assert re.search(rf"--out {re.escape(str(out))} already holds predictions \(predictions.json, "
                         r"predictions.csv, 000_one_faces.png…\): pass --overwrite to replace them \(they are deleted first\), or choose another "
                         r"--out", one_error_line(capsys.readouterr().err))
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # a bad option is refused before --overwrite deletes anything
    assert main(["predict", str(talk), "--checkpoint", str(checkpoint), "--out", str(out), "--overwrite",
                 "--every", "0"]) == 2
    assert "--every must be >= 1, got 0" in one_error_line(capsys.readouterr().err)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["predict", str(talk), "--checkpoint", str(checkpoint), "--out", str(out), "--overwrite"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == sorted(
        ["000_talk"] + [f"000_talk/{name}" for name in VIDEO_OUTPUTS])


class DeviceProbe(torch.nn.Module):
    """A stand-in model that records the device of each input it gets; its one parameter is on ``meta``, where no
    CPU tensor could meet it."""

    def __init__(self, classes: int, config: QCSConfig):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, device="meta"))
        self.config, self.classes, self.devices = config, classes, []

    def forward(self, x):
        self.devices.append(x.device.type)
        return torch.zeros(len(x), self.classes)


def test_faces_go_to_the_device_of_the_model(tmp_path, predictor):
    probe = DeviceProbe(len(CLASSES), predictor.model.config)
    rng = np.random.default_rng(8)
    clip = write_video(tmp_path / "walk.mp4", [square_frame(2 * i, rng) for i in range(3)])
    summary = predict_video(Predictor(probe, CLASSES, predictor.template, predictor.recipe), VideoFile(clip),
                            tmp_path / "out", SquareDetector(), progress=False)
    assert summary["frames"] == 3 and probe.devices == ["meta"] * 3
    Image.fromarray(square_frame(20, rng)).save(tmp_path / "one.png")
    records, _ = predict_faces(probe, [tmp_path / "one.png"], CLASSES, predictor.template, SquareDetector(),
                               predictor.recipe)
    assert [r["label"] for r in records] == [CLASSES[0]] and probe.devices == ["meta"] * 4
