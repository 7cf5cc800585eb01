"""Dataset manifests: every item's relative path, label and SHA-256, so that two copies of a dataset can be checked
to hold the same data.

A manifest is one JSON file::

    {"format": "qcs-fer manifest", "version": 1, "dataset": "rafdb", "hash": "sha256",
     "splits": {"train": {"classes": [...], "counts": {class: n}, "total": n, "excluded": {reason: n},
                          "unreadable": [{"path", "label", "reason"}],
                          "files": [{"path": "Image/aligned/train_00001_aligned.jpg", "label": "sad",
                                     "sha256": "64 hex digits"}, ...]}, ...}}

``path`` is relative to the dataset root (``/``-separated). FERPlus read from ``fer2013.csv`` has pixels, not
files: its items are named ``fer2013.csv:LINE`` (the row's line in fer2013.csv, the header being line 1) and hashed
as their 48 × 48 uint8 pixels, row-major (2,304 bytes); a copy in Microsoft's PNG folders is a different set of
bytes and has its own manifest. ``counts`` and ``total`` count ``files``; items listed by the dataset whose file
cannot be read are under ``unreadable``, not dropped. ``excluded`` is what the dataset's protocol left out.

Files are hashed with ``hashlib`` in a process pool (``workers`` processes, items sent in chunks); ``workers=1``
hashes in this process.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .sources import DataError, Split, load_split

FORMAT, VERSION = "qcs-fer manifest", 1
_HEX = re.compile(r"[0-9a-f]{64}")


class ManifestError(DataError):
    """A file that is not a valid manifest; the message names the file and what is wrong."""


def item_ids(split: Split) -> list[str]:
    """Each item's name in a manifest: its path relative to the split's root, or its ``names`` entry (pixels)."""
    if split.paths is None:
        return list(split.names)
    return [Path(os.path.relpath(p, split.root)).as_posix() for p in split.paths]


def sha256_file(path: str) -> tuple[str | None, str | None]:
    """``(hex digest, None)`` of the file's bytes, read in chunks; ``(None, reason)`` if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest(), None
    except FileNotFoundError:
        return None, "file not found"
    except OSError as e:
        return None, f"{type(e).__name__}: {e}".replace("\n", " ")


def hash_items(split: Split, workers: int | None = None) -> list[tuple[str | None, str | None]]:
    """``(sha256, None)`` or ``(None, reason)`` per item of ``split``, in order (see `hash_splits`)."""
    return hash_splits([split], workers)[0]


