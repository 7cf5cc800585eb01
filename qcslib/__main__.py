"""``python -m qcslib COMMAND``: one command line for the project.

- ``synthfer --out DIR [--seed S] [--size N] ...``: generate SynthFER (cached: same settings, no work)
- ``synthfer-video --out DIR [--clips N] [--seed S] [--fps F] [--seconds T] [--size PX]``: SynthFER clips
  (``clipNNN.mp4``) of one identity moving through expressions, each frame's truth in ``clipNNN.csv``; prints JSON
- ``data-report --dataset NAME --root DIR [--split train|val|test|all ...] [--manifest FILE | --verify FILE]
  [--workers N]``: open and hash every image of a split and print one JSON object with the class counts, what
  was excluded or skipped and why, the published counts and how the split deviates from them (a warning on
  stderr per split that does), and images with the same content (several splits: one object per split name);
  ``--manifest`` also writes every file's path, label and SHA-256; ``--verify`` checks a copy against a manifest
  instead and prints what is missing, changed or extra (exit 1 if anything is)
- ``train --profile NAME [--set key=value ...] [--run-dir DIR] [--resume PATH] [--overwrite]``: train
  (``torchrun --nproc-per-node N -m qcslib train ...`` for DDP) into ``<runs_dir>/<name>``, or with ``--resume``
  the folder of the last.pt it resumes, unless ``--run-dir``; prints the run's summary JSON
- ``distill --teacher CKPT [--student NAME] [--profile P] [--set key=value ...] [--temperature T] [--alpha A]
  [--beta B] [--teacher-online] [--run-dir DIR] [--resume PATH] [--overwrite]``: train a timm student (default
  resnet10t, from scratch) on the profile's data and recipe with KD from a QCS checkpoint (the run is
  ``<runs_dir>/<name>-<student>``, or with ``--resume`` the folder of the last.pt it resumes, unless ``--run-dir``;
  ``torchrun --nproc-per-node N -m qcslib distill ...`` for DDP); prints the run's summary JSON
- ``evaluate --checkpoint PATH --dataset NAME --root DIR [--split test] [--trained-on DATASET]``: metrics of a
  checkpoint (ours or the authors' official release) on a split of its own dataset or another, as JSON; classes
  are matched by name and only the shared ones are scored; ``ece`` is the calibration error of the probabilities
  ``predict`` gives (divided by a stored temperature)
- ``calibrate --checkpoint PATH [--dataset NAME --root DIR] [--split val] [--report-split test] [--dry-run]``: fit
  a temperature on a split (default: the checkpoint's val split) and store it in the checkpoint
  (``qcslib.confidence``); prints JSON with the ECE and NLL before and after, on that split and on the report
  split. ``predict``, ``export`` and notebooks 03 and 10 apply a stored temperature
- ``predict PATH... --checkpoint CKPT [--classes DATASET] [--json] [--out DIR [--overwrite]]``: detect, align and
  classify every face in images or folders (an ``--out`` that holds earlier predictions is refused unless
  ``--overwrite``, which deletes them first); ``--json`` prints one list of records, a face's
  ``{file, face, box, landmarks, probabilities, label}`` or a failed file's ``{file, error}``; videos (by suffix)
  and ``--camera N`` go through ``qcslib.video`` (``--every K --detect-side N --smooth TAU --hysteresis M --start S
  --end S``, ``--out`` needed)
- ``export --checkpoint PATH --format onnx|torchscript [--out PATH]``: the base branch with a dynamic batch,
  checked against PyTorch (max |Δ| ≤ 1e-4); prints JSON. ``--int8 [auto|dynamic|static]`` (onnx only) also
  quantises it (``qcslib.export.export_int8``; auto: static for a student, dynamic for QCS; static: calibrated
  on ``--calibration N`` train images of the checkpoint's training data, or ``--dataset NAME --data-root DIR``),
  and prints its top-1 agreement with fp32 and the accuracy difference on the test split (or on
  ``--test-images N`` of its images, drawn at random with seed 0)

Exit codes: 0 done; 1 training stopped on a non-finite loss, an export failed its check, (predict) some
file had no face or could not be read, or a video could not be opened or stopped early (its frames before that
are written) — the other files are still processed — or (data-report --verify) the
copy differs from the manifest; 2 bad input (the message says
what and where; predict: also a --start/--end outside a video, checked before any work); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .confidence import calibrate
from .data.manifest import hash_splits, item_ids, verify_manifest, write_manifest
from .data.report import data_report, deviation_warning
from .data.sources import DATASET_CLASSES, DATASETS, DataError, available_splits, load_split, verify_images
from .data.synthfer import SynthFERSettings, generate
from .data.synthfer.video import ClipSettings, write_clips
from .faces import FaceDetector, image_files, load_predictor, predict_faces, write_predictions
from .models.student import DEFAULT_STUDENT
from .models.weights import CheckpointError
from .export import ExportError, export, export_int8
from .train import distill, fit, load_profile
from .train.evaluation import evaluate_checkpoint
from .train.loop import TrainingError
from .video import (DETECT_SIDE, EVERY, VIDEO_OUTPUTS, VIDEO_SUFFIXES, Camera, FrameSource, VideoError, VideoFile,
                    check_options, predict_video)


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(SynthFERSettings):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=f"default {f.default}")


def _predict(args) -> int:
    videos = [p for p in args.paths if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    photos = [p for p in args.paths if p not in videos]
    if (videos or args.camera is not None) and not args.out:
        raise ValueError("videos and --camera write their predictions, annotated video and timeline to --out DIR: "
                         "pass --out")
    if videos or args.camera is not None:
        check_options(args.every, args.smooth, args.hysteresis)
        if args.detect_side < 0 or 0 < args.detect_side < 32:
            raise ValueError(f"--detect-side must be 0 (full size) or at least 32 pixels, got {args.detect_side}")
    out = Path(args.out) if args.out else None
    earlier = _earlier_predictions(out) if out else []
    if earlier and not args.overwrite:
        shown = ", ".join(str(path.relative_to(args.out)) for path in earlier[:3]) + ("…" if len(earlier) > 3 else "")
        raise ValueError(f"--out {args.out} already holds predictions ({shown}): pass --overwrite to replace them "
                         f"(they are deleted first), or choose another --out")
    sources, failed = _open_sources(videos, args)
    p = load_predictor(args.checkpoint, args.classes)
    for path in earlier:
        path.unlink()
    for folder in {path.parent for path in earlier} - {out}:
        if not any(folder.iterdir()):
            folder.rmdir()
    if photos:
        files, errors = image_files(photos)
        records, found = predict_faces(p.model, files, p.classes, p.template, recipe=p.recipe)
        records = errors + records
        if args.out:
            write_predictions(records, found, args.out)
        if args.json:
            print(json.dumps(records))
        else:
            for r in records:
                print(f"{r['file']}: {r['error']}" if "error" in r else
                      f"{r['file']} face {r['face']}: {r['label']} ({r['probabilities'][r['label']]:.2f})")
        failed = failed or any("error" in r for r in records)
    return int(_predict_videos(p, sources, args) or failed)


def _earlier_predictions(out: Path) -> list[Path]:
    """What an earlier ``predict`` wrote into ``out``: the photos' ``predictions.json``, ``predictions.csv`` and
    ``NNN_<name>_faces.png``, and the files of each video's folder (a folder holding ``predictions.jsonl``)."""
    if not out.is_dir():
        return []
    found = [out / name for name in ("predictions.json", "predictions.csv") if (out / name).is_file()]
    found += sorted(out.glob("[0-9][0-9][0-9]_*_faces.png"))
    for folder in sorted(path for path in out.iterdir() if (path / "predictions.jsonl").is_file()):
        found += [folder / name for name in VIDEO_OUTPUTS if (folder / name).is_file()]
    return found


