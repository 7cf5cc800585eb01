"""The run directory ``<runs_dir>/<name>/``: what a run writes, how it resumes, and how it is read back.

Files (each written atomically, through a temporary file and ``os.replace``):

- ``config.yaml``: the TrainConfig; ``data.json``: each split's counts and what the loaders skipped,
  excluded or held out;
- ``metrics.csv``: one row per epoch (``metrics_row``): losses per head, k, train accuracy and the selection
  split's ``val_*`` or ``test_*`` scores, timings;
- ``last.pt``: everything needed to resume (``checkpoint``), after each epoch and on Ctrl-C in a one-process
  run; ``best.pt``: the model of the best selection accuracy;
- ``confusion.csv`` (best model, test split) and, once the run has stopped, ``summary.json`` (``write_summary``);
- ``version.json``: what trained it (``version``): the training code, torch, timm and the data on disk, and the
  git commit for display. A finished run is reused only when all but the commit match (``version_change``).
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import yaml

from ..models.qcs import QCSNet
from ..models.student import StudentNet
from ..models.weights import FORMAT, read_torch_file
from .config import ConfigError, TrainConfig

PACKAGE = Path(__file__).resolve().parents[1]
TRAINING_CODE = ("models", "data", "train")  # the qcslib packages a run executes
VERSIONED = ("code", "torch", "timm", "data")  # what must match for a run to be reused; the commit is for display
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# what a resumed run may change: where its files are and how it runs, never what or how it trains (a dotted name:
# that key of a section: the teacher checkpoint may move)
RESUMABLE = ("name", "runs_dir", "data_root", "backbone_weights", "verify_images", "eval_batch_size", "device",
             "precision", "channels_last", "compile", "num_workers", "log_every", "distill.teacher")


@dataclass
class Run:
    """A finished (or resumed and finished) run: its directory, config and ``summary.json``."""

    dir: Path
    config: TrainConfig
    summary: dict

    @classmethod
    def load(cls, run_dir: str | Path) -> Run:
        """The finished run in ``run_dir``, read back from its ``config.yaml`` and ``summary.json``. A missing file
        is a FileNotFoundError saying what its absence means; a config.yaml that is no TrainConfig, a ConfigError."""
        run_dir = Path(run_dir)
        config_file, summary_file = run_dir / "config.yaml", run_dir / "summary.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{run_dir}: has no config.yaml, so it is not a run directory (fit writes one "
                                    f"when a run starts)")
        if not summary_file.is_file():
            raise FileNotFoundError(f"{run_dir}: has no summary.json, so the run has not finished (fit writes it when "
                                    f"training stops; resume from {run_dir / 'last.pt'})")
        try:
            config = TrainConfig.from_dict(yaml.safe_load(config_file.read_text()) or {}, where=str(config_file))
        except (yaml.YAMLError, ConfigError) as e:
            raise ConfigError(f"{config_file}: does not describe a TrainConfig ({e})") from e
        return cls(run_dir, config, json.loads(summary_file.read_text()))

    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.dir / "metrics.csv")

    @property
    def best_checkpoint(self) -> Path:
        return self.dir / "best.pt"


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def start(config: TrainConfig, splits) -> None:
    """Make the run directory and write ``config.yaml``, ``data.json`` and ``version.json``. The ``summary.json``
    of a run this one replaces goes first: until this run ends, nothing may read that run's results as this one's."""
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").unlink(missing_ok=True)
    atomic_text(json.dumps(version(config), indent=1), run_dir / "version.json")
    atomic_text(yaml.safe_dump(config.to_dict(), sort_keys=False), run_dir / "config.yaml")
    atomic_text(json.dumps({s.split: {"n": len(s), "counts": s.counts(), "skipped": s.skipped, "excluded": s.excluded}
                            for s in splits if s is not None}, indent=1), run_dir / "data.json")


# --------------------------------------------------------------------------------------------- code version

def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=4)
def code_fingerprint(package: Path = PACKAGE) -> str:
    """sha256 (first 12 hex digits) of the ``TRAINING_CODE`` sources of ``package`` as syntax trees without
    docstrings: comments, docstrings and layout change nothing, a changed statement changes it."""
    digest = hashlib.sha256()
    for path in sorted(p for name in TRAINING_CODE for p in (package / name).rglob("*.py")):
        tree = _without_docstrings(ast.parse(path.read_text(encoding="utf-8")))
        digest.update(f"{path.relative_to(package).as_posix()}\0{ast.dump(tree)}\0".encode())
    return digest.hexdigest()[:12]


def data_fingerprint(root: str | Path) -> str:
    """sha256 (12 hex digits) of the files under ``root`` (hidden ones aside): each image by its path and size, every
    other file (label lists, manifests, SynthFER's settings.json) by its path and content. A dataset generated
    again by other code, relabelled or with files added or removed gets another fingerprint; "missing" if no
    ``root``."""
    root = Path(root)
    if not root.exists():
        return "missing"
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))
    for path in files:
        name = path.name if path == root else path.relative_to(root).as_posix()
        content = str(path.stat().st_size).encode() if path.suffix.lower() in IMAGE_SUFFIXES else path.read_bytes()
        digest.update(f"{name}\0".encode() + hashlib.sha256(content).digest())
    return digest.hexdigest()[:12]


def git_commit() -> str:
    """The checkout's short commit, "+ uncommitted changes" when tracked files differ, or why there is none."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PACKAGE.parent, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE.parent,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if dirty else "")


def version(config: TrainConfig) -> dict:
    """What trains ``config`` here: ``code_fingerprint``, the torch and timm versions, ``data_fingerprint`` of its
    ``data_root``, and the git commit (for display only)."""
    return {"code": code_fingerprint(), "torch": torch.__version__, "timm": timm.__version__,
            "data": data_fingerprint(config.data_root), "commit": git_commit()}


def version_change(run_dir: str | Path, config: TrainConfig) -> str | None:
    """None when the run in ``run_dir`` was trained by what would train ``config`` here (``VERSIONED``); else what
    differs, in words ("code 1a2b3c4d5e6f there, 0f9e8d7c6b5a here; ...")."""
    file = Path(run_dir) / "version.json"
    try:
        theirs = json.loads(file.read_text())
    except (OSError, ValueError):
        return "it records no version (trained before runs recorded their code)"
    if not isinstance(theirs, dict):
        return f"{file} is not a JSON object"
    ours = version(config)
    changed = [f"{k} {theirs.get(k, 'absent')} there, {ours[k]} here" for k in VERSIONED if theirs.get(k) != ours[k]]
    return "; ".join(changed) or None


# --------------------------------------------------------------------------------------------- epoch state

@dataclass
class EpochSums:
    """What an epoch accumulates on the device, summed over its batches: ``losses[h] = Σ loss_h · B`` per head,
    ``correct`` anchors (base branch, at w) and ``samples``. One tensor of ``heads + 2`` float64 on the wire."""

    losses: torch.Tensor   # (heads,) float64
    correct: torch.Tensor  # () float64
    samples: torch.Tensor  # () float64

    @classmethod
    def zeros(cls, heads: int, device: torch.device) -> EpochSums:
        return cls.from_tensor(torch.zeros(heads + 2, device=device, dtype=torch.float64))

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> EpochSums:
        return cls(values[:-2].clone(), values[-2].clone(), values[-1].clone())

    def to_tensor(self) -> torch.Tensor:
        return torch.cat([self.losses, self.correct[None], self.samples[None]])

    def add(self, losses: torch.Tensor, correct: torch.Tensor, batch: int) -> None:
        self.losses += losses.double() * batch
        self.correct += correct.double()
        self.samples += batch

    def all_reduce(self) -> None:
        """Sum over the processes of a DDP run."""
        values = self.to_tensor()
        torch.distributed.all_reduce(values)
        self.losses, self.correct, self.samples = values[:-2], values[-2], values[-1]

    @property
    def mean_loss(self) -> float:
        return float(self.losses.sum()) / len(self.losses) / float(self.samples)

    @property
    def accuracy(self) -> float:
        return float(self.correct) / float(self.samples)


@dataclass
class RunState:
    """Where a run stands: what ``last.pt`` keeps besides the weights and the optimiser, and resume restores.
    ``sums`` and ``rng`` are set only in a mid-epoch state (``step > 0``)."""

    epoch: int = 0                                      # epochs finished
    step: int = 0                                       # steps done of epoch ``epoch``
    history: list[dict] = field(default_factory=list)  # the metrics.csv rows
    best: dict | None = None                            # the row of best.pt
    sums: EpochSums | None = None
    rng: dict | None = None


def rng_state(device: torch.device) -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def checkpoint(net: QCSNet | StudentNet, config: TrainConfig, classes, optimizer, scheduler, scaler,
               state: RunState) -> dict:
    """The ``last.pt`` payload: model, recipe, class names, optimiser, schedule, scaler and the run ``state``."""
    return {"format": FORMAT, "config": net.config.to_dict(), "state_dict": net.state_dict(),
            "train_config": config.to_dict(), "classes": list(classes),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": state.epoch, "step": state.step, "history": state.history, "best": state.best,
            "sums": state.sums.to_tensor().cpu() if state.sums is not None else None, "rng": state.rng}


def best_checkpoint(net: QCSNet | StudentNet, config: TrainConfig, classes, epoch: int, metrics: dict) -> dict:
    """The ``best.pt`` payload: the model (loadable by ``load_checkpoint``), its recipe and its selection metrics."""
    return {"format": FORMAT, "config": net.config.to_dict(), "state_dict": net.state_dict(),
            "train_config": config.to_dict(), "classes": list(classes), "epoch": epoch,
            "selection": config.selection, "metrics": metrics}


def read_resume(path: str | Path, config: TrainConfig, distributed: bool = False) -> dict:
    """A ``last.pt`` to resume ``config`` from: its model must be the one ``config`` builds, and its recipe
    (every field but ``RESUMABLE``: data, seed, optimiser, schedule, batch, epochs, ...) the same. A mid-epoch
    state holds one process's RNG and partial sums, so a ``distributed`` run resumes only from an epoch's end."""
    state, _ = read_torch_file(path)
    if not (isinstance(state, dict) and state.get("format") == FORMAT and "optimizer" in state
            and state.get("history") is not None):
        raise ConfigError(f"{path}: not a resumable qcslib checkpoint (a last.pt written by fit)")
    theirs, ours = state["config"], config.model.to_dict()
    if theirs != ours:
        diff = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in ours if theirs.get(k) != ours[k])
        raise ConfigError(f"{path}: was trained with another model ({diff})")
    theirs, missing = recipe(state.get("train_config") or {}), object()
    changed = [(k, theirs.get(k, missing), v) for k, v in recipe(config.to_dict()).items()
               if theirs.get(k, missing) != v]
    if changed:
        diff = ", ".join(f"{k}: {'absent' if t is missing else repr(t)} there, {v!r} here" for k, t, v in changed)
        raise ConfigError(f"{path}: was trained with another recipe ({diff}); resume with the same one, or start a "
                          f"new run")
    if distributed and state.get("step"):
        raise ConfigError(f"{path}: stopped mid-epoch (epoch {state['epoch'] + 1}, step {state['step']}); a DDP run "
                          f"resumes only from the end of an epoch: finish this epoch in one process first")
    return state


