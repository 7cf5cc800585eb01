"""SynthFER: determinism, format, caching, label noise and bias rates, AU prototypes, masks and contempt."""
import csv
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qcslib.data.synthfer import (AUS, CLASSES, DOMAINS, PROTOTYPES, VERSION, Record, SynthFERSettings, domain_settings,
                                  generate, plan, render, sample_aus, sample_identity)
from qcslib.data.synthfer.io import PARTIAL_MARK, write_png
from qcslib.data.synthfer.render import gaussian_blur
from qcslib.data.synthfer.settings import seeded_rng

SMALL = SynthFERSettings(train_identities=3, val_identities=1, test_identities=2, images_per_identity=8, size=64)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synthfer") / "small", SMALL, workers=2)


def read_meta(root: Path) -> list[dict]:
    with open(root / "meta.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def read_list(root: Path, split: str) -> list[tuple[str, int]]:
    lines = (root / f"{split}.txt").read_text().splitlines()
    return [(path, int(label)) for path, label in (line.split() for line in lines)]


# ---------------------------------------------------------------------------------------------- determinism

def test_output_is_the_same_for_one_or_two_workers(small, tmp_path):
    one = generate(tmp_path / "one", SMALL, workers=1)
    files = sorted(p.relative_to(small) for p in small.rglob("*") if p.is_file())
    assert len(files) == 2 * 48 + 6  # images and masks, train/val/test/classes lists, meta, settings
    assert files == sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    for name in files:
        assert (small / name).read_bytes() == (one / name).read_bytes(), name


def test_the_seed_changes_the_images(small, tmp_path):
    other = generate(tmp_path / "other", SynthFERSettings(**{**SMALL.to_dict(), "seed": 1}), workers=1)
    path = read_list(small, "train")[0][0]
    assert not np.array_equal(np.asarray(Image.open(small / path)), np.asarray(Image.open(other / path)))


def test_png_writer_round_trips_exactly(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = np.random.default_rng(1).integers(0, 256, (6, 4), dtype=np.uint8)
    for name, pixels, mode in (("rgb.png", rgb, "RGB"), ("grey.png", grey, "L")):
        write_png(str(tmp_path / name), Image.fromarray(pixels))
        with Image.open(tmp_path / name) as im:
            assert im.mode == mode
            assert np.array_equal(np.asarray(im), pixels)


# ---------------------------------------------------------------------------------------------- format

@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0])
def test_blur_matches_scipys_gaussian_filter(sigma):
    from scipy.ndimage import gaussian_filter
    x = np.random.default_rng(0).uniform(0, 255, (20, 24, 3)).astype(np.float32)
    ours = gaussian_blur(x, sigma)
    theirs = gaussian_filter(x.astype(np.float64), (sigma, sigma, 0), mode="nearest", truncate=2.0)
    assert ours.shape == x.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    np.testing.assert_allclose(gaussian_blur(np.full_like(x, 7.0), sigma), 7.0, rtol=1e-6)


def test_every_listed_image_and_mask_exists_with_the_right_size_and_mode(small):
    meta = {row["path"]: row for row in read_meta(small)}
    assert (small / "classes.txt").read_text().splitlines() == list(CLASSES[:7])
    for split, count in (("train", 24), ("val", 8), ("test", 16)):
        listed = read_list(small, split)
        assert len(listed) == count
        for path, label in listed:
            assert path.startswith(f"images/{split}/") and 0 <= label < 7
            assert meta[path]["split"] == split and int(meta[path]["label"]) == label
            with Image.open(small / path) as im:
                assert (im.mode, im.size) == ("RGB", (64, 64))
            with Image.open(small / meta[path]["mask"]) as mask:
                assert (mask.mode, mask.size) == ("L", (64, 64))
                assert set(np.unique(np.asarray(mask))) <= {0, 255}
    assert len(meta) == 48
    assert json.loads((small / "settings.json").read_text()) == {"version": VERSION, **SMALL.to_dict()}