def _open_sources(videos: list[str], args) -> tuple[list[tuple[str, FrameSource]], bool]:
    """Each video (and the camera), opened before any work, with its folder under ``--out``; one that cannot be
    opened is reported and left out. → (sources, whether any was left out). A ``--start``/``--end`` outside a
    video raises ValueError (bad input: nothing has been done yet)."""
    openers = [(f"{i:03d}_{Path(v).stem}", lambda v=v: VideoFile(v, args.start, args.end))
               for i, v in enumerate(videos)]
    if args.camera is not None:
        openers.append((f"camera{args.camera}", lambda: Camera(args.camera, args.end)))
    sources, failed = [], False
    for folder, open_source in openers:
        try:
            sources.append((folder, open_source()))
        except VideoError as e:
            print(f"python -m qcslib predict: error: {e}", file=sys.stderr)
            failed = True
    return sources, failed


def _predict_videos(predictor, sources: list[tuple[str, FrameSource]], args) -> bool:
    """Each source into its own folder under ``--out``; a summary line (or JSON object) each. → whether any
    stopped early (its frames before that are still written)."""
    detector = FaceDetector(max_side=args.detect_side or None) if sources else None
    failed = False
    for folder, source in sources:
        summary = predict_video(predictor, source, Path(args.out) / folder, detector, every=args.every,
                                smooth=args.smooth, hysteresis=args.hysteresis)
        if summary["error"]:
            print(f"python -m qcslib predict: error: {summary['error']}", file=sys.stderr)
            failed = True
        print(json.dumps(summary) if args.json else
              f"{summary['video']}: {summary['frames']} frames, {len(summary['face_ids'])} face ids, "
              f"{summary['frames_without_face']} frames without a face → {summary['out']}")
    return failed