def recipe(values: dict) -> dict:
    """A config's fields (``TrainConfig.to_dict``) without the ``RESUMABLE`` ones."""
    out = {k: v for k, v in values.items() if k not in RESUMABLE}
    for top, _, key in (name.partition(".") for name in RESUMABLE):
        if key and isinstance(out.get(top), dict):
            out[top] = {k: v for k, v in out[top].items() if k != key}
    return out


def restore(state: dict, net: QCSNet | StudentNet, optimizer, scheduler, scaler) -> RunState:
    """Load a ``read_resume`` state into the model and the optimiser, schedule and scaler → its RunState."""
    net.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    sums = state.get("sums")
    return RunState(state["epoch"], state["step"], state["history"], state["best"],
                    EpochSums.from_tensor(sums) if sums is not None else None, state.get("rng"))


# ---------------------------------------------------------------------------------------------- what it reports

def metrics_row(epoch: int, lr: float, loss: float, names: list[str], sums: EpochSums, columns: dict,
                config: TrainConfig, metrics: dict, train_seconds: float, eval_seconds: float, steps: int,
                untimed: float) -> dict:
    """One metrics.csv row; ``loss`` the epoch's mean loss and ``sums`` its per-term sums (``names``) over all
    ranks, ``columns`` the task's own (QCS: k), ``metrics`` those of the selection split, whose columns are named
    after it (``val_*`` or ``test_*``); ``untimed``: samples trained before a restart, not in the timing.
    ``backbone_images``: samples · the model's branches · (2 with SAM)."""
    n, split = float(sums.samples), config.selection
    row = {"epoch": epoch + 1, "lr": lr, "loss": loss}
    row.update({f"loss_{name}": float(v) / n for name, v in zip(names, sums.losses, strict=True)})
    row.update(columns)
    row.update({"train_accuracy": sums.accuracy, f"{split}_accuracy": metrics["accuracy"],
                f"{split}_mean_class_accuracy": metrics["mean_class_accuracy"], f"{split}_macro_f1": metrics["macro_f1"],
                "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                "samples_per_s": round((n - untimed) / train_seconds, 2) if train_seconds > 0 else math.nan,
                "steps": steps, "backbone_images": int(n) * config.model.branches * (2 if config.sam else 1)})
    return row


