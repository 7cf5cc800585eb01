"""Real-video nuisances added to rendered clips, the label's hysteresis, and choosing a smoother on validation
clips to report it on held-out ones."""
import numpy as np
import pandas as pd
import pytest

from qcslib.analysis import temporal
from qcslib.data.synthfer.video import ClipSettings, write_clips
from qcslib.video import Hysteresis, VideoFile
from qcslib.video.nuisance import BOX, degrade, degrade_clip, moved
from tests.test_video_report import CLASSES, summary


def test_hysteresis_holds_a_label_until_another_class_leads_by_the_margin():
    labeller = Hysteresis(0.2)
    steps = [[0.6, 0.4], [0.45, 0.55], [0.35, 0.65], [0.5, 0.5], [0.55, 0.45], [0.7, 0.3]]
    # a lead of 0.1 holds the label, of 0.3 or 0.4 moves it
    assert [labeller("face", p) for p in steps] == [0, 0, 1, 1, 1, 0]
    assert labeller("other", [0.1, 0.9]) == 1  # a new face starts at its argmax
    plain, untied = Hysteresis(0.0), [p for p in steps if p[0] != p[1]]
    assert [plain("face", p) for p in untied] == [int(np.argmax(p)) for p in untied]  # margin 0: the argmax
    with pytest.raises(ValueError, match=r"--hysteresis must be a margin in \[0, 1\), got -0.1"):
        Hysteresis(-0.1)


