"""Transforms, the PyTorch datasets and sampler, the decoded-image cache, and the command line."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from qcslib.__main__ import main
from qcslib.data.datasets import ImageDataset, QuadrupletDataset, decode_images
from qcslib.data.quadruplets import QuadrupletSampler, draw_quadruplets
from qcslib.data.sources import Split, load_split, read_image
from qcslib.data.transforms import RECIPES, build_transforms

CLASSES = ["neutral", "happy", "sad"]


@pytest.fixture
def root(tmp_path):
    """A list-format dataset (SynthFER's layout): 3 classes × 4 images of 40×40, each a different grey."""
    (tmp_path / "images").mkdir()
    lines = []
    for i in range(12):
        Image.new("RGB", (40, 40), (20 * i, 100, 200 - 10 * i)).save(tmp_path / f"images/{i}.png")
        lines.append(f"images/{i}.png {i % 3}")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(lines[:6]) + "\n")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return tmp_path


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_give_tensors_of_the_image_size(recipe):
    image = Image.new("RGB", (100, 90), (120, 60, 30))
    for train in (True, False):
        assert build_transforms(recipe, 48, train)(image).shape == (3, 48, 48)
    test = build_transforms(recipe, 48, train=False)
    torch.testing.assert_close(test(image), test(image))
    with pytest.raises(ValueError, match="recipe must be one of"):
        build_transforms("imagenet")


def test_each_image_of_a_quadruplet_gets_its_own_augmentation(root):
    split = load_split("list", root, "train")
    dataset = QuadrupletDataset(split, build_transforms("rafdb", 32, train=True))
    torch.manual_seed(0)
    a, p, n, n2, label, neg_label = dataset[(0, 0, 1, 1)]  # the same image twice: still two draws
    assert not torch.equal(a, p) and not torch.equal(n, n2)
    assert (label, neg_label) == (0, 1)


def test_loader_follows_the_sampler_across_epochs_and_workers(root):
    split = load_split("list", root, "train")
    sampler = QuadrupletSampler(split.labels, seed=3, negatives="balanced")
    loader = DataLoader(QuadrupletDataset(split, build_transforms("ferplus", 32, train=False)), batch_size=12,
                        sampler=sampler, num_workers=1, persistent_workers=True)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        a, p, n, n2, label, neg_label = next(iter(loader))
        quads = draw_quadruplets(split.labels, 3, epoch, negatives="balanced")
        assert a.shape == (12, 3, 32, 32)
        assert label.tolist() == split.labels[quads[:, 0]].tolist()
        assert neg_label.tolist() == split.labels[quads[:, 2]].tolist()
        expected = build_transforms("ferplus", 32, train=False)(read_image(split, int(quads[0, 3])))
        torch.testing.assert_close(n2[0], expected)


def test_image_dataset_and_cache_agree(root, tmp_path):
    split = load_split("list", root, "test")
    cache = decode_images(split, 40)
    assert cache.shape == (6, 40, 40, 3) and cache.dtype == np.uint8
    plain, cached = ImageDataset(split, build_transforms("rafdb", 40, False)), \
        ImageDataset(split, build_transforms("rafdb", 40, False), cache=cache)
    for i in range(len(split)):
        torch.testing.assert_close(plain[i][0], cached[i][0])
        assert plain[i][1] == cached[i][1] == split.labels[i]


def test_memmapped_cache_is_reused_only_for_the_same_images(root, tmp_path):
    split = load_split("list", root, "train")
    path = tmp_path / "cache.npy"
    first = decode_images(split, 16, path)
    stamp = path.stat().st_mtime_ns
    again = decode_images(split, 16, path)
    assert isinstance(again, np.memmap) and path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first, again)
    assert decode_images(split, 24, path).shape == (12, 24, 24, 3)  # another size: rebuilt
    with pytest.raises(ValueError, match="cache holds 12 images, the split 6"):
        ImageDataset(load_split("list", root, "test"), lambda x: x, cache=first)


def test_data_report_prints_json_and_lists_broken_images(root, capsys):
    (root / "images/5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(UserWarning, match="1"):
        assert main(["data-report", "--dataset", "list", "--root", str(root), "--split", "train"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == CLASSES and report["total"] == 11
    assert report["counts"] == {"neutral": 4, "happy": 4, "sad": 3}
    assert [s["path"].endswith("images/5.png") for s in report["skipped"]] == [True]


def test_data_report_on_a_missing_root_is_one_clear_error(tmp_path, capsys):
    assert main(["data-report", "--dataset", "rafdb", "--root", str(tmp_path / "RAF-DB")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(tmp_path / "RAF-DB") in err and "\n" not in err


def test_synthfer_command_generates_once_and_refuses_to_mix_settings(tmp_path, capsys):
    out = tmp_path / "synthfer"
    small = ["--train-identities", "2", "--val-identities", "1", "--test-identities", "1", "--images-per-identity", "7",
             "--workers", "1"]
    assert main(["synthfer", "--out", str(out), *small]) == 0
    listed = (out / "train.txt").read_text().splitlines()
    assert len(listed) == 14 and capsys.readouterr().out.strip() == str(out)
    stamp = (out / "train.txt").stat().st_mtime_ns
    assert main(["synthfer", "--out", str(out), *small]) == 0  # cached: nothing is rewritten
    assert (out / "train.txt").stat().st_mtime_ns == stamp
    assert main(["synthfer", "--out", str(out), *small, "--seed", "1"]) == 2
    assert str(out) in capsys.readouterr().err
    split = load_split("synthfer", out, "test")
    assert len(split) == 7 and split.classes == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]


def test_an_output_path_that_cannot_be_made_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "synthfer"
    assert main(["synthfer", "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m qcslib synthfer: error:") and str(tmp_path / "file") in err and "\n" not in err


def test_memmapped_cache_of_pixel_images_follows_the_pixels(tmp_path):
    def grey(value):
        return Split("ferplus", "test", tmp_path, CLASSES, np.array([0, 1]), None,
                     np.full((2, 48, 48), value, np.uint8), None)

    path = tmp_path / "cache.npy"
    assert decode_images(grey(10), 16, path)[0, 0, 0, 0] == 10
    assert decode_images(grey(200), 16, path)[0, 0, 0, 0] == 200  # same shape, other pixels: rebuilt
