"""Faces in photos: MTCNN detection (facenet-pytorch; its weights ship inside its wheel, so it works offline) and a
5-point similarity alignment to the crop geometry a model was trained on.

A model reads faces framed the way its training crops were; a photo cropped any other way collapses its
predictions onto one or two classes. ``TEMPLATES`` holds, once, where the five landmarks (left eye, right eye,
nose tip, left and right mouth corner; "left" = image left) sit in a training crop, as fractions of its side:

- ``rafdb``: RAF-DB's aligned 100 × 100 crops. RAF-DB does not publish its template; this is the widely used
  112 × 112 five-point template of ArcFace (insightface), divided by 112 — an approximation of RAF-DB's framing,
  not checked against its images here.
- ``synthfer``: SynthFER's own frame, from its generator: the face centre at (0.5, 0.53) of the image, one face
  unit = 0.32 of the side, eyes at (±0.37, −0.15), nose tip (0, 0.23), mouth corners (±0.28, 0.60) face units (the
  means of the identity ranges in ``synthfer.sample_identity``).

``align`` finds the similarity transform (rotation, uniform scale, shift; least squares, scikit-image) taking the
detected landmarks onto the template scaled to the crop size, and resamples the photo through it.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw
from skimage.transform import SimilarityTransform

from .confidence import tempered
from .data.sources import checkpoint_classes
from .data.transforms import build_transforms, recipe_for
from .models.weights import load_checkpoint

_ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]])
_SYNTHFER_UNITS = np.array([[-0.37, -0.15], [0.37, -0.15], [0.0, 0.23], [-0.28, 0.60], [0.28, 0.60]])
TEMPLATES = {
    "rafdb": _ARCFACE_112 / 112,
    "synthfer": np.array([0.5, 0.53]) + 0.32 * _SYNTHFER_UNITS,
}


@dataclass
class Face:
    """One detected face: box (x0, y0, x1, y1), 5 landmarks (x, y) in photo pixels, detector probability."""

    box: np.ndarray
    landmarks: np.ndarray
    probability: float


class FaceDetector:
    """MTCNN (facenet-pytorch) on CPU by default; ``detect(image) -> list[Face]``, best first. (``frame``, a
    video frame's index, which ``predict_video`` passes every detector, is not needed here.)

    ``max_side``: detect on a copy shrunk (bilinear) so that its longer side is at most this many pixels, and
    scale the boxes and landmarks back. MTCNN's first stage scans an image pyramid down from faces of 20 pixels,
    so its cost grows with the image's area; on a frame shrunk by half, the smallest face it finds is 40 pixels
    of the frame. None: the image as it is."""

    def __init__(self, device: str = "cpu", min_probability: float = 0.9, max_side: int | None = None):
        from facenet_pytorch import MTCNN  # installed with --no-deps: its metadata pins an old torch and numpy
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be None (full size) or at least 32 pixels, got {max_side}")
        self.mtcnn = MTCNN(keep_all=True, device=device)
        self.min_probability, self.max_side = min_probability, max_side

    def detect(self, image: Image.Image, frame: int | None = None) -> list[Face]:
        photo = image.convert("RGB")
        if self.max_side and max(photo.size) > self.max_side:
            shrink = self.max_side / max(photo.size)
            photo = photo.resize((round(photo.width * shrink), round(photo.height * shrink)),
                                 Image.Resampling.BILINEAR)
        scale = np.array(photo.size) / np.array(image.size)  # (x, y): shrunk pixels per photo pixel
        boxes, probs, points = self.mtcnn.detect(photo, landmarks=True)
        if boxes is None:
            return []
        # under numpy 2, MTCNN hands back object arrays: make them float
        boxes, probs, points = (np.asarray(a, dtype=np.float64) for a in (boxes, probs, points))
        boxes, points = boxes / np.tile(scale, 2), points / scale
        faces = [Face(b, p, float(q)) for b, p, q in zip(boxes, points, probs) if q >= self.min_probability]
        return sorted(faces, key=lambda f: -f.probability)


def align(image: Image.Image, landmarks: np.ndarray, template: str = "rafdb", size: int = 100) -> Image.Image:
    """The ``size`` × ``size`` crop that puts ``landmarks`` (5 × 2, photo pixels) on ``TEMPLATES[template]``."""
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {', '.join(TEMPLATES)}, got {template!r}")
    target = TEMPLATES[template] * size
    transform = SimilarityTransform.from_estimate(np.asarray(landmarks, dtype=np.float64), target)
    if not transform:
        raise ValueError(f"cannot fit a similarity transform to the landmarks {np.asarray(landmarks).tolist()}")
    inverse = np.linalg.inv(transform.params)  # crop pixel → photo pixel, what PIL's AFFINE wants
    return image.convert("RGB").transform((size, size), Image.Transform.AFFINE, inverse[:2].ravel(),
                                          resample=Image.Resampling.BILINEAR)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def image_files(paths) -> tuple[list[Path], list[dict]]:
    """Files to read: each file given, and each folder's images (sorted). → (files, error records)."""
    files, errors = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            if not found:
                errors.append({"file": str(path), "error": f"empty folder: no {'/'.join(IMAGE_SUFFIXES)} files"})
        elif path.is_file():
            files.append(path)
        else:
            errors.append({"file": str(path), "error": "not found"})
    return files, errors


@dataclass
class Predictor:
    """A checkpoint made ready for photos: the model (``Tempered`` when the checkpoint stores a temperature, so its
    softmax is the calibrated probabilities), its class names, the template of its training crops and the
    transform recipe of its training data."""

    model: object
    classes: list[str]
    template: str
    recipe: str


def load_predictor(checkpoint, classes: str | None = None) -> Predictor:
    """Load ``checkpoint`` (ours, or an official one, which stores no class names: then ``classes`` names the
    dataset whose label order it uses; ``checkpoint_classes``) → a Predictor. SynthFER models read SynthFER-framed
    crops; every other model RAF-DB-framed ones."""
    model, report = load_checkpoint(checkpoint)
    names = checkpoint_classes(report, classes or None)
    template = "synthfer" if report.meta.get("dataset") == "synthfer" else "rafdb"
    return Predictor(tempered(model, report.meta), names, template, recipe_for(classes, report.meta))


def classify(model, crops: torch.Tensor) -> np.ndarray:
    """``softmax(model(crops))`` (crops N × 3 × S × S, on any device) computed on the device of ``model``'s
    parameters → N × classes, on the CPU."""
    with torch.inference_mode():
        return torch.softmax(model(crops.to(next(model.parameters()).device)), dim=1).cpu().numpy()


def predict_faces(model, files, classes, template: str, detector: FaceDetector | None = None,
                  recipe: str = "rafdb") -> tuple[list[dict], dict[str, tuple[Image.Image, list[Face]]]]:
    """Every face of every file → records ``{file, face, box, landmarks, probabilities, label}`` (faces best first),
    and ``{file: (photo, faces)}`` for annotating; a file that cannot be read, has more pixels than PIL's
    ``Image.MAX_IMAGE_PIXELS`` (a possible decompression bomb) or has no face gives ``{file, error}`` and the
    others go on."""
    detector = detector or FaceDetector()
    size = model.config.image_size
    transform = build_transforms(recipe, size, train=False)
    records, found = [], {}
    model.eval()
    for file in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(file) as photo:
                    photo = photo.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            records.append({"file": str(file), "error": f"cannot read the image: {e}"})
            continue
        faces = detector.detect(photo)
        if not faces:
            records.append({"file": str(file), "error": "no face found"})
            continue
        crops = torch.stack([transform(align(photo, f.landmarks, template, size)) for f in faces])
        probabilities = classify(model, crops)
        for i, (face, p) in enumerate(zip(faces, probabilities)):
            records.append({"file": str(file), "face": i, "box": [round(float(v), 1) for v in face.box],
                            "landmarks": [[round(float(v), 1) for v in xy] for xy in face.landmarks],
                            "probabilities": {c: round(float(q), 4) for c, q in zip(classes, p)},
                            "label": classes[int(p.argmax())]})
        found[str(file)] = (photo, faces)
    return records, found


@dataclass
class PhotoPredictions:
    """What ``predict_photos`` found: the files it read, one record per face (``predict_faces``'), the failures
    (a path that is not there, an unreadable file, a photo without a face: ``{file, error}``), and each face's
    aligned crop, the image the model read."""

    files: list[Path]
    faces: list[dict]
    failures: list[dict]
    crops: list[Image.Image]


def predict_photos(predictor: Predictor, paths, detector: FaceDetector | None = None) -> PhotoPredictions:
    """Detect, align and classify every face in ``paths`` (files or folders) with ``predictor``."""
    files, errors = image_files(paths)
    records, found = predict_faces(predictor.model, files, predictor.classes, predictor.template, detector,
                                   predictor.recipe)
    faces = [r for r in records if "face" in r]
    size = predictor.model.config.image_size
    crops = [align(found[r["file"]][0], found[r["file"]][1][r["face"]].landmarks, predictor.template, size)
             for r in faces]
    return PhotoPredictions(files, faces, errors + [r for r in records if "error" in r], crops)


def annotate(photo: Image.Image, faces: list[Face], records: list[dict]) -> Image.Image:
    """The photo with each face's box, landmarks, top label and its probability drawn on it."""
    out = photo.copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 250))
    for face, record in zip(faces, records):
        x0, y0, x1, y1 = face.box
        draw.rectangle((x0, y0, x1, y1), outline=(255, 40, 40), width=width)
        for x, y in face.landmarks:
            draw.ellipse((x - width, y - width, x + width, y + width), fill=(40, 255, 40))
        label = record["label"]
        draw.text((x0, max(0, y0 - 12)), f"{label} {record['probabilities'][label]:.2f}", fill=(255, 255, 0))
    return out


def write_predictions(records: list[dict], found: dict, out: str | Path) -> None:
    """``out/predictions.json`` (the records), ``out/predictions.csv`` (one row per face or failed file) and
    ``out/<name>_faces.png`` (each photo with its faces annotated)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(records, indent=1))
    rows = [{k: v for k, v in r.items() if k not in ("probabilities", "landmarks", "box")}
            | {f"p_{c}": p for c, p in r.get("probabilities", {}).items()} for r in records]
    pd.DataFrame(rows).to_csv(out / "predictions.csv", index=False)
    for i, (file, (photo, faces)) in enumerate(found.items()):
        faces_records = [r for r in records if r["file"] == file and "face" in r]
        annotate(photo, faces, faces_records).save(out / f"{i:03d}_{Path(file).stem}_faces.png")
