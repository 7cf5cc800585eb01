"""SynthFER clips (seeded determinism, truth CSV columns and phases, the label rule, decoding) and the temporal
accuracy helpers on small hand-made tables."""
import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from qcslib.__main__ import main
from qcslib.analysis.temporal import frame_labels, onset_delays, temporal_accuracy
from qcslib.data.synthfer import AUS, SynthFERSettings, sample_identity
from qcslib.data.synthfer.video import (IDENTITY_BASE, ClipFaces, ClipSettings, Episode, render_clip, truth_columns,
                                        write_clips)
from qcslib.video import VideoFile

SHORT = ClipSettings(seed=5, fps=8, seconds=6, size=48)  # two episodes of 3 s, 48 frames


def digest(settings, clip=0):
    """SHA-256 of the rendered frames (before encoding) and the truth rows."""
    h = hashlib.sha256()
    for image, row in render_clip(settings, clip):
        h.update(image.tobytes())
        h.update(repr(sorted(row.items())).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def short_clip():
    return list(render_clip(SHORT, 0))


def test_same_seed_same_clip_and_other_seeds_or_clips_differ():
    assert digest(SHORT) == digest(SHORT)
    assert digest(SHORT) != digest(ClipSettings(seed=6, fps=8, seconds=6, size=48))
    assert digest(SHORT) != digest(SHORT, clip=1)


def test_truth_rows_columns_times_and_phase_order(short_clip):
    rows = [row for _, row in short_clip]
    assert len(rows) == SHORT.frames == 48
    assert all(list(row) == truth_columns() for row in rows)
    assert truth_columns()[:4] == ["frame", "time_s", "label", "phase"]
    assert [r["frame"] for r in rows] == list(range(48))
    assert [r["time_s"] for r in rows] == pytest.approx([n / 8 for n in range(48)])
    phases = [r["phase"] for r in rows]
    runs = [p for k, p in enumerate(phases) if k == 0 or p != phases[k - 1]]
    assert runs == ["neutral", "onset", "apex", "offset"] * 2 + ["neutral"]  # a tail and the next lead merge
    assert all(max(r[f"au{au:02d}"] for au in AUS) == 0 for r in rows if r["phase"] == "neutral")
    assert {image.shape for image, _ in short_clip} == {(48, 48, 3)}


def test_label_rule_half_of_apex_intensity(short_clip):
    """A frame has the episode's class iff its AU intensities are at least half those at the apex."""
    rows = pd.DataFrame([row for _, row in short_clip])
    au = [f"au{a:02d}" for a in AUS]
    rows["episode"] = (rows["time_s"] // 3).astype(int)
    checked = 0
    for _, episode in rows.groupby("episode"):
        apex = episode[episode["phase"] == "apex"]
        classes = set(episode["label"]) - {"neutral"}
        assert len(classes) == 1 and set(apex["label"]) == classes
        ratio = episode[au].sum(axis=1) / apex[au].sum(axis=1).iloc[0]
        clear = (ratio - 0.5).abs() > 0.01  # the AUs are rounded to 4 places
        expected = np.where(ratio >= 0.5, classes.pop(), "neutral")
        assert (episode["label"][clear] == expected[clear.to_numpy()]).all()
        checked += int(clear.sum())
    assert checked > 40


def test_envelope_smoothstep_through_phases():
    e = Episode(label=1, bounds=(0.0, 1.0, 2.0, 3.0, 4.0, 5.0), aus={})
    assert e.phase(0.5) == ("neutral", 0.0)
    assert e.phase(1.5) == ("onset", pytest.approx(0.5))
    assert e.phase(1.25)[1] == pytest.approx(3 * 0.25 ** 2 - 2 * 0.25 ** 3)
    assert e.phase(2.5) == ("apex", 1.0)
    assert e.phase(3.75) == ("offset", pytest.approx(1 - (3 * 0.75 ** 2 - 2 * 0.75 ** 3)))
    assert e.phase(4.5) == ("neutral", 0.0)


def test_head_moves_and_occluder_crosses(short_clip):
    rows = pd.DataFrame([row for _, row in short_clip])
    assert rows["rotation"].max() - rows["rotation"].min() > 5
    assert (rows["occluded"] > 0).any() and (rows["occluded"] == 0).any()


def test_truth_places_the_face_with_the_identitys_eyes_and_the_rows_rotation(short_clip):
    person = sample_identity(SHORT.synthfer, IDENTITY_BASE)
    for _, row in short_clip:
        points = np.array([[row[f"landmark{k}_x"], row[f"landmark{k}_y"]] for k in range(5)])  # (5, 2) pixels
        eyes = points[1] - points[0]
        assert np.hypot(*eyes) == pytest.approx(2 * person.eye_dx * 0.32 * SHORT.size, abs=0.2)  # 0.32 size a unit
        assert math.degrees(math.atan2(eyes[1], eyes[0])) == pytest.approx(row["rotation"], abs=0.6)
        assert row["box_x0"] < points[:, 0].min() and points[:, 0].max() < row["box_x1"]
        assert row["box_y0"] < points[:, 1].min() and points[:, 1].max() < row["box_y1"]
    centres = np.array([[row["box_x0"] + row["box_x1"], row["box_y0"] + row["box_y1"]] for _, row in short_clip]) / 2
    assert np.ptp(centres, axis=0).min() > 1  # the head moves, and the box with it


def test_clips_take_the_look_of_the_given_synthfer_settings():
    grey = ClipSettings(seed=5, fps=2, seconds=1, size=48, look=SynthFERSettings(saturation=0.0, seed=9, size=200))
    assert grey.synthfer.seed == 5 and grey.synthfer.size == 48  # the clip's own seed and size win
    image, _ = next(render_clip(grey, 0))
    colour, _ = next(render_clip(ClipSettings(seed=5, fps=2, seconds=1, size=48), 0))
    spread = lambda im: np.ptp(im.astype(int), axis=2).max()  # largest channel difference of any pixel
    assert spread(image) <= 2 < spread(colour)


def test_written_clip_decodes_with_the_frame_count(tmp_path):
    written = write_clips(tmp_path, ClipSettings(seed=2, fps=10, seconds=1.5, size=64), clips=2)
    assert [w["frames"] for w in written] == [15, 15]
    for w in written:
        frames = list(VideoFile(w["video"]))
        assert len(frames) == 15 and frames[0].image.shape == (64, 64, 3)
        assert len(pd.read_csv(w["truth"])) == 15


def test_cli_writes_clips_and_rejects_bad_settings(tmp_path, capsys):
    assert main(["synthfer-video", "--out", str(tmp_path), "--seconds", "0.5", "--size", "32"]) == 0
    assert (tmp_path / "clip000.mp4").exists() and len(pd.read_csv(tmp_path / "clip000.csv")) == 5
    assert main(["synthfer-video", "--out", str(tmp_path), "--size", "33"]) == 2
    assert "size must be even" in capsys.readouterr().err
    with pytest.raises(ValueError, match="fps"):
        ClipSettings(fps=0)


# ----------------------------------------------------------------------------------------------------
# Temporal accuracy on hand-made tables
# ----------------------------------------------------------------------------------------------------

TRUTH = pd.DataFrame({"frame": range(8), "time_s": [n * 0.5 for n in range(8)],
                      "label": ["neutral", "neutral", "happy", "happy", "neutral", "sad", "sad", "neutral"],
                      "phase": ["neutral", "onset", "onset", "apex", "onset", "onset", "apex", "offset"]})


def predictions(raw, smoothed, absent=()):
    """One face (id 0) per frame with probabilities peaked on ``raw``, smoothed label ``smoothed``; frames in
    ``absent`` get a no-face row; a second face (id 7) appears in frame 0 only."""
    classes = ["neutral", "happy", "sad"]
    rows = []
    for frame, (r, s) in enumerate(zip(raw, smoothed)):
        if frame in absent:
            rows.append({"frame": frame, "face_id": None, "label": None, **{f"p_{c}": None for c in classes}})
            continue
        rows.append({"frame": frame, "face_id": 0, "label": s,
                     **{f"p_{c}": 0.8 if c == r else 0.1 for c in classes}})
    rows.append({"frame": 0, "face_id": 7, "label": "sad", **{f"p_{c}": 1 / 3 for c in classes}})
    return pd.DataFrame(rows)


def test_accuracy_raw_and_smoothed_with_absent_face_wrong():
    raw = ["neutral", "happy", "happy", "sad", "neutral", "sad", "sad", "sad"]
    smooth = ["neutral", "neutral", "neutral", "happy", "happy", "happy", "sad", "neutral"]
    result = temporal_accuracy(predictions(raw, smooth, absent={6}), TRUTH)
    # raw right at frames 0, 2, 4, 5 (6: face absent) → 4/8; smoothed right at 0, 1, 3, 7 → 4/8
    assert result == {"frames": 8, "frames_without_face": 1, "raw": 4 / 8, "smoothed": 4 / 8}
    frames = frame_labels(predictions(raw, smooth, absent={6}), TRUTH)
    assert frames["raw"].tolist()[5:7] == ["sad", None]  # face 7 (one frame) is not the clip's face


def test_onset_delays_count_from_the_truth_labels_switch_to_the_first_matching_frame_before_next_onset():
    raw = ["neutral", "happy", "neutral", "happy", "happy", "neutral", "neutral", "sad"]
    smooth = ["neutral", "neutral", "neutral", "neutral", "neutral", "neutral", "neutral", "neutral"]
    table = predictions(raw, smooth)
    delays = onset_delays(table, TRUTH, column="raw")
    # onsets at frames 1 and 4; the truth label switches half-way through each, at frames 2 (happy) and 5 (sad).
    # happy: the hit at frame 1 comes before the switch; the first one after it is frame 3, 0.5 s after the switch.
    # sad: first hit frame 7, 1.0 s after the switch (1.5 s after the onset began).
    assert [(d["onset_s"], d["switch_s"], d["label"]) for d in delays] == [(0.5, 1.0, "happy"), (2.0, 2.5, "sad")]
    assert [d["delay_s"] for d in delays] == pytest.approx([0.5, 1.0])
    assert all(math.isnan(d["delay_s"]) for d in onset_delays(table, TRUTH))  # smoothed never gets there


def test_helpers_reject_missing_columns_and_frames():
    with pytest.raises(ValueError, match="lacks the columns \\['phase'\\]"):
        temporal_accuracy(predictions(["neutral"] * 8, ["neutral"] * 8), TRUTH.drop(columns="phase"))
    with pytest.raises(ValueError, match="no row for truth frames \\[7\\]"):
        temporal_accuracy(predictions(["neutral"] * 7, ["neutral"] * 7), TRUTH)
    with pytest.raises(ValueError, match="column must be"):
        onset_delays(predictions(["neutral"] * 8, ["neutral"] * 8), TRUTH, column="label")


def test_helpers_read_what_predict_video_writes(tmp_path):
    """A SynthFER clip through predict_video (untrained tiny model, a fixed-box detector): the helpers read its
    predictions.csv, and the raw accuracy matches the one recomputed from predictions.jsonl."""
    import json

    import torch

    from qcslib import QCSConfig, QCSNet, save_checkpoint
    from qcslib.faces import load_predictor
    from qcslib.video import predict_video

    torch.manual_seed(0)
    classes = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
    save_checkpoint(tmp_path / "tiny.pt", QCSNet(QCSConfig.sized("tiny")), classes=classes)
    clip = write_clips(tmp_path, ClipSettings(seed=1, fps=10, seconds=1.5, size=64))[0]
    predict_video(load_predictor(tmp_path / "tiny.pt"), VideoFile(clip["video"]), tmp_path / "out",
                  ClipFaces(clip["truth"]), every=3, smooth=0.3, progress=False)
    result = temporal_accuracy(tmp_path / "out" / "predictions.csv", clip["truth"])
    records = [json.loads(line) for line in open(tmp_path / "out" / "predictions.jsonl")]
    truth = pd.read_csv(clip["truth"])["label"].tolist()
    raw = [max(r["probabilities"], key=r["probabilities"].get) for r in records]
    assert result["frames"] == 15 and result["frames_without_face"] == 0
    assert result["raw"] == pytest.approx(np.mean([p == t for p, t in zip(raw, truth)]))
    assert len(onset_delays(tmp_path / "out" / "predictions.csv", clip["truth"])) == 1
    table, known = pd.read_csv(tmp_path / "out" / "predictions.csv"), pd.read_csv(clip["truth"])
    detected = table["detected"] == 1
    assert list(table["frame"][detected]) == [0, 3, 6, 9, 12]  # the others tracked, on the one face id
    assert set(table["face_id"]) == {0}
    boxes = ["box_x0", "box_y0", "box_x1", "box_y1"]
    assert np.allclose(table[boxes][detected], known[boxes][detected], atol=0.05)


def test_the_truth_detector_refuses_a_clip_without_positions_and_unknown_frames(tmp_path):
    old = tmp_path / "old.csv"
    pd.DataFrame({"frame": [0], "time_s": [0.0], "label": ["neutral"]}).to_csv(old, index=False)
    with pytest.raises(ValueError, match=r"old.csv: a clip truth CSV without the face position columns"):
        ClipFaces(old)
    clip = write_clips(tmp_path, ClipSettings(seed=1, fps=4, seconds=1, size=48))[0]
    faces = ClipFaces(clip["truth"])
    assert len(faces.detect(None, 3)) == 1
    with pytest.raises(ValueError, match="frame 4 is not in the clip's truth"):
        faces.detect(None, 4)


def test_clips_are_lossless_so_every_render_decodes_to_the_same_pixels(tmp_path):
    settings = ClipSettings(seed=2, fps=10, seconds=1.5, size=64)
    decoded = [np.stack([f.image for f in VideoFile(write_clips(tmp_path / str(k), settings)[0]["video"])])
               for k in range(3)]
    assert all(np.array_equal(decoded[0], d) for d in decoded[1:])
    rendered = np.stack([image for image, _ in render_clip(settings, 0)])
    assert np.abs(decoded[0].astype(int) - rendered).mean() < 5  # what is lost: yuv420p (halved colour, video range)
