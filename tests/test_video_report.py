"""Notebook 09's pieces: the clip made of real photos, the per-clip scores and their comparison, the per-stage
timings, the clips drawn like the profile's SynthFER, and its "What we found"."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from qcslib import QCSConfig, QCSNet, notebook, save_checkpoint
from qcslib.analysis import findings, tables
from qcslib.data.photo_clip import pan_and_zoom, real_photos, write_photo_clip
from qcslib.faces import load_predictor
from qcslib.notebook import NotebookParameters
from qcslib.train import load_profile
from qcslib.video import STAGES, VideoFile, plot_timeline

CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]


def test_real_photos_are_rgb_and_the_clip_pans_zooms_and_keeps_every_frame(tmp_path):
    photos = real_photos()
    assert list(photos) == ["astronaut", "grace_hopper", "cameraman", "coffee"]
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in photos.values())
    ramp = np.tile((np.arange(400) // 2).astype(np.uint8)[None, :, None], (300, 1, 3))  # brightness = x / 2
    views = list(pan_and_zoom(ramp, 5, 64))
    assert all(v.shape == (64, 64, 3) for v in views)
    spans = [int(v[:, -1, 0].mean()) - int(v[:, 0, 0].mean()) for v in views]
    assert spans[0] > spans[-1] > 0  # zooming in: the window covers less of the ramp
    assert views[-1][:, 32, 0].mean() > views[0][:, 32, 0].mean()  # panning right: the centre gets brighter
    clip = write_photo_clip(tmp_path / "clip.mp4", {"a": ramp, "b": ramp[::-1]}, frames_per_photo=3, side=64)
    assert clip["photos"] == [("a", 0, 2), ("b", 3, 5)]
    assert len(list(VideoFile(clip["video"]))) == clip["frames"] == 6
    with pytest.raises(ValueError, match="even side >= 32"):
        write_photo_clip(tmp_path / "bad.mp4", {"a": ramp}, side=33)


def summary(tmp_path, name, raw, smoothed, truth):
    """A predictions.csv with one face whose raw and smoothed labels are given per frame, and its truth CSV."""
    out = tmp_path / name
    out.mkdir()
    rows = []
    for frame, (r, s) in enumerate(zip(raw, smoothed)):
        row = {"frame": frame, "time_s": frame / 10, "face_id": 0, "label": s}
        row.update({f"p_{c}": float(c == r) for c in CLASSES})
        row.update({f"smoothed_{c}": float(c == s) for c in CLASSES})
        rows.append(row)
    pd.DataFrame(rows).to_csv(out / "predictions.csv", index=False)
    phases = ["onset" if t == "happy" and (k == 0 or truth[k - 1] != "happy") else "neutral"
              for k, t in enumerate(truth)]
    pd.DataFrame({"frame": range(len(truth)), "time_s": np.arange(len(truth)) / 10, "label": truth,
                  "phase": phases}).to_csv(tmp_path / f"{name}.csv", index=False)
    return {"out": str(out), "truth": str(tmp_path / f"{name}.csv"), "frames": len(truth)}


def test_stage_table_shares_and_rates_per_group():
    run = {"frames": 10, "seconds": dict(zip(STAGES, [1.0, 2.0, 0.0, 1.0, 4.0, 2.0]))}
    table = tables.video_stages({"x": [run, run]})
    assert list(table["stage"]) == list(STAGES) + ["all"]
    assert list(table["x: share"]) == ["10 %", "20 %", "0 %", "10 %", "40 %", "20 %", "100 %"]
    assert table["x: frames/s"].tolist()[:2] == [10.0, 5.0] and table["x: frames/s"].iloc[-1] == 1.0
    assert table["x: frames/s"].iloc[2] == float("inf")


def test_clips_are_drawn_like_the_profiles_synthfer_with_other_people_for_validation(tmp_path):
    config = load_profile("smoke", [f"runs_dir={tmp_path}"])
    params = NotebookParameters(val_clips=1, test_clips=2, clip_seconds=1.0, clip_fps=4.0)
    clips = notebook.synthfer_clips(config, params)
    assert {split: [c["frames"] for c in found] for split, found in clips.items()} == {"val": [4], "test": [4, 4]}
    assert all(c["video"].startswith(str(tmp_path)) for c in clips["val"] + clips["test"])
    frame = next(iter(VideoFile(clips["test"][0]["video"]))).image
    assert frame.shape == (config.synthfer.size, config.synthfer.size, 3)
    other = next(iter(VideoFile(clips["val"][0]["video"]))).image  # clip 0 of another seed: another person
    assert np.abs(frame.astype(int) - other).mean() > 5


def test_the_kernels_matplotlib_backend_survives_a_timeline(tmp_path):
    csv = tmp_path / "p.csv"
    pd.DataFrame({"frame": [0, 1], "time_s": [0.0, 0.1], "face_id": [0, None],
                  **{f"{k}_{c}": [0.5, None] for k in ("p", "smoothed") for c in CLASSES}}).to_csv(csv, index=False)
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # standing in for a notebook's inline backend, which switching to Agg would end
    try:
        plot_timeline(csv, CLASSES, tmp_path / "t.png")
        assert (tmp_path / "t.png").stat().st_size > 0 and matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)


def test_video_findings_say_what_the_run_is_what_was_chosen_and_what_it_did(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, QCSNet(QCSConfig.sized("tiny")), classes=CLASSES)
    (tmp_path / "summary.json").write_text(json.dumps({"seed": 3, "selection": "val", "stopped_early": False,
                                                       "converged": False}))
    chosen = {"smoother": "ema + hysteresis", "tau": 0.5, "margin": 0.1}
    val = pd.DataFrame({"clip": [0, 1, 0, 1], "tau": [0.0, 0.0, 0.5, 0.5], "margin": [0.0, 0.0, 0.1, 0.1]})
    effect = pd.DataFrame({"metric": ["accuracy", "macro_f1", "flicker", "delay_s"], "clips": [10, 10, 10, 8],
                           "chosen − none": ["acc text", "f1 text", "flicker text", "delay text"]}).set_index("metric")
    clean = effect.assign(**{"chosen − none": ["clean text", "", "", ""]})
    sweep = pd.DataFrame({"nuisance": [0.0, 1.0], "accuracy none (%)": [70.0, 40.0],
                          "accuracy chosen (%)": [71.0, 50.0]}).set_index("nuisance")
    runs = [{"frames": 20, "seconds": dict.fromkeys(STAGES, 1.0)}]
    real = {"video": "x/photos.mp4", "frames": 80, "face_ids": [0, 1], "frames_without_face": 20, "error": None,
            "seconds": dict.fromkeys(STAGES, 2.0)}
    text = findings.video(ckpt, load_predictor(ckpt).template, chosen, val, effect, clean, sweep, runs, real,
                          every=5, nuisance=0.5)
    assert "one run, seed 3; chosen on the val split; **not converged" in text
    assert "read 2 validation and 10 held-out SynthFER clips" in text
    assert "among 2 settings: **the EMA with τ = 0.5 s then hysteresis with a margin of 0.1**" in text
    assert "accuracy acc text; macro-F1 f1 text; flicker flicker text; onset delay delay text" in text
    assert "Without nuisances: accuracy clean text" in text
    assert "raw accuracy 70.0 %, 40.0 %; with the chosen smoother 71.0 %, 50.0 %" in text
    assert "3.3 frames/s on the SynthFER clips" in text and "6.7 frames/s on the real clip (MTCNN every 5" in text
    assert "20 frame(s) had no face" in text
    plain = findings.video(ckpt, "synthfer", {"smoother": "none", "tau": 0.0, "margin": 0.0}, val, effect, clean,
                           sweep, runs, real, every=1, nuisance=0.5)
    assert "**no smoothing**" in plain and "the held-out clips are read raw" in plain
