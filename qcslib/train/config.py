"""Training configuration: one flat dataclass, filled from a YAML profile and ``key=value`` overrides.

Profiles live in ``qcslib/profiles/<name>.yaml`` (or any path ending in ``.yaml``); each key is a
``TrainConfig`` field, except ``base: NAME`` (start from that profile) and ``notebooks``. ``model`` holds ``QCSConfig`` fields plus ``size`` (``paper`` | ``tiny``),
``synthfer`` holds ``SynthFERSettings`` fields, ``data_options`` goes to ``load_split``. Overrides use
dotted keys for those: ``model.csa=s``, ``synthfer.bias_strength=0.9``. Values are parsed as YAML
(``lr=1e-4``, ``sam=false``, ``model.units=[1,1,1]``). Any unknown key is an error.

Model selection: each epoch scores the *selection split* — ``val`` by default (the dataset's own val
split, or a seeded, stratified ``val_fraction`` of train held out for datasets that have none, such as
RAF-DB) — which picks ``best.pt`` and drives early stopping (``patience``, ``min_delta``); the test split
is scored only once training has stopped, on the chosen and on the last model. ``selection: test`` is the
paper's protocol (the official code keeps the best *test* epoch); every table that shows it says so.

A profile's ``notebooks`` mapping holds what the notebooks need beyond one run (the seeds of the
multi-seed experiments, overrides for the ablation runs, how many points to embed, ...):
``qcslib.notebook.notebook_parameters`` reads and checks it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.sources import DATASETS, SPLITS, unknown_options
from ..data.synthfer import SynthFERSettings
from ..data.transforms import RECIPES
from ..data.quadruplets import NEGATIVES
from ..models.qcs import SIZES, QCSConfig

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
OPTIMIZERS = ("adam", "adamw")
SELECTIONS = ("val", "test")
SCHEDULES = ("exponential", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
DICT_FIELDS = ("data_options", "synthfer", "model")
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,),
          "str | None": (str, type(None))}


class ConfigError(ValueError):
    """A profile or override that cannot describe a run; the message names the key."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Defaults are the official QCS RAF-DB recipe on SynthFER."""

    name: str = "qcs"                    # the run directory is <runs_dir>/<name>
    runs_dir: str = "runs"
    seed: int = 0
    # data
    dataset: str = "synthfer"
    data_root: str = "data/synthfer"
    data_options: dict = field(default_factory=dict)   # load_split options (list_file, layout, cropped, ...)
    synthfer: dict = field(default_factory=dict)       # SynthFERSettings fields; generated at data_root if absent
    train_split: str = "train"
    test_split: str = "test"             # scored once training stops (every epoch with selection: test)
    selection: str = "val"               # the split that picks best.pt and stops early: val | test (paper's protocol)
    val_fraction: float = 0.0            # selection val: 0 = the dataset's own val split; > 0 = hold out this
                                         # stratified fraction of train instead (seeded by `seed`)
    transform: str = "rafdb"             # transform recipe: rafdb | ferplus | affectnet
    negatives: str = "data"              # quadruplet negatives: data | balanced (official AffectNet)
    oversample: bool = False             # anchors drawn ∝ 1/class count (official AffectNet)
    epoch_fraction: float = 1.0          # anchors per epoch / train images (official AffectNet: 1/12; > 1: several
                                         # shuffled passes per epoch, as the compute-matched baseline takes)
    decoded_cache: bool = False          # decode every image once into a uint8 array
    augment_on_device: bool = False      # loader only decodes and resizes; flip, jitter, erasing... on the device
    verify_images: bool = True           # decode every image first; unreadable ones are skipped and listed
    allow_unreadable_eval: bool = False  # val/test with unreadable images: an error, or (true) score the rest
    # model
    model: dict = field(default_factory=dict)          # QCSConfig fields, plus size: paper | tiny
    backbone_weights: str | None = None  # ir50.pth (the MS-Celeb-1M IR-50 the official code loads)
    # optimisation
    optimizer: str = "adam"              # SAM's base optimizer, or the optimizer itself with sam: false
    sam: bool = True
    rho: float = 0.05
    lr: float = 3e-6
    weight_decay: float = 0.0            # the official mains parse --wd but never pass it: 0 is what they run
    schedule: str = "exponential"        # exponential: lr·lr_gamma^epoch (official) | cosine: to 0 at `epochs`, per step
    lr_gamma: float = 0.98               # the exponential schedule's factor per epoch
    warmup_epochs: float = 0.0           # linear warm-up from 0 over this many epochs (per step), then the schedule
    epochs: int = 200                    # at most this many epochs
    patience: int = 0                    # early stopping: stop after this many epochs without a selection-split
                                         # accuracy above the best so far + min_delta (0: never stop early)
    min_delta: float = 0.0
    batch_size: int = 24                 # quadruplets per step, per process
    eval_batch_size: int = 64
    # runtime
    device: str = "auto"                 # auto: cuda, then mps, then cpu
    precision: str = "auto"              # auto: bf16 autocast on CUDA (fp16 + GradScaler without bf16), else fp32
    channels_last: bool = False
    compile: bool = False                # torch.compile the model
    num_workers: int = 0
    log_every: int = 10                  # steps between progress-bar updates (each one syncs with the device)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.type == "float" and isinstance(getattr(self, f.name), str):
                object.__setattr__(self, f.name, _float(getattr(self, f.name)))
            value, types = getattr(self, f.name), _TYPES[f.type]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ConfigError(f"{f.name} must be {f.type}, got {value!r}")
        _choice("dataset", self.dataset, DATASETS)
        if problem := unknown_options(self.dataset, self.data_options):  # before any data is generated or read
            raise ConfigError(f"data_options for {self.dataset}: {problem}")
        _choice("train_split", self.train_split, SPLITS)
        _choice("test_split", self.test_split, SPLITS)
        _choice("selection", self.selection, SELECTIONS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("transform", self.transform, RECIPES)
        _choice("negatives", self.negatives, NEGATIVES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("device", self.device, DEVICES)
        for name in ("epochs", "batch_size", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.epoch_fraction > 0:
            raise ConfigError(f"epoch_fraction must be > 0, got {self.epoch_fraction}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience < 0 or self.min_delta < 0 or self.warmup_epochs < 0:
            raise ConfigError(f"need patience ≥ 0, min_delta ≥ 0 and warmup_epochs ≥ 0; got patience={self.patience}, "
                              f"min_delta={self.min_delta}, warmup_epochs={self.warmup_epochs}")
        if self.train_split == self.test_split or (self.selection == "val" and "val" in (self.train_split,
                                                                                          self.test_split)):
            raise ConfigError(f"train_split {self.train_split!r}, test_split {self.test_split!r} and the val split "
                              f"must be three different splits")
        if self.lr <= 0 or self.rho < 0 or self.weight_decay < 0 or not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"need lr > 0, rho ≥ 0, weight_decay ≥ 0 and 0 < lr_gamma ≤ 1; got lr={self.lr}, "
                              f"rho={self.rho}, weight_decay={self.weight_decay}, lr_gamma={self.lr_gamma}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be ≥ 0, got {self.num_workers}")
        self.model_config()  # validates the model fields
        if self.synthfer:
            self.synthfer_settings()

    def model_config(self, **overrides) -> QCSConfig:
        """The network this run trains: ``QCSConfig.sized(model.size, **model fields, **overrides)``."""
        fields = {**self.model, **overrides}
        size = fields.pop("size", "paper")
        known = {f.name for f in dataclasses.fields(QCSConfig)}
        floats = {f.name for f in dataclasses.fields(QCSConfig) if f.type == "float"}
        fields = {k: _float(v) if k in floats and isinstance(v, str) else v for k, v in fields.items()}
        if unknown := sorted(set(fields) - known):
            raise ConfigError(f"unknown model field(s) {', '.join(unknown)}; known: size, {', '.join(sorted(known))}")
        if size not in SIZES:
            raise ConfigError(f"model.size must be one of {', '.join(SIZES)}, got {size!r}")
        try:
            return QCSConfig.sized(size, **fields)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model: {e}") from e

    def synthfer_settings(self) -> SynthFERSettings:
        known = {f.name for f in dataclasses.fields(SynthFERSettings)}
        if unknown := sorted(set(self.synthfer) - known):
            raise ConfigError(f"unknown synthfer field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return SynthFERSettings(**self.synthfer)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"synthfer: {e}") from e

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _float(value: str):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; take it as the number it is meant to be."""
    try:
        return float(value)
    except ValueError:
        return value


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def profile_path(profile: str | Path) -> Path:
    """A profile name (``cpu``) → ``qcslib/profiles/cpu.yaml``; a path ending in .yaml is used as it is."""
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{profile}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise ConfigError(f"profile {str(profile)!r} not found ({path}); the built-in profiles are {names}")
    return path


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict:
    """``["lr=1e-4", "model.csa=s"]`` → ``{"lr": 1e-4, "model.csa": "s"}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({e})") from e
    return out


def apply_overrides(values: dict, overrides: dict, where: str = "overrides") -> dict:
    """Merge flat ``key`` / ``dict_field.key`` overrides into a dict of TrainConfig fields."""
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for key, value in overrides.items():
        top, _, sub = key.partition(".")
        if top not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(known)}")
        if sub:
            if top not in DICT_FIELDS:
                raise ConfigError(f"{where}: {top!r} has no sub-keys, so {key!r} is not a key")
            out.setdefault(top, {})[sub] = value
        else:
            out[top] = value
    return out


def read_profile(profile: str | Path, seen: tuple = ()) -> tuple[Path, dict]:
    """A profile's path and its mapping, with ``base: NAME`` resolved: the base profile's keys first, then this
    one's (``model``, ``synthfer``, ``data_options`` and ``notebooks`` merge key by key)."""
    path = profile_path(profile)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or type(e).__name__})") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of TrainConfig fields, got {type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return path, values
    if path in seen:
        raise ConfigError(f"{path}: its base profiles form a cycle ({' → '.join(map(str, seen + (path,)))})")
    _, inherited = read_profile(base, seen + (path,))
    for key, value in values.items():
        nested = key in DICT_FIELDS + ("notebooks",) and isinstance(value, dict)
        inherited[key] = {**(inherited.get(key) or {}), **value} if nested else value
    return path, inherited


def load_profile(profile: str | Path = "cpu", overrides: dict | list[str] | None = None) -> TrainConfig:
    """Read a profile and apply overrides (a dict, or ``key=value`` strings) → a validated TrainConfig."""
    path, values = read_profile(profile)
    values.pop("notebooks", None)  # the notebooks' parameters: see notebook_parameters
    values = apply_overrides({}, values, where=str(path))
    if isinstance(overrides, (list, tuple)):
        overrides = parse_overrides(overrides)
    values = apply_overrides(values, overrides or {})
    try:
        return TrainConfig(**values)
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from e