def test_meta_has_the_promised_columns(small):
    row = read_meta(small)[0]
    wanted = {"path", "split", "identity", "label", "true_label", "attribute", "bias_conflicting", "mask",
              *(f"au{au:02d}" for au in AUS)}
    assert wanted <= set(row)


def test_train_val_and_test_identities_are_disjoint(small):
    ids = {split: {row["identity"] for row in read_meta(small) if row["split"] == split}
           for split in ("train", "val", "test")}
    assert [len(ids[s]) for s in ("train", "val", "test")] == [3, 1, 2]
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    records = plan(BIG)
    by_split = {s: {r.identity for r in records if r.split == s} for s in ("train", "val", "test")}
    assert [len(v) for v in by_split.values()] == [200, 50, 100]
    assert not (by_split["train"] & by_split["val"]) | (by_split["val"] & by_split["test"])


# ---------------------------------------------------------------------------------------------- caching

def test_a_second_call_does_nothing(small):
    before = {p: p.stat().st_mtime_ns for p in small.rglob("*")}
    start = time.perf_counter()
    assert generate(small, SMALL) == small
    assert time.perf_counter() - start < 0.5
    assert {p: p.stat().st_mtime_ns for p in small.rglob("*")} == before


def test_other_settings_in_the_same_directory_are_an_error(small):
    with pytest.raises(ValueError, match=r"other settings \(bias_strength: 0.5 there, 0.9 asked\)") as error:
        generate(small, SynthFERSettings(**{**SMALL.to_dict(), "bias_strength": 0.9}))
    assert str(small) in str(error.value)