def write_metrics(rows: list[dict], run_dir: Path) -> None:
    atomic_text(pd.DataFrame(rows).to_csv(index=False), run_dir / "metrics.csv")


def write_confusion(metrics: dict, classes, path: Path) -> None:
    table = pd.DataFrame(metrics["confusion"], index=pd.Index(classes, name="true"), columns=classes)
    atomic_text(table.to_csv(), path)


def standard_error(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on ``images`` images: √(p (1 − p) / n), at least 1/n."""
    return max(math.sqrt(accuracy * (1 - accuracy) / images), 1 / images)


def run_state(scores: list[float], max_epochs: int, patience: int, patience_stopped: bool, images: int) -> dict:
    """How a run ended and whether it converged, from its per-epoch selection accuracies ``scores``:

    - ``stop_reason``: ``patience`` when patience stopped it before ``max_epochs``, else ``epoch limit`` (patience
      firing on the last epoch stops nothing); ``stopped_early`` is ``stop_reason == "patience"``;
    - ``chosen_epoch``: the epoch of the best score (the first of equals, as best.pt keeps it);
    - ``still_improving_at_limit``: it reached its limit and chose an epoch within 1 of it;
    - ``slope``: the least-squares slope of the scores over the last ``max(3, patience + 1)`` epochs (a run that
      patience stopped: its best and the epochs that did not beat it), per epoch; ``rise = slope · (window − 1)``,
      the gain that line shows across the window;
    - ``flat``: ``rise ≤ SE``, the standard error of the best score on the ``images`` of the selection split;
    - ``converged``: flat and not still improving at its limit, whatever stopped it; one epoch is never converged (no
      line to test)."""
    epochs, best = len(scores), int(np.argmax(scores)) + 1
    stop = "patience" if patience_stopped and epochs < max_epochs else "epoch limit"
    window = scores[-max(3, patience + 1):]
    slope = float(np.polyfit(np.arange(len(window)), window, 1)[0]) if len(window) >= 2 else None
    se = standard_error(max(scores), images)
    improving = stop == "epoch limit" and best >= max_epochs - 1
    flat = slope is not None and slope * (len(window) - 1) <= se
    return {"stop_reason": stop, "stopped_early": stop == "patience", "chosen_epoch": best,
            "still_improving_at_limit": improving, "slope": slope, "selection_se": se,
            "converged": flat and not improving}


SUMMARY_SCORES = ("epoch", "val_accuracy", "val_mean_class_accuracy", "val_macro_f1", "test_accuracy",
                  "test_mean_class_accuracy", "test_macro_f1", "train_accuracy", "loss")


def write_summary(config: TrainConfig, state: RunState, patience_stopped: bool, selection_images: int,
                  test_images: int, test_unreadable: int, chosen: dict, last: dict, extra: dict | None = None) -> dict:
    """Write ``summary.json`` and return it: selection, the epoch the run stopped at, why and whether it converged
    (``run_state``, on the ``selection_images`` of the selection split), the chosen and the last epoch's scores
    (``chosen`` and ``last``: their rows with the test scores), the run's ``version.json``, test images, backbone
    images, and then ``extra`` (what the task adds)."""
    scores = [r[f"{config.selection}_accuracy"] for r in state.history]
    summary = {"name": config.name, "seed": config.seed, "variant": config.model.variant,
               "selection": config.selection, "stopped_epoch": len(state.history), "max_epochs": config.epochs,
               **run_state(scores, config.epochs, config.patience, patience_stopped, selection_images),
               "best": {k: chosen[k] for k in SUMMARY_SCORES if k in chosen},
               "last": {k: last[k] for k in SUMMARY_SCORES if k in last},
               "test_images": test_images, "test_unreadable": test_unreadable,
               "version": json.loads((config.run_dir / "version.json").read_text()),
               "train_seconds": round(sum(r["train_seconds"] for r in state.history), 2),
               "backbone_images": int(sum(r["backbone_images"] for r in state.history)), **(extra or {})}
    atomic_text(json.dumps(summary, indent=1), config.run_dir / "summary.json")
    return summary
