"""Faces in real photos: MTCNN on scikit-image's astronaut, alignment to the templates, and the predict command."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import qcslib.faces
from qcslib.__main__ import main
from qcslib.faces import TEMPLATES, Face, FaceDetector, align

CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_one_face_with_landmarks_inside_its_box(astronaut, detector):
    faces = detector.detect(astronaut)
    assert len(faces) == 1 and faces[0].probability > 0.99
    (x0, y0, x1, y1), points = faces[0].box, faces[0].landmarks
    assert points.shape == (5, 2) and points.dtype == np.float64
    assert ((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)).all()
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left eye, left mouth corner: image left
    assert detector.detect(Image.new("RGB", (160, 160), (90, 140, 200))) == []


def test_detecting_on_a_shrunk_copy_finds_the_same_face_in_photo_pixels(astronaut, detector):
    wide = Image.new("RGB", (700, 512), (110, 110, 110))
    wide.paste(astronaut, (150, 0))  # not square, and the face off-centre: both axes are scaled back
    full = detector.detect(wide)[0]
    shrunk = FaceDetector(max_side=300).detect(wide)[0]
    width = full.box[2] - full.box[0]
    np.testing.assert_allclose(shrunk.box, full.box, atol=0.08 * width)
    np.testing.assert_allclose(shrunk.landmarks, full.landmarks, atol=0.04 * width)
    assert abs(full.box[0] - (150 + detector.detect(astronaut)[0].box[0])) < 1  # where the paste put it
    with pytest.raises(ValueError, match="max_side must be None \\(full size\\) or at least 32 pixels, got 8"):
        FaceDetector(max_side=8)


@pytest.mark.parametrize("template, size", [("rafdb", 100), ("synthfer", 112), ("rafdb", 64)])
def test_the_aligned_crop_puts_the_landmarks_on_the_template(astronaut, detector, template, size):
    face = detector.detect(astronaut)[0]
    crop = align(astronaut, face.landmarks, template, size)
    assert crop.size == (size, size) and crop.mode == "RGB"
    # the same transform, applied to the landmarks: they land on the template within a few % of the side
    again = detector.detect(crop.resize((224, 224)))
    assert len(again) == 1
    np.testing.assert_allclose(again[0].landmarks / 224, TEMPLATES[template], atol=0.06)


def test_align_rejects_an_unknown_template(astronaut, detector):
    with pytest.raises(ValueError, match="template must be one of rafdb, synthfer"):
        align(astronaut, detector.detect(astronaut)[0].landmarks, "affectnet")


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint[0]


def test_predict_goes_on_past_bad_files_and_reports_each(tmp_path, astronaut, checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut.save(photos / "astronaut.jpg")
    Image.new("RGB", (120, 120), (90, 140, 200)).save(photos / "flat.png")
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "qcslib", "predict", str(photos), str(tmp_path / "empty"),
                             "--checkpoint", str(checkpoint), "--json", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # some files had no face or could not be read
    records = {r["file"].split("/")[-1]: r for r in json.loads(result.stdout)}
    face = records["astronaut.jpg"]
    assert set(face) == {"file", "face", "box", "landmarks", "probabilities", "label"}
    assert list(face["probabilities"]) == CLASSES and sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert records["flat.png"] == {"file": str(photos / "flat.png"), "error": "no face found"}
    assert records["corrupt.jpg"]["error"].startswith("cannot read the image")
    assert records["empty"]["error"].startswith("empty folder")
    assert (out / "predictions.csv").exists() and json.loads((out / "predictions.json").read_text())
    assert [p.name for p in out.glob("*_faces.png")] == ["000_astronaut_faces.png"]


def test_an_official_checkpoint_needs_its_class_order(tmp_path, astronaut, capsys):
    from tests.official_reference import random_official_state_dict, write_official_checkpoint
    path = tmp_path / "official.pth"
    write_official_checkpoint(path, random_official_state_dict("qcs", 7))
    astronaut.save(tmp_path / "a.png")
    command = ["predict", str(tmp_path / "a.png"), "--checkpoint", str(path)]  # in this process: the test above
    assert main(command) == 2                                                  # runs predict end to end
    assert "--classes/trained_on rafdb|ferplus|affectnet7|affectnet8" in capsys.readouterr().err
    assert main(command + ["--classes", "rafdb", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)[0]["probabilities"]) == ["surprise", "fear", "disgust", "happy",
                                                                             "sad", "anger", "neutral"]


def test_classes_that_contradict_the_checkpoints_own_are_refused(tmp_path, checkpoint):
    from qcslib.faces import load_predictor
    from qcslib.models.weights import CheckpointError
    with pytest.raises(CheckpointError, match=r"stores its classes \(neutral, happy, .*not rafdb's "
                                              r"\(surprise, fear"):
        load_predictor(checkpoint, "rafdb")
    assert load_predictor(checkpoint).classes == CLASSES


class TemplateDetector:
    """Finds one face in every photo, its landmarks where SynthFER's template puts them (no MTCNN)."""

    def detect(self, image):
        from qcslib.faces import Face
        side = np.array(image.size)
        return [Face(np.array([0, 0, *side], dtype=float), TEMPLATES["synthfer"] * side, 0.99)]


def test_predict_photos_gives_each_face_its_crop_and_lists_the_failures(tmp_path, checkpoint):
    from qcslib.faces import load_predictor, predict_photos
    Image.new("RGB", (80, 80), (200, 150, 120)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    photos = predict_photos(load_predictor(checkpoint), [tmp_path, tmp_path / "missing.png"], TemplateDetector())
    assert [p.name for p in photos.files] == ["a.png", "b.jpg"]
    assert [(r["file"], r["face"]) for r in photos.faces] == [(str(tmp_path / "a.png"), 0)]
    assert [r["file"] for r in photos.failures] == [str(tmp_path / "missing.png"), str(tmp_path / "b.jpg")]
    assert len(photos.crops) == 1 and photos.crops[0].size == (64, 64)  # what the model read, at its image size


class WholePhotoFace:
    """A stand-in detector (no MTCNN): one face in every photo, the whole photo, its landmarks on SynthFER's
    template."""

    def detect(self, image, frame=None):
        side = np.array(image.size, dtype=float)
        return [Face(np.concatenate([[0.0, 0.0], side]), TEMPLATES["synthfer"] * side, 0.99)]


def test_a_possible_decompression_bomb_is_a_failed_file_and_the_others_go_on(tmp_path, checkpoint, monkeypatch,
                                                                            capsys):
    monkeypatch.setattr(qcslib.faces, "FaceDetector", WholePhotoFace)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # PIL warns above it, and raises above twice it
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 64), (200, 150, 120)).save(photos / "a_small.png")
    Image.new("RGB", (80, 80)).save(photos / "b_warned.png")  # 6,400 pixels: PIL's DecompressionBombWarning
    Image.new("RGB", (120, 120)).save(photos / "c_bomb.png")  # 14,400 pixels: PIL's DecompressionBombError
    code = main(["predict", str(photos), "--checkpoint", str(checkpoint), "--json", "--out", str(tmp_path / "out")])
    assert code == 1
    records = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert set(records) == {"a_small.png", "b_warned.png", "c_bomb.png"} and "label" in records["a_small.png"]
    for name, pixels in [("b_warned.png", 6400), ("c_bomb.png", 14400)]:
        assert records[name]["error"].startswith(f"cannot read the image: Image size ({pixels} pixels) exceeds")