def _export(args: argparse.Namespace) -> dict:
    int8_only = {"--dataset": args.dataset, "--data-root": args.data_root, "--calibration": args.calibration,
                 "--test-images": args.test_images}
    if args.int8 is None:
        if given := [flag for flag, value in int8_only.items() if value is not None]:
            raise ValueError(f"{', '.join(given)} apply to --int8 only")
        return export(args.checkpoint, args.format, args.out)
    if args.format != "onnx":
        raise ValueError(f"--int8 quantises an onnx export; got --format {args.format}")
    return export_int8(args.checkpoint, args.out, args.int8, args.dataset, args.data_root, args.calibration,
                       args.test_images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qcslib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synthfer", help="generate the SynthFER dataset")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    _settings_flags(synth)
    clips = commands.add_parser("synthfer-video", help="render SynthFER clips with per-frame truth")
    clips.add_argument("--out", required=True, help="output directory")
    clips.add_argument("--clips", type=int, default=1, help="how many clips (default 1)")
    clips.add_argument("--seed", type=int, default=0)
    clips.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    clips.add_argument("--seconds", type=float, default=9.0, help="length of each clip (default 9)")
    clips.add_argument("--size", type=int, default=112, help="frame side in pixels, even (default 112)")
    report = commands.add_parser("data-report", help="check a dataset split and print its JSON report")
    report.add_argument("--dataset", required=True, choices=DATASETS)
    report.add_argument("--root", required=True)
    report.add_argument("--split", action="append", choices=("train", "val", "test", "all"),
                        help="repeatable; all: every split the dataset has (default: train; with --verify: the "
                             "manifest's splits)")
    files = report.add_mutually_exclusive_group()
    files.add_argument("--manifest", metavar="FILE", help="also write every file's path, label and SHA-256 here")
    files.add_argument("--verify", metavar="FILE", help="check the copy under --root against this manifest")
    report.add_argument("--workers", type=int, default=None, help="hashing processes (default: all cores)")
    train = commands.add_parser("train", help="train a profile (torchrun-able)")
    train.add_argument("--profile", default="cpu", help="a built-in profile name or a .yaml path")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a profile field (model.csa=s, lr=1e-4, ...); repeatable")
    train.add_argument("--run-dir", help="the run directory (default: <runs_dir>/<name> of the profile; with "
                                         "--resume: the folder of that last.pt)")
    train.add_argument("--resume", help="a last.pt to continue from, in its own folder unless --run-dir")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    ds = commands.add_parser("distill", help="distil a QCS checkpoint into a timm student")
    ds.add_argument("--teacher", required=True, help="a QCS checkpoint (a run's best.pt, or an official .pth)")
    ds.add_argument("--student", default=DEFAULT_STUDENT,
                    help=f"a timm model name, built from scratch (default {DEFAULT_STUDENT})")
    ds.add_argument("--profile", default="cpu", help="a built-in profile name or a .yaml path")
    ds.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a profile field (lr=1e-3, epochs=20, ...); repeatable")
    ds.add_argument("--temperature", type=float, default=4.0, help="T of the soft targets (default 4)")
    ds.add_argument("--alpha", type=float, default=0.9, help="weight of the KD term; 0: labels only (default 0.9)")
    ds.add_argument("--beta", type=float, default=0.0, help="weight of the feature term (default 0: off)")
    ds.add_argument("--teacher-online", action="store_true",
                    help="run the teacher on every augmented batch (default: once per image, un-augmented)")
    ds.add_argument("--run-dir", help="the run directory (default: <runs_dir>/<name>-<student> of the profile; with "
                                      "--resume: the folder of that last.pt)")
    ds.add_argument("--resume", help="a last.pt to continue from, in its own folder unless --run-dir")
    ds.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    ev = commands.add_parser("evaluate", help="evaluate a checkpoint on a dataset split")
    ev.add_argument("--checkpoint", required=True, help="a qcslib .pt or an official QCS/DCS .pth")
    ev.add_argument("--dataset", required=True, choices=DATASETS)
    ev.add_argument("--root", required=True)
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--num-workers", type=int, default=0)
    ev.add_argument("--allow-unreadable", action="store_true",
                    help="score the readable images when some cannot be read (default: an error naming them)")
    ev.add_argument("--trained-on", choices=tuple(DATASET_CLASSES),
                    help="the dataset a checkpoint that stores no class names (the official ones) was trained on: "
                         "its class order, matched by name to the split's (default: the split's own order)")
    ca = commands.add_parser("calibrate", help="fit a temperature on a split and store it in the checkpoint")
    ca.add_argument("--checkpoint", required=True, help="a qcslib .pt (a run's best.pt)")
    ca.add_argument("--dataset", choices=DATASETS, help="default: the checkpoint's training dataset")
    ca.add_argument("--root", help="default: the checkpoint's training data_root")
    ca.add_argument("--split", default="val", choices=("train", "val", "test"), help="fitted on (default val)")
    ca.add_argument("--report-split", default="test", choices=("train", "val", "test"),
                    help="also report its ECE before and after (default test)")
    ca.add_argument("--device", default="auto")
    ca.add_argument("--dry-run", action="store_true", help="fit and report, but leave the checkpoint as it is")
    pr = commands.add_parser("predict", help="the expression of every face in images or folders")
    pr.add_argument("paths", nargs="*", help=f"image files or folders, or videos ({', '.join(VIDEO_SUFFIXES)})")
    pr.add_argument("--checkpoint", required=True, help="a qcslib .pt or an official QCS/DCS .pth")
    pr.add_argument("--classes", choices=tuple(DATASET_CLASSES),
                    help="class order of a checkpoint that stores none (the official ones)")
    pr.add_argument("--json", action="store_true",
                    help="print one JSON list of records (photos) and one JSON summary line per video")
    pr.add_argument("--out", help="write annotated images, predictions.csv and predictions.json here (for a video: "
                                  "a folder per video with predictions.csv/.jsonl, annotated.mp4 and timeline.png)")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace the predictions an earlier run wrote into --out (default: refuse)")
    pr.add_argument("--camera", type=int, metavar="N", help="also read camera N (/dev/videoN) until --end or Ctrl-C")
    pr.add_argument("--every", type=int, default=EVERY, metavar="K",
                    help=f"video: detect faces every K frames, track them in between, and detect again on the next "
                         f"frame after a detection that lost a face or doubts one (default {EVERY})")
    pr.add_argument("--detect-side", type=int, default=DETECT_SIDE, metavar="N",
                    help=f"video: detect faces on frames shrunk to a longer side of N pixels (0: full size; default "
                         f"{DETECT_SIDE}; the smallest face found is then 20 × (frame side / N) pixels)")
    pr.add_argument("--smooth", type=float, default=0.0, metavar="TAU",
                    help="video: EMA of each face's probabilities with time constant TAU seconds (default 0: off)")
    pr.add_argument("--hysteresis", type=float, default=0.0, metavar="M",
                    help="video: keep a face's label until another class leads it by more than M (default 0: off)")
    pr.add_argument("--start", type=float, default=0.0, help="video: first second to read (default 0)")
    pr.add_argument("--end", type=float, help="video: stop at this second (default: the end)")
    ex = commands.add_parser("export", help="export the base branch to ONNX or TorchScript, checked")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    ex.add_argument("--out", help="output file (default: beside the checkpoint)")
    ex.add_argument("--int8", nargs="?", const="auto", choices=("auto", "static", "dynamic"),
                    help="quantise the onnx export to int8: static QDQ, calibrated, or dynamic, linear layers only; "
                         "auto (the default): static for a student, dynamic for QCS")
    ex.add_argument("--dataset", choices=DATASETS, help="--int8: calibrate and score on this dataset "
                                                        "(default: the checkpoint's training dataset)")
    ex.add_argument("--data-root", help="--int8: its root (default: the checkpoint's training data_root)")
    ex.add_argument("--calibration", type=int, help="--int8 static: calibration images from train (default 64)")
    ex.add_argument("--test-images", type=int,
                    help="--int8: score on N test images drawn at random (seed 0; default: all)")
    args = parser.parse_args(argv)
    if args.command == "predict" and not args.paths and args.camera is None:
        parser.error("predict: give image or video paths, or --camera N")
    try:
        if args.command == "synthfer":
            values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthFERSettings)}
            print(generate(args.out, SynthFERSettings(**values), workers=args.workers))
        elif args.command == "synthfer-video":
            settings = ClipSettings(seed=args.seed, fps=args.fps, seconds=args.seconds, size=args.size)
            print(json.dumps(write_clips(args.out, settings, args.clips), indent=1))
        elif args.command == "data-report":
            names = [n for s in args.split or [] for n in (available_splits(args.dataset, args.root)
                                                            if s == "all" else [s])]
            names = list(dict.fromkeys(names)) or None
            if args.verify:
                result = verify_manifest(args.verify, args.dataset, args.root, names, workers=args.workers)
                print(json.dumps(result, indent=1))
                return 0 if result["identical"] else 1
            splits = [load_split(args.dataset, args.root, name) for name in names or ["train"]]
            digests = hash_splits(splits, args.workers)
            reports = {}
            for split, items in zip(splits, digests):
                hashes = dict(zip(item_ids(split), (digest for digest, _ in items)))
                reports[split.split] = data_report(verify_images(split), hashes)
                if warning := deviation_warning(reports[split.split]):
                    print(f"python -m qcslib data-report: warning: {warning}", file=sys.stderr)
            if args.manifest:
                write_manifest(args.manifest, splits, digests)
            print(json.dumps(reports[splits[0].split] if len(splits) == 1 else reports, indent=1))
        elif args.command == "train":
            overrides = list(args.overrides)
            if args.run_dir or args.resume:  # a resumed run goes on where it was, not in the default directory
                run_dir = Path(args.run_dir) if args.run_dir else Path(args.resume).absolute().parent
                overrides += [f"runs_dir={run_dir.parent}", f"name={run_dir.name}"]
            run = fit(load_profile(args.profile, overrides), resume=args.resume, overwrite=args.overwrite)
            if run.summary:
                print(json.dumps({"run_dir": str(run.dir), **run.summary}, indent=1))
        elif args.command == "distill":
            config = load_profile(args.profile, args.overrides)
            if args.run_dir or args.resume:  # a resumed run goes on where it was, not in the default directory
                run_dir = Path(args.run_dir) if args.run_dir else Path(args.resume).absolute().parent
                config = config.replace(runs_dir=str(run_dir.parent), name=run_dir.name)
            else:
                config = config.replace(name=f"{config.name}-{args.student}")
            run = distill(config, args.teacher, args.student, args.temperature, args.alpha, args.beta,
                          args.teacher_online, resume=args.resume, overwrite=args.overwrite)
            if run.summary:
                print(json.dumps({"run_dir": str(run.dir), **run.summary}, indent=1))
        elif args.command == "predict":
            return _predict(args)
        elif args.command == "export":
            print(json.dumps(_export(args), indent=1))
        elif args.command == "calibrate":
            print(json.dumps(calibrate(args.checkpoint, args.dataset, args.root, args.split, args.report_split,
                                       args.device, write=not args.dry_run), indent=1))
        else:
            print(json.dumps(evaluate_checkpoint(args.checkpoint, args.dataset, args.root, args.split,
                                                 batch_size=args.batch_size, device=args.device,
                                                 num_workers=args.num_workers,
                                                 allow_unreadable=args.allow_unreadable,
                                                 trained_on=args.trained_on), indent=1))
    except (DataError, CheckpointError, OSError, ValueError) as e:  # OSError: a path that cannot be read or written
        print(f"python -m qcslib {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (TrainingError, ExportError) as e:
        print(f"python -m qcslib {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"python -m qcslib {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
