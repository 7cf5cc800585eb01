"""The SynthFER dataset on disk: :func:`generate`, the PNG writer and the cache check.

The layout :func:`generate` writes (paths relative to ``out``)::

    images/<split>/<id>_<n>.png   RGB, size × size; split: train | val | test
    masks/<split>/<id>_<n>.png    L, 0/255: areas of the AUs at or above mask_threshold, posed like the face
                                  (occluders are not cut out: meta's ``occluded`` is the covered fraction)
    train.txt, val.txt, test.txt  "<image path> <label>" per line (train and val labels after label noise)
    classes.txt                   class names in label order
    meta.csv                      one row per image: labels, AU intensities, attribute, nuisances, mask path
    settings.json                 the settings and generator version; written last, it marks completion
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .face import Identity, sample_identity
from .render import render
from .settings import ADDED_SETTINGS, AUS, SPLIT_ORDER, VERSION, Record, SynthFERSettings, plan


def write_png(path: str, image: Image.Image) -> None:
    """A PNG with the 'Up' filter and run-length deflate: about three times as fast as Pillow's encoder on
    noisy images (which tries every filter on every row), for files about 5 % larger. Lossless."""
    pixels = np.asarray(image)  # (H, W, 3) or (H, W) uint8
    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0  # RGB or grey
    rows = pixels.reshape(height, -1)  # (H, W × channels)
    up = np.concatenate([rows[:1], rows[1:] - rows[:-1]])  # uint8 wraps around, as PNG's filter 2 wants
    data = np.concatenate([np.full((height, 1), 2, np.uint8), up], 1).tobytes()  # each row: filter byte, row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    body = deflate.compress(data) + deflate.flush()
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


META_COLUMNS = (["path", "split", "identity", "label", "true_label", "noisy"] + [f"au{au:02d}" for au in AUS]
                + ["side", "attribute", "bias_conflicting", "mask", "rotation", "scale", "occluder", "occluded",
                   "expressiveness", "glasses", "beard"])
PARTIAL_MARK = ".synthfer-partial"


def _render_chunk(job: tuple[str, SynthFERSettings, list[Record]]) -> list[dict]:
    """Render and write the records of one job ``(root, settings, records)``; their meta.csv rows."""
    root, settings, records = job
    identities: dict[int, Identity] = {}
    rows = []
    for record in records:
        if record.identity not in identities:
            identities[record.identity] = sample_identity(settings, record.identity)
        image, mask, meta = render(settings, record, identities[record.identity])
        path, mask_path = f"images/{record.split}/{record.name}", f"masks/{record.split}/{record.name}"
        write_png(os.path.join(root, path), image)
        write_png(os.path.join(root, mask_path), mask)
        rows.append({"path": path, "split": record.split, "identity": record.identity, "label": record.label,
                     "true_label": record.true_label, "noisy": int(record.label != record.true_label), **meta,
                     "attribute": record.attribute, "bias_conflicting": int(record.bias_conflicting),
                     "mask": mask_path})
    return rows


def _stored_settings(settings: SynthFERSettings) -> dict:
    """settings.json's content: the generator version and every setting."""
    return {"version": VERSION, **settings.to_dict()}


def _check_existing(out: Path, settings: SynthFERSettings) -> bool:
    """True if ``out`` already holds this dataset; False if it is absent or empty; else ValueError."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise ValueError(f"SynthFER output {out} exists and is not a directory")
    marker = out / "settings.json"
    if not marker.exists():
        if any(out.iterdir()):
            raise ValueError(f"SynthFER output {out} is not empty and holds no settings.json, so it is not a "
                             f"complete SynthFER dataset; choose a new or empty directory")
        return False
    try:
        stored = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{marker} is not readable JSON ({error}); delete {out} to regenerate") from error
    if not isinstance(stored, dict):
        raise ValueError(f"{marker} holds a JSON {type(stored).__name__}, not the object of settings SynthFER "
                         f"writes; delete {out} to regenerate")
    stored = {**ADDED_SETTINGS, **stored}  # a dataset made before a setting existed was drawn at its default
    wanted = _stored_settings(settings)
    diff = [f"{key}: {stored.get(key, '<missing>')!r} there, {wanted.get(key, '<missing>')!r} asked"
            for key in sorted(set(stored) | set(wanted)) if stored.get(key) != wanted.get(key)]
    if diff:
        raise ValueError(f"{out} holds a SynthFER dataset made with other settings ({'; '.join(diff)}); "
                         f"choose another directory or delete it")
    return True


def generate(out: str | Path, settings: SynthFERSettings = SynthFERSettings(), workers: int | None = None) -> Path:
    """Write the dataset to ``out`` and return ``out``; do nothing if it is already there.

    The images are drawn into a sibling ``.<name>.partial`` directory, which is renamed to ``out`` once
    ``settings.json`` is written, so ``out`` is either complete or absent. An existing ``out`` made with
    other settings (or by another generator version) is a ValueError naming the differences.
    """
    out = Path(out)
    if _check_existing(out, settings):
        return out
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        if not (tmp / PARTIAL_MARK).exists():
            raise ValueError(f"{tmp} exists but was not made by SynthFER; remove it to generate {out}")
        shutil.rmtree(tmp)
    for kind in ("images", "masks"):
        for split in SPLIT_ORDER:
            (tmp / kind / split).mkdir(parents=True)
    (tmp / PARTIAL_MARK).touch()

    records = plan(settings)
    per_job = max(1, min(64, len(records) // (4 * workers)))  # several jobs per worker, at most 64 images each
    jobs = [(str(tmp), settings, records[i: i + per_job]) for i in range(0, len(records), per_job)]
    if workers == 1:
        rows = [row for chunk_rows in map(_render_chunk, jobs) for row in chunk_rows]
    else:
        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            rows = [row for chunk_rows in pool.imap(_render_chunk, jobs) for row in chunk_rows]

    for split in SPLIT_ORDER:
        lines = [f"{row['path']} {row['label']}\n" for row in rows if row["split"] == split]
        (tmp / f"{split}.txt").write_text("".join(lines))
    (tmp / "classes.txt").write_text("".join(f"{name}\n" for name in settings.class_names))
    with open(tmp / "meta.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=META_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (tmp / PARTIAL_MARK).unlink()
    (tmp / "settings.json").write_text(json.dumps(_stored_settings(settings), indent=2) + "\n")
    if out.exists():
        out.rmdir()  # _check_existing allowed only an empty directory
    tmp.rename(out)
    return out