def test_a_foreign_non_empty_directory_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no settings.json"):
        generate(tmp_path, SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("content", ["[1, 2]", b"\xff\xfe{}"], ids=["a JSON list", "not UTF-8"])
def test_a_settings_json_that_is_not_an_object_of_settings_is_a_one_line_error(tmp_path, capsys, content):
    from qcslib.__main__ import main
    out = tmp_path / "data"
    out.mkdir()
    marker = out / "settings.json"
    marker.write_bytes(content.encode() if isinstance(content, str) else content)
    assert main(["synthfer", "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m qcslib synthfer: error: {marker} ") and err.count("\n") == 1
    assert f"delete {out} to regenerate" in err and [p.name for p in out.iterdir()] == ["settings.json"]


def test_an_interrupted_run_is_redone_from_scratch(tmp_path):
    tiny = SynthFERSettings(train_identities=1, val_identities=1, test_identities=1, images_per_identity=2, size=32)
    partial = tmp_path / ".data.partial"
    (partial / "images").mkdir(parents=True)
    (partial / PARTIAL_MARK).touch()
    (partial / "images" / "stale.png").write_bytes(b"old")
    out = generate(tmp_path / "data", tiny, workers=1)
    assert not partial.exists() and not (out / "images" / "stale.png").exists()
    assert len(read_meta(out)) == 6


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match=r"SynthFERSettings.classes must be 7 or 8, got 6"):
        SynthFERSettings(classes=6)
    with pytest.raises(ValueError, match=r"SynthFERSettings.label_noise must be in \[0, 1\]"):
        SynthFERSettings(label_noise=1.5)


# ---------------------------------------------------------------------------------------------- label noise and bias

BIG = SynthFERSettings(train_identities=200, val_identities=50, test_identities=100, images_per_identity=40,
                       label_noise=0.2, bias_strength=0.8)


def test_label_noise_hits_the_configured_fraction_of_train_and_val_only():
    records = plan(BIG)
    train, val, test = ([r for r in records if r.split == s] for s in ("train", "val", "test"))
    assert sum(r.label != r.true_label for r in train) == round(0.2 * len(train))
    assert sum(r.label != r.true_label for r in val) == round(0.2 * len(val))  # val is drawn like train
    assert all(r.label == r.true_label for r in test)
    for identity in range(350):  # balanced classes within each identity: 40 images = 5 or 6 per class
        counts = Counter(r.true_label for r in records[40 * identity: 40 * identity + 40])
        assert set(counts) == set(range(7)) and set(counts.values()) <= {5, 6}


def test_noisy_labels_are_recorded_in_meta(small):
    for row in read_meta(small):
        assert int(row["noisy"]) == (row["label"] != row["true_label"])
        assert row["split"] != "test" or not int(row["noisy"])


def aligned_fraction(records: list[Record]) -> float:
    return np.mean([not r.bias_conflicting for r in records])


def test_the_attribute_follows_the_class_in_train_and_val_and_not_in_test():
    records = plan(BIG)
    train, val, test = ([r for r in records if r.split == s] for s in ("train", "val", "test"))
    assert aligned_fraction(train) == pytest.approx(0.8 + 0.2 / 7, abs=0.02)
    assert aligned_fraction(val) == pytest.approx(0.8 + 0.2 / 7, abs=0.03)
    assert aligned_fraction(test) == pytest.approx(1 / 7, abs=0.02)
    # test attributes are independent of the class: every class sees every attribute about equally often
    for c in range(7):
        counts = np.bincount([r.attribute for r in test if r.true_label == c], minlength=7)
        assert counts.min() > 0.6 * counts.mean()


def test_no_bias_means_an_independent_attribute():
    train = [r for r in plan(SynthFERSettings(**{**BIG.to_dict(), "bias_strength": 0.0})) if r.split == "train"]
    assert aligned_fraction(train) == pytest.approx(1 / 7, abs=0.02)


# ---------------------------------------------------------------------------------------------- AUs and masks

def au_means(settings: SynthFERSettings, label: int, n: int = 400) -> dict[int, float]:
    rng = np.random.default_rng(label)
    draws = [sample_aus(settings, label, 1.0, rng)[0] for _ in range(n)]
    return {au: float(np.mean([max(d[au]) for d in draws])) for au in AUS}


@pytest.mark.parametrize("label", range(8))
def test_au_intensities_follow_the_prototypes(label):
    means = au_means(SynthFERSettings(classes=8), label)
    inside = [means[au] for au in PROTOTYPES[CLASSES[label]]]
    outside = [m for au, m in means.items() if au not in PROTOTYPES[CLASSES[label]]]
    assert all(m > 0.35 for m in inside), means
    assert max(outside) < 0.3 and np.mean(outside) < 0.1, means


def test_meta_au_columns_follow_the_prototypes(small):
    rows = read_meta(small)
    happy = [float(r["au12"]) for r in rows if r["true_label"] == "1"]
    neutral = [float(r["au12"]) for r in rows if r["true_label"] == "0"]
    assert np.mean(happy) > 0.3 > np.mean(neutral) + 0.2


def clean(**overrides) -> SynthFERSettings:
    """No pose, occluders or leaks: what each image shows is its expression alone."""
    return SynthFERSettings(**{**dict(classes=8, size=96, max_rotation=0.0, scale_jitter=0.0, max_shift=0.0,
                                      occlusion_prob=0.0, leak_prob=0.0, au_dropout=0.0, intensity_min=0.6,
                                      train_identities=4, val_identities=1, test_identities=1, images_per_identity=16),
                            **overrides})


def test_masks_cover_the_active_aus_and_neutral_has_none():
    settings = clean()
    for record in plan(settings)[:48]:
        _, mask, meta = render(settings, record)
        area = (np.asarray(mask) > 0).mean()
        if record.true_label == 0:
            assert area == 0, record
        else:
            assert area > 0.005, (record, meta)


def test_mask_regions_follow_the_mouth_and_the_eyes():
    settings = clean()
    rows = {}
    for record in plan(settings)[:32]:
        rows.setdefault(CLASSES[record.true_label], np.asarray(render(settings, record)[1]) > 0)
    mid = 96 // 2
    assert rows["happy"][mid:].any() and rows["disgust"][mid:].any()         # mouth, lower half
    assert rows["surprise"][:mid].any() and rows["anger"][:mid].any()        # brows and lids, upper half


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_the_mask_turns_with_the_face():
    still, turned = clean(), clean(max_rotation=30.0)
    fear = (r for r in plan(still) if CLASSES[r.true_label] == "fear")
    record, meta = next((r, m) for r in fear if abs((m := render(turned, r)[2])["rotation"]) > 10)
    (_, a, _), (_, b, _) = render(still, record), render(turned, record)
    pivot = (96 / 2, 96 * 0.53)  # the face origin, where render puts the face centre
    # PIL turns counter-clockwise for positive angles; the renderer's y axis points down, so it turns clockwise
    expected = np.asarray(a.rotate(-meta["rotation"], center=pivot)) > 0
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    assert iou(b, expected) > 0.85 and iou(b, a) < 0.6


def test_expressions_change_the_face_inside_the_mask():
    """The same image (identity, pose, background, noise) drawn as neutral and as each expression."""
    settings = clean()
    base = plan(settings)[0]
    neutral = np.asarray(render(settings, replace(base, true_label=0, label=0))[0], float)
    for label in range(1, 8):
        image, mask, _ = render(settings, replace(base, true_label=label, label=label))
        diff = np.abs(np.asarray(image, float) - neutral).mean(-1)
        inside = np.asarray(mask) > 0
        assert diff[inside].mean() > 5 * diff[~inside].mean() + 1, CLASSES[label]


# ---------------------------------------------------------------------------------------------- contempt

def test_contempt_is_one_sided():
    settings = clean()
    contempt = [r for r in plan(settings) if CLASSES[r.true_label] == "contempt"]
    assert len(contempt) >= 4
    sides = set()
    for record in contempt:
        rng = seeded_rng(settings.seed, 2, record.index)
        aus, side = sample_aus(settings, record.true_label, 1.0, rng)
        _, mask, meta = render(settings, record)
        assert meta["side"] == side in ("left", "right")
        active = 0 if side == "left" else 1
        assert aus[12][active] > 0.3 and aus[12][1 - active] == 0 and aus[14][1 - active] == 0
        m = np.asarray(mask) > 0
        left, right = m[:, :48].sum(), m[:, 48:].sum()
        assert (left > 3 * right) if side == "left" else (right > 3 * left)
        sides.add(side)
    assert sides == {"left", "right"}


def test_seven_classes_have_no_contempt(small):
    assert {int(r["true_label"]) for r in read_meta(small)} == set(range(7))
    assert {r["side"] for r in read_meta(small)} == {"none"}


def test_class_names_are_the_projects():
    from qcslib.data.sources import CLASS_NAMES
    assert CLASSES == CLASS_NAMES


# ---------------------------------------------------------------------------------------------- colour and domains

def grey_levels(image: Image.Image) -> np.ndarray:
    """BT.601 luma of an RGB image, as floats."""
    return np.asarray(image, float) @ np.array([0.299, 0.587, 0.114])


def test_saturation_changes_the_colours_and_nothing_else():
    """Greyscale (saturation 0) and halved colour keep every draw: the same masks, metadata and luma."""
    colour, half, grey = (SynthFERSettings(**{**SMALL.to_dict(), "saturation": s}) for s in (1.0, 0.5, 0.0))
    for record in plan(SMALL)[:6]:
        (a, mask_a, meta_a), (h, _, _), (g, mask_g, meta_g) = (render(s, record) for s in (colour, half, grey))
        a, h, g = (np.asarray(x, float) for x in (a, h, g))
        assert np.ptp(g, axis=-1).max() <= 1  # R = G = B, up to rounding
        unclipped = ((a > 0) & (a < 255)).all(-1)  # where the colour image lost nothing to clipping
        assert np.abs(g.mean(-1) - grey_levels(Image.fromarray(a.astype(np.uint8))))[unclipped].max() <= 1
        spread_a, spread_h = np.ptp(a, axis=-1)[unclipped].mean(), np.ptp(h, axis=-1)[unclipped].mean()
        assert spread_a > 5 and abs(spread_h - spread_a / 2) <= 1  # the channels' spread halves
        assert meta_a == meta_g and np.array_equal(np.asarray(mask_a), np.asarray(mask_g))
    with pytest.raises(ValueError, match="SynthFERSettings.saturation must be non-negative"):
        SynthFERSettings(saturation=-0.1)


def test_a_dataset_made_before_the_saturation_setting_still_matches(small, tmp_path):
    """settings.json written before ``saturation`` existed (without the key) is that dataset at saturation 1."""
    old = tmp_path / "old"
    old.mkdir()
    for path in small.iterdir():
        (old / path.name).symlink_to(path)
    (old / "settings.json").unlink()
    stored = json.loads((small / "settings.json").read_text())
    del stored["saturation"]
    (old / "settings.json").write_text(json.dumps(stored))
    assert generate(old, SMALL) == old  # reused, not an error
    with pytest.raises(ValueError, match="saturation: 1.0 there, 0.0 asked"):
        generate(old, replace(SMALL, saturation=0.0))


def test_each_domain_changes_only_its_own_settings_and_keeps_the_classes():
    assert DOMAINS["studio"] == {} and domain_settings(SMALL, "studio") == SMALL
    for name, changes in DOMAINS.items():
        shifted = domain_settings(SMALL, name)
        differs = {k for k, v in shifted.to_dict().items() if v != SMALL.to_dict()[k]}
        assert differs == set(changes), name
        assert (shifted.classes, shifted.size, shifted.class_names) == (SMALL.classes, SMALL.size, SMALL.class_names)
    with pytest.raises(ValueError, match="unknown SynthFER domain 'night'; expected one of studio, identities"):
        domain_settings(SMALL, "night")


def light_gradient(image: Image.Image) -> float:
    """How much brighter one side of an image is than the other: |left − right| + |top − bottom| of the luma of
    8-pixel bands."""
    luma = grey_levels(image)
    return abs(luma[:, :8].mean() - luma[:, -8:].mean()) + abs(luma[:8].mean() - luma[-8:].mean())


def test_the_domains_shift_what_they_say():
    records = plan(SMALL)[:24]
    studio = [render(SMALL, r) for r in records]
    shifted = {name: [render(domain_settings(SMALL, name), r) for r in records]
               for name in ("lighting", "pose", "occluded", "style")}
    for name in ("lighting", "style"):  # the same faces, poses and masks, lit or coloured otherwise
        assert [meta for _, _, meta in shifted[name]] == [meta for _, _, meta in studio]
        assert all(not np.array_equal(np.asarray(a), np.asarray(b))
                   for (a, _, _), (b, _, _) in zip(shifted[name], studio))
    assert np.mean([light_gradient(i) for i, _, _ in shifted["lighting"]]) > \
        1.5 * np.mean([light_gradient(i) for i, _, _ in studio])
    assert all(np.ptp(np.asarray(i, float), axis=-1).max() <= 1 for i, _, _ in shifted["style"])
    rotation = {name: max(abs(m["rotation"]) for _, _, m in images)
                for name, images in {"studio": studio, "pose": shifted["pose"]}.items()}
    assert rotation["studio"] <= 5 < 10 < rotation["pose"]
    covered = {name: sum(m["occluder"] != "none" for _, _, m in images)
               for name, images in {"studio": studio, "occluded": shifted["occluded"]}.items()}
    assert covered["occluded"] >= 8 and covered["occluded"] > 2 * covered["studio"]


def test_the_identities_domain_draws_other_people_with_the_same_classes():
    other = domain_settings(SMALL, "identities")
    assert sample_identity(other, 0) != sample_identity(SMALL, 0)
    for split in ("train", "test"):
        counts = [Counter(r.true_label for r in plan(s) if r.split == split) for s in (SMALL, other)]
        assert counts[0] == counts[1]  # balanced per identity: the same number of each class
