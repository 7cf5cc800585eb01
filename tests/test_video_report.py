"""Notebook 09's pieces: the clip made of real photos, the per-clip scores and their comparison, the per-stage
timings, the clips drawn like the profile's SynthFER, and its "What we found"."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from qcslib import QCSConfig, QCSNet, notebook, save_checkpoint
from qcslib.analysis import findings, tables, temporal
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


def test_clip_scores_compare_smoothed_with_raw_over_clips(tmp_path):
    truth = ["neutral"] * 2 + ["happy"] * 4
    results = [summary(tmp_path, "a", ["neutral", "sad", "sad", "happy", "sad", "happy"],
                       ["neutral", "neutral", "neutral", "happy", "happy", "happy"], truth),
               summary(tmp_path, "b", ["sad"] * 6, ["neutral", "neutral", "sad", "happy", "happy", "happy"], truth),
               summary(tmp_path, "c", ["neutral"] * 6, ["neutral"] * 6, truth)]
    scores = temporal.clip_scores(results)
    assert list(scores["raw accuracy"]) == pytest.approx([3 / 6, 0, 2 / 6])
    assert list(scores["smoothed accuracy"]) == pytest.approx([5 / 6, 5 / 6, 2 / 6])
    assert list(scores["smoothed delay (s)"][:2]) == pytest.approx([0.1, 0.1])  # onset at frame 2, happy at 3
    assert np.isnan(scores["smoothed delay (s)"][2]) and scores["onsets detected (smoothed)"][2] == "0 of 1"
    effect = temporal.smoothing_effect(scores)
    assert effect["seeds"] == 3 and effect["mean_diff"] == pytest.approx((2 / 6 + 5 / 6 + 0) / 3)
    assert effect["ci_low"] < effect["mean_diff"] < effect["ci_high"]
    shown = tables.clip_accuracy(scores)
    assert shown["clip"].iloc[-1] == "mean ± std (3 clips)" and shown["frames"].iloc[-1] == 18
    assert shown["smoothed accuracy"].iloc[-1] == f"{100 * np.mean([5 / 6, 5 / 6, 2 / 6]):.1f} ± " \
                                                  f"{100 * np.std([5 / 6, 5 / 6, 2 / 6], ddof=1):.1f}"
    assert shown["smoothed delay (s)"].iloc[2] == "none"


def test_resmoothing_recomputes_the_labels_from_the_raw_probabilities_and_the_sweep_compares_each_tau(tmp_path):
    truth = ["neutral"] * 2 + ["happy"] * 4
    flicker = ["neutral", "sad", "neutral", "happy", "sad", "happy"]  # raw labels; the smoothed ones are ignored
    first = summary(tmp_path, "x", flicker, ["anger"] * 6, truth)
    table = temporal.resmoothed(f"{first['out']}/predictions.csv", 0.0)
    assert list(table["label"]) == flicker  # τ = 0: the raw labels
    slow = temporal.resmoothed(f"{first['out']}/predictions.csv", 100.0)
    assert list(slow["label"]) == ["neutral"] * 6  # τ ≫ the clip: stays with the first frame's probabilities
    raw = [c for c in slow.columns if c.startswith("p_")]
    np.testing.assert_allclose(table[[f"smoothed_{c[2:]}" for c in raw]].to_numpy(), table[raw].to_numpy())
    np.testing.assert_allclose(slow[[f"smoothed_{c[2:]}" for c in raw]].to_numpy()[-1], slow[raw].to_numpy()[0],
                               atol=0.05)  # the smoothed probabilities too, which the timeline draws
    # raw right on 4, 5 and 4 of 6 frames; smoothed with τ = 100 s on the 2 neutral ones: −2/6, −3/6, −2/6
    raws = [["neutral", "neutral", "happy", "happy", "sad", "sad"], ["neutral", "neutral", "happy", "happy", "happy", "sad"],
            ["neutral", "sad", "happy", "happy", "happy", "sad"]]
    results = [summary(tmp_path, name, raw, ["anger"] * 6, truth) for name, raw in zip("abc", raws)]
    sweep = temporal.smoothing_sweep(results, [0.0, 100.0])
    assert list(sweep["raw accuracy (%)"]) == [round(100 * 13 / 18, 1)] * 2
    assert list(sweep["smoothed accuracy (%)"]) == [round(100 * 13 / 18, 1), round(100 * 2 / 6, 1)]
    diff = -np.array([2, 3, 2]) / 6
    test = stats.ttest_1samp(diff, 0)
    low, high = test.confidence_interval(0.95)
    assert list(sweep["smoothed − raw (points)"]) == ["+0.0", f"{100 * diff.mean():+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"]
    # τ = 0 gives the same difference on every clip: no interval, and out of the family, so Holm's m is 1
    assert list(sweep["Holm p"]) == ["n/a", f"{test.pvalue:.3f}"]
    assert list(sweep["reading"]) == ["interval undefined (every one of the clips gives the same difference)",
                                      "smoothing hurts"]
    assert list(sweep["onsets detected"]) == ["3 of 3", "0 of 3"] and np.isnan(sweep["median delay (s)"][1])


def test_a_sweep_difference_that_does_not_survive_holm_reads_no_detectable_difference():
    c = {"seeds": 3, "mean_diff": -0.3, "ci_low": -0.5, "ci_high": -0.1, "confidence": 0.95, "p_holm": 0.08}
    assert temporal._difference(c)["reading"] == "no detectable difference"
    assert temporal._difference({**c, "p_holm": 0.04})["reading"] == "smoothing hurts"


def test_stage_table_shares_and_rates_per_group():
    run = {"frames": 10, "seconds": dict(zip(STAGES, [1.0, 2.0, 0.0, 1.0, 4.0, 2.0]))}
    table = tables.video_stages({"x": [run, run]})
    assert list(table["stage"]) == list(STAGES) + ["all"]
    assert list(table["x: share"]) == ["10 %", "20 %", "0 %", "10 %", "40 %", "20 %", "100 %"]
    assert table["x: frames/s"].tolist()[:2] == [10.0, 5.0] and table["x: frames/s"].iloc[-1] == 1.0
    assert table["x: frames/s"].iloc[2] == float("inf")


def test_clips_are_drawn_like_the_profiles_synthfer(tmp_path):
    config = load_profile("smoke", [f"runs_dir={tmp_path}"])
    params = NotebookParameters(clips=2, clip_seconds=1.0, clip_fps=4.0)
    clips = notebook.synthfer_clips(config, params)
    assert [c["frames"] for c in clips] == [4, 4] and all(c["video"].startswith(str(tmp_path)) for c in clips)
    frame = next(iter(VideoFile(clips[0]["video"]))).image
    assert frame.shape == (config.synthfer.size, config.synthfer.size, 3)


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


def test_video_findings_say_what_the_run_is_and_compare_over_clips(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, QCSNet(QCSConfig.sized("tiny")), classes=CLASSES)
    (tmp_path / "summary.json").write_text(json.dumps({"seed": 3, "selection": "val", "stopped_early": False,
                                                       "converged": False}))
    scores = pd.DataFrame({"frames": [10, 10], "raw accuracy": [0.4, 0.5], "smoothed accuracy": [0.6, 0.8]})
    effect = temporal.smoothing_effect(scores)
    runs = [{"frames": 20, "seconds": dict.fromkeys(STAGES, 1.0)}]
    real = {"video": "x/photos.mp4", "frames": 80, "face_ids": [0, 1], "frames_without_face": 20, "error": None,
            "seconds": dict.fromkeys(STAGES, 2.0)}
    sweep = pd.DataFrame({"τ (s)": [0.1, 0.5, 2.0], "reading": ["no detectable difference", "smoothing hurts",
                                                                 "smoothing hurts"], "median delay (s)": [0.2, 0.4, 1.1]})
    text = findings.video(ckpt, load_predictor(ckpt).template, scores, effect, sweep, runs, real, every=5,
                          smooth=0.5)
    assert ("Over τ = 0.1, 0.5, 2 s: no detectable difference at τ = 0.1 s; smoothing hurts at τ = 0.5, 2 s (the 3 "
            "τs are one family: a difference is declared only where its Holm-adjusted p is below 0.05; the intervals "
            "are unadjusted); the median delay from the truth label's switch (half-way through the onset) to "
            "detection grew from 0.2 s to 1.1 s") in text
    assert "one run, seed 3; chosen on the val split; **not converged" in text
    assert "raw 45.0 %, smoothed 70.0 %" in text and "on 2 clips, interval undefined (fewer than 3 paired clips)" in text
    assert "3.3 frames/s on the SynthFER clips" in text and "6.7 frames/s on the real clip (MTCNN every 5" in text
    assert "20 frame(s) had no face" in text