def test_degrade_is_the_identity_at_zero_and_seeded_above_it():
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    box = np.array([10.0, 10.0, 38.0, 38.0])
    same, matrix = degrade(image, box, 0.0, np.random.default_rng(1))
    np.testing.assert_array_equal(same, image)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    a, matrix_a = degrade(image, box, 1.0, np.random.default_rng(2), occluded_part=1)
    b, matrix_b = degrade(image, box, 1.0, np.random.default_rng(2), occluded_part=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(matrix_a, matrix_b)
    assert a.shape == image.shape and np.abs(a.astype(int) - image).mean() > 5
    with pytest.raises(ValueError, match="nuisance strength must be a number in"):
        degrade(image, box, 1.5, np.random.default_rng(0))


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_the_picture_moves_where_the_jitter_moves_the_truth(seed):
    image = np.zeros((64, 64, 3), np.uint8)
    image[28:33, 18:23] = 255  # a bright dot centred on x = 20, y = 30
    out, matrix = degrade(image, np.array([0.0, 0.0, 1.0, 1.0]), 1.0, np.random.default_rng(seed))
    weight = out.astype(float).mean(2)
    weight = np.where(weight > 0.3 * weight.max(), weight, 0)
    ys, xs = np.indices(weight.shape)
    centroid = np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()
    np.testing.assert_allclose(centroid, moved([[20, 30]], matrix)[0], atol=1.0)
    assert abs(np.hypot(*matrix[:, 0]) - 1) < 0.3  # a scale near 1


def test_a_degraded_clip_moves_its_truth_with_the_jitter(tmp_path):
    clip = write_clips(tmp_path / "clean", ClipSettings(seed=3, fps=10, seconds=1.5, size=48))[0]
    clean = pd.read_csv(clip["truth"])
    untouched = degrade_clip(clip["video"], clip["truth"], tmp_path / "s0", 0.0)
    for got, want in zip(VideoFile(untouched["video"]), VideoFile(clip["video"])):
        np.testing.assert_array_equal(got.image, want.image)
    zero = pd.read_csv(untouched["truth"])
    pd.testing.assert_frame_equal(zero[clean.columns], clean)
    assert (zero[["jitter_dx", "jitter_dy", "jitter_deg"]] == 0).all().all() and (zero["jitter_scale"] == 1).all()
    assert (zero["bar"] == -1).all()

    shaken = degrade_clip(clip["video"], clip["truth"], tmp_path / "s1", 1.0, seed=5)
    jittered = pd.read_csv(shaken["truth"])
    assert jittered["jitter_dx"].abs().max() > 0 and shaken["frames"] == len(clean) == 15
    assert (jittered["jitter_scale"] != 1).any() and (jittered["jitter_deg"] != 0).any()
    names = [f"landmark{i}_{a}" for i in range(5) for a in "xy"]
    for k in (0, 7):  # the landmarks and the box through the frame's own map, drawn again from its seed
        _, matrix = degrade(np.zeros((48, 48, 3), np.uint8), np.zeros(4), 1.0, np.random.default_rng((5, 0, k)))
        points = clean.loc[k, names].to_numpy(float).reshape(5, 2)
        np.testing.assert_allclose(jittered.loc[k, names].to_numpy(float).reshape(5, 2), moved(points, matrix),
                                   atol=0.06)
        corners = moved(clean.loc[k, BOX].to_numpy(float)[[0, 1, 2, 1, 0, 3, 2, 3]].reshape(4, 2), matrix)
        np.testing.assert_allclose(jittered.loc[k, BOX].to_numpy(float),
                                   np.concatenate([corners.min(0), corners.max(0)]), atol=0.06)
    again = degrade_clip(clip["video"], clip["truth"], tmp_path / "s1b", 1.0, seed=5)
    pd.testing.assert_frame_equal(pd.read_csv(again["truth"]), jittered)
    with pytest.raises(ValueError, match="would replace the clean one"):
        degrade_clip(clip["video"], clip["truth"], tmp_path / "clean", 0.5)


def test_the_smoother_is_chosen_on_validation_clips_and_reported_against_none(tmp_path):
    truth = ["neutral"] * 3 + ["happy"] * 7
    flickering = ["neutral", "neutral", "sad", "happy", "sad", "happy", "happy", "sad", "happy", "happy"]
    results = [summary(tmp_path, f"c{k}", flickering[k:] + ["happy"] * k, ["neutral"] * 10, truth) for k in range(4)]
    frames = temporal.frame_labels(f"{results[0]['out']}/predictions.csv", results[0]["truth"])
    assert temporal.flicker(frames, "raw") == pytest.approx(6 / 0.9)  # 6 changes over 0.9 s

    grid = temporal.smoother_grid([0.0, 0.3], [0.0, 0.5])
    assert [g["smoother"] for g in grid] == ["none", "ema", "hysteresis", "ema + hysteresis"]
    scores = temporal.smoother_scores(results, grid)
    assert len(scores) == 4 * len(grid)
    none = scores[scores["smoother"] == "none"].iloc[0]
    assert none["accuracy"] == pytest.approx(7 / 10)  # the raw labels: right on 2 neutral + 5 happy frames
    chosen = temporal.choose_smoother(scores, "accuracy")
    best = scores.groupby(["tau", "margin"])["accuracy"].mean().max()
    picked = scores[(scores["tau"] == chosen["tau"]) & (scores["margin"] == chosen["margin"])]
    assert picked["accuracy"].mean() == best
    effect = temporal.smoother_effect(scores, chosen)
    assert list(effect.index) == ["accuracy", "macro_f1", "flicker", "delay_s"]
    assert effect.loc["accuracy", "none"] == pytest.approx(
        100 * scores[scores["smoother"] == "none"]["accuracy"].mean(), abs=0.005)
    assert all("chosen − none" in text for text in effect["chosen − none"])
    metrics = temporal.clip_metrics(f"{results[0]['out']}/predictions.csv", results[0]["truth"], "raw")
    assert metrics["accuracy"] == pytest.approx(0.7) and metrics["flicker"] == pytest.approx(6 / 0.9)
    assert set(CLASSES) >= {"neutral", "happy", "sad"}


def test_the_nuisance_table_compares_the_chosen_smoother_at_each_strength(tmp_path):
    truth = ["neutral"] * 3 + ["happy"] * 7
    clean = ["neutral"] * 3 + ["happy"] * 7
    noisy = ["neutral", "sad", "neutral", "happy", "sad", "happy", "happy", "sad", "happy", "happy"]
    results = {0.0: [summary(tmp_path, f"a{k}", clean, clean, truth) for k in range(3)],
               1.0: [summary(tmp_path, f"b{k}", noisy[k:] + ["happy"] * k, clean, truth) for k in range(3)]}
    chosen = {"smoother": "hysteresis", "tau": 0.0, "margin": 0.5}
    scores = temporal.held_out(results, chosen)
    assert set(scores) == {0.0, 1.0} and set(scores[1.0]["smoother"]) == {"none", "hysteresis"}
    table = temporal.nuisance_table(scores, chosen)
    assert table["accuracy none (%)"].tolist()[0] == 100.0  # one change, the truth's, in 0.9 s:
    assert table["flicker none (/s)"].tolist()[0] == round(1 / 0.9, 2)
    assert table["accuracy none (%)"].tolist()[1] < 100.0
    assert table["flicker chosen (/s)"].tolist()[1] <= table["flicker none (/s)"].tolist()[1]
    assert all(text.startswith("chosen − none") for text in table["accuracy: chosen − none"])
    assert len(temporal.held_out(results, {"smoother": "none", "tau": 0.0, "margin": 0.0})[0.0]) == 3  # once