def hash_splits(splits: list[Split], workers: int | None = None) -> list[list[tuple[str | None, str | None]]]:
    """`hash_items` of each split: the files of all of them hashed by one pool of ``workers`` processes (default:
    all cores; 1 = in this process), sent in chunks of about a quarter of each worker's share (at most 256);
    pixel items hashed here (2,304 bytes each: a pool would cost more than it saves)."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    paths = [str(p) for s in splits if s.paths is not None for p in s.paths]
    if workers == 1 or len(paths) < 2:
        digests = iter([sha256_file(p) for p in paths])
    else:
        chunk = max(1, min(256, len(paths) // (4 * workers)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            digests = iter(list(pool.map(sha256_file, paths, chunksize=chunk)))
    return [[(hashlib.sha256(image.tobytes()).hexdigest(), None) for image in s.pixels] if s.paths is None
            else [next(digests) for _ in s.paths] for s in splits]


def manifest_split(split: Split, digests: list[tuple[str | None, str | None]]) -> dict:
    """One split's section of a manifest (see the module docstring), from its items' ``hash_items``."""
    files, unreadable = [], []
    for name, label, (digest, reason) in zip(item_ids(split), split.labels, digests):
        if digest is None:
            unreadable.append({"path": name, "label": split.classes[label], "reason": reason})
        else:
            files.append({"path": name, "label": split.classes[label], "sha256": digest})
    counts = Counter(f["label"] for f in files)
    return {"classes": list(split.classes), "counts": {c: counts[c] for c in split.classes}, "total": len(files),
            "excluded": dict(split.excluded), "unreadable": unreadable, "files": files}


def write_manifest(path: str | Path, splits: list[Split], digests: list[list]) -> dict:
    """Write the manifest of ``splits`` (one dataset; ``digests[i]`` = ``hash_items(splits[i])``) to ``path`` as
    JSON (its folder created) → the manifest."""
    datasets = {s.dataset for s in splits}
    if len(datasets) != 1:
        raise ValueError(f"a manifest covers one dataset; got {', '.join(sorted(datasets))}")
    manifest = {"format": FORMAT, "version": VERSION, "dataset": splits[0].dataset, "hash": "sha256",
                "splits": {s.split: manifest_split(s, d) for s, d in zip(splits, digests)}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dumps(manifest))
    return manifest


def _dumps(manifest: dict) -> str:
    """``manifest`` as indented JSON with one line per file entry, so that two manifests diff line by line."""
    marks = {f"\0files:{name}": section["files"] for name, section in manifest["splits"].items()}
    text = json.dumps({**manifest, "splits": {name: {**section, "files": f"\0files:{name}"}
                                              for name, section in manifest["splits"].items()}}, indent=1)
    for mark, files in marks.items():
        lines = ",\n".join(json.dumps(entry) for entry in files)
        text = text.replace(json.dumps(mark), f"[\n{lines}\n   ]" if files else "[]")
    return text + "\n"


def read_manifest(path: str | Path) -> dict:
    """The manifest in ``path``, checked: a one-line ``ManifestError`` naming the file and what is wrong if it is
    not one (not JSON, another format or version, a split or file entry of the wrong shape)."""
    path = Path(path)
    what = f"expected a {FORMAT} (JSON) as data-report --manifest writes"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found; {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # Recursion: nested too deep
        raise ManifestError(f"{path}: not a manifest ({type(e).__name__}: {e}); {what}".replace("\n", " ")) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a manifest (no \"format\": \"{FORMAT}\"); {what}")
    if manifest.get("version") != VERSION:
        raise ManifestError(f"{path}: manifest version {manifest.get('version')!r}; this qcslib reads version "
                            f"{VERSION}")
    if not isinstance(manifest.get("dataset"), str) or not isinstance(manifest.get("splits"), dict):
        raise ManifestError(f"{path}: \"dataset\" must be a name and \"splits\" an object; {what}")
    for name, section in manifest["splits"].items():
        _check_split(path, name, section)
    return manifest


def _check_split(path: Path, name: str, section) -> None:
    """A one-line ``ManifestError`` unless ``section`` is a split section with well-formed entries."""
    where = f"{path}: split {name!r}"
    if not isinstance(section, dict) or not isinstance(section.get("files"), list) \
            or not isinstance(section.get("unreadable", []), list):
        raise ManifestError(f"{where}: expected an object with a \"files\" list")
    for i, entry in enumerate(section["files"]):
        ok = (isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("label"), str)
              and isinstance(entry.get("sha256"), str) and _HEX.fullmatch(entry["sha256"]))
        if not ok:
            raise ManifestError(f"{where}: files[{i}] is {json.dumps(entry)[:80]}; expected {{\"path\", \"label\", "
                                f"\"sha256\": 64 lower-case hex digits}}")
    for i, entry in enumerate(section.get("unreadable", [])):
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)):
            raise ManifestError(f"{where}: unreadable[{i}] is {json.dumps(entry)[:80]}; expected {{\"path\", "
                                f"\"label\", \"reason\"}}")


def compare_split(section: dict, split: Split, digests: list[tuple[str | None, str | None]]) -> dict:
    """A copy's split (its items' ``hash_items``) against its manifest ``section`` → ``{"missing", "changed",
    "extra"}``: the manifest's files the copy lacks or cannot read (``{"path", "label", "reason"}``), the files
    whose label or content differs (``{"path", "differs", "manifest", "copy"}``) and the copy's items the manifest
    does not list (``{"path", "label", "sha256"}``, with a ``reason`` where unreadable). An item unreadable in both
    is no difference. A path listed more than once is compared listing by listing."""
    listed, copy = {}, {}
    for entry in section["files"]:
        listed.setdefault(entry["path"], []).append(entry)
    was_unreadable = {entry["path"] for entry in section.get("unreadable", [])}
    for name, label, (digest, reason) in zip(item_ids(split), split.labels, digests):
        copy.setdefault(name, []).append({"path": name, "label": split.classes[label], "sha256": digest,
                                          "reason": reason})
    missing, changed, extra = [], [], []
    for name in list(listed) + [n for n in copy if n not in listed]:
        ours, theirs = listed.get(name, []), copy.get(name, [])
        for i in range(max(len(ours), len(theirs))):
            m, c = (ours[i] if i < len(ours) else None), (theirs[i] if i < len(theirs) else None)
            if c is None or (m is not None and c["sha256"] is None):
                missing.append({"path": name, "label": m["label"],
                                "reason": "not listed in the copy" if c is None else c["reason"]})
            elif m is None:
                if c["sha256"] is None and name in was_unreadable:
                    continue
                extra.append({k: v for k, v in c.items() if v is not None or k == "sha256"})
            elif differs := [k for k in ("label", "sha256") if m[k] != c[k]]:
                changed.append({"path": name, "differs": differs, "manifest": {k: m[k] for k in ("label", "sha256")},
                                "copy": {k: c[k] for k in ("label", "sha256")}})
    return {"missing": missing, "changed": changed, "extra": extra}


def verify_manifest(path: str | Path, dataset: str, root: str | Path, splits: list[str] | None = None,
                    workers: int | None = None) -> dict:
    """Check the copy of ``dataset`` under ``root`` against the manifest in ``path``: each of its splits (or those
    in ``splits``) loaded, hashed and compared (`compare_split`) → ``{"manifest", "dataset", "root", "identical",
    "splits": {name: {"files", "missing", "changed", "extra"}}}``. A bad manifest, another dataset's, or a split it
    does not hold is a one-line ``ManifestError``."""
    manifest = read_manifest(path)
    if manifest["dataset"] != dataset:
        raise ManifestError(f"{path}: a manifest of {manifest['dataset']!r}, not of {dataset!r}")
    names = list(manifest["splits"]) if splits is None else list(dict.fromkeys(splits))
    if absent := [s for s in names if s not in manifest["splits"]]:
        raise ManifestError(f"{path}: holds no split {', '.join(absent)}; it holds "
                            f"{', '.join(manifest['splits']) or 'none'}")
    splits = [load_split(dataset, root, name) for name in names]
    results = {}
    for name, split, digests in zip(names, splits, hash_splits(splits, workers)):
        section = manifest["splits"][name]
        results[name] = {"files": len(section["files"]), **compare_split(section, split, digests)}
    identical = not any(r[k] for r in results.values() for k in ("missing", "changed", "extra"))
    return {"manifest": str(path), "dataset": dataset, "root": str(Path(root).expanduser().resolve()),
            "identical": identical, "splits": results}
