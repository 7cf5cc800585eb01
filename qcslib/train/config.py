"""Training configuration: a typed dataclass, filled from a YAML profile and ``key=value`` overrides.

Profiles live in ``qcslib/profiles/<name>.yaml`` (or any path ending in ``.yaml``); each key is a
``TrainConfig`` field, except ``base: NAME`` (start from that profile) and ``notebooks``. Four fields are
typed sections: ``model`` (a ``QCSConfig``; the mapping may also name a ``size``, ``paper`` | ``tiny``, whose
fields come first; or, with ``architecture: timm``, a ``StudentConfig``), ``synthfer`` (``SynthFERSettings``),
``data_options`` (``load_split``'s options) and ``distill`` (``DistillConfig``, or null). Overrides use dotted
keys for those: ``model.csa=s``, ``synthfer.bias_strength=0.9``, ``distill.alpha=0.5``. Values are parsed as
YAML (``lr=1e-4``, ``sam=false``, ``model.units=[1,1,1]``). Every key and value is checked against the
fields' type hints (``typing.get_type_hints``) when the config is built, before any work starts: an unknown
or ill-typed key is a one-line ``ConfigError`` that names it.

SynthFER domains: a profile key (or override) ``synthfer_domain: NAME`` picks one of
``qcslib.data.synthfer.DOMAINS`` (studio, identities, lighting, pose, occluded, style). Its settings overrides go
on top of the profile's ``synthfer`` mapping, and ``data_root`` gets the suffix ``-NAME`` (the generator caches by
settings, one dataset a directory); ``--set`` overrides still come last. ``synthfer_domain(config, NAME)`` does
the same to a built config. The run's config.yaml holds the resulting settings, not the name.

Objective and architecture: ``objective`` says what a step minimises, ``model`` which network learns it.
``quadruplet`` (the default) trains a QCS model (QCS, DCS or the baseline) on quadruplets; ``kd`` distils the
QCS checkpoint ``distill.teacher`` into a timm student (``model.architecture: timm``), image by image, with the
``distill`` section's temperature and weights. The quadruplet-only options (``epoch_fraction`` ≠ 1,
``oversample``) and ``backbone_weights`` (the QCS backbone's) are refused with ``kd``.

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
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.sources import DATASETS, SPLITS, DataOptions
from ..data.synthfer import DOMAINS, SynthFERSettings
from ..data.transforms import HUE, RECIPES, check_hue
from ..data.quadruplets import NEGATIVES
from ..models.qcs import SIZES, QCSConfig
from ..models.student import ARCHITECTURE, StudentConfig
from ..typed import checked

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
OPTIMIZERS = ("adam", "adamw")
SELECTIONS = ("val", "test")
SCHEDULES = ("exponential", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
OBJECTIVES = ("quadruplet", "kd")
SECTIONS = ("data_options", "synthfer", "model", "distill")  # the fields that take dotted keys


class ConfigError(ValueError):
    """A profile or override that cannot describe a run; the message names the key."""


@dataclass(frozen=True)
class DistillConfig:
    """The ``kd`` objective's section: the QCS teacher checkpoint, T, α and β of ``losses.distillation_loss``, and
    whether the teacher runs on every augmented batch (``teacher_online``) or once per image (the cache)."""

    teacher: str
    temperature: float = 4.0
    alpha: float = 0.9
    beta: float = 0.0
    teacher_online: bool = False

    def __post_init__(self):
        if not self.temperature > 0 or not 0 <= self.alpha <= 1 or not self.beta >= 0:
            raise ConfigError(f"need temperature > 0, 0 ≤ alpha ≤ 1 and beta ≥ 0; got "
                              f"temperature={self.temperature}, alpha={self.alpha}, beta={self.beta}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Defaults are the official QCS RAF-DB recipe on SynthFER."""

    name: str = "qcs"                    # the run directory is <runs_dir>/<name>
    runs_dir: str = "runs"
    seed: int = 0
    # data
    dataset: str = "synthfer"
    data_root: str = "data/synthfer"
    data_options: DataOptions = field(default_factory=DataOptions)  # load_split's (list_file, layout, cropped, ...)
    synthfer: SynthFERSettings = field(default_factory=SynthFERSettings)  # generated at data_root if absent
    train_split: str = "train"
    test_split: str = "test"             # scored once training stops (every epoch with selection: test)
    selection: str = "val"               # the split that picks best.pt and stops early: val | test (paper's protocol)
    val_fraction: float = 0.0            # selection val: 0 = the dataset's own val split; > 0 = hold out this
                                         # stratified fraction of train instead (seeded by `seed`)
    transform: str = "rafdb"             # transform recipe: rafdb | ferplus | affectnet
    hue: float = HUE                     # the recipe's colour jitter shifts hue by up to ± this (0–0.5 of the
                                         # circle; 0.5: any hue, against a colour shortcut); rafdb, affectnet only
    negatives: str = "data"              # quadruplet negatives: data | balanced (official AffectNet)
    oversample: bool = False             # anchors drawn ∝ 1/class count (official AffectNet)
    epoch_fraction: float = 1.0          # anchors per epoch / train images (official AffectNet: 1/12; > 1: several
                                         # shuffled passes per epoch, as the compute-matched baseline takes)
    decoded_cache: bool = False          # decode every image once into a uint8 array
    augment_on_device: bool = False      # loader only decodes and resizes; flip, jitter, erasing... on the device
    verify_images: bool = True           # decode every image first; unreadable ones are skipped and listed
    allow_unreadable_eval: bool = False  # val/test with unreadable images: an error, or (true) score the rest
    # objective and model
    objective: str = "quadruplet"        # quadruplet (QCS training) | kd (distil a QCS teacher into a timm student)
    model: QCSConfig | StudentConfig = field(default_factory=QCSConfig)  # the network that learns
    distill: DistillConfig | None = None  # objective kd: the teacher and the loss's T, α, β
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
    min_delta: float | None = None       # null: the standard error of the best accuracy on the selection split
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
        for name, hint in typing.get_type_hints(type(self)).items():
            try:
                object.__setattr__(self, name, checked(name, getattr(self, name), hint))
            except TypeError as e:
                raise ConfigError(str(e)) from None
        _choice("dataset", self.dataset, DATASETS)
        try:  # before any data is generated or read
            self.data_options.check(self.dataset)
        except TypeError as e:
            raise ConfigError(str(e)) from None
        _choice("train_split", self.train_split, SPLITS)
        _choice("test_split", self.test_split, SPLITS)
        _choice("selection", self.selection, SELECTIONS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("transform", self.transform, RECIPES)
        try:
            check_hue(self.hue)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.hue != HUE and self.transform == "ferplus":
            raise ConfigError(f"hue={self.hue}: the ferplus recipe has no colour jitter to widen")
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
        if self.patience < 0 or (self.min_delta is not None and self.min_delta < 0) or self.warmup_epochs < 0:
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
        _choice("objective", self.objective, OBJECTIVES)
        if self.objective == "quadruplet" and not isinstance(self.model, QCSConfig):
            raise ConfigError(f"model: objective quadruplet trains a QCS model, got a {self.model.timm_name} student "
                              f"(architecture {ARCHITECTURE}); set objective=kd to distil into it")
        if self.objective == "quadruplet" and self.distill is not None:
            raise ConfigError("distill: is for objective kd only; leave it null for quadruplet training")
        if self.objective == "kd":
            self._check_kd()

    def _check_kd(self):
        if self.distill is None:
            raise ConfigError("distill: objective kd needs the distill section (teacher, temperature, alpha, ...)")
        if not isinstance(self.model, StudentConfig):
            raise ConfigError(f"model: objective kd trains a timm student (model.architecture {ARCHITECTURE}), got "
                              f"the QCS variant {self.model.variant}")
        for name, bad in (("epoch_fraction", self.epoch_fraction != 1), ("oversample", self.oversample),
                          ("backbone_weights", self.backbone_weights)):
            if bad:
                raise ConfigError(f"{name}={getattr(self, name)}: objective kd does not support it (quadruplet "
                                  f"training only); leave it at its default")

    @classmethod
    def from_dict(cls, values: dict, where: str = "config") -> TrainConfig:
        """A config from a mapping of fields whose sections are mappings too (a profile's, or ``to_dict``'s).
        ``model`` is a ``StudentConfig`` if it says ``architecture: timm``, else a ``QCSConfig`` that may name a
        ``size`` (``QCSConfig.sized``); unknown and ill-typed keys are errors."""
        values = dict(values)
        model = dict(values.get("model") or {})
        if model.get("architecture") == ARCHITECTURE:
            values["model"] = build(StudentConfig, model, where, "model.")
        else:
            size = model.pop("size", "paper")
            if size not in SIZES:
                raise ConfigError(f"{where}: model.size must be one of {', '.join(SIZES)}, got {size!r}")
            values["model"] = build(QCSConfig, {**SIZES[size], **model}, where, "model.")
        if values.get("distill") is not None:
            values["distill"] = build(DistillConfig, values["distill"], where, "distill.")
        values["synthfer"] = build(SynthFERSettings, values.get("synthfer") or {}, where, "synthfer.")
        _choice(f"{where}: dataset", values.get("dataset", cls.dataset), DATASETS)
        try:
            values["data_options"] = DataOptions.from_dict(values.get("dataset", cls.dataset),
                                                           values.get("data_options") or {})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
        return build(cls, values, where)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def to_dict(self) -> dict:
        """Plain YAML types: sections as mappings (``data_options``: only the options set), tuples as lists."""
        return _plain({**dataclasses.asdict(self), "data_options": self.data_options.to_dict()})

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def build(cls, values: dict, where: str, prefix: str = ""):
    """``cls(**values)`` for a dataclass, each value checked against its type hint; an unknown key, an ill-typed
    value or one its ``__post_init__`` refuses is a one-line ConfigError naming ``where`` and the key (``prefix``
    + field name, e.g. ``model.units``)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'the config'} must be a mapping of {cls.__name__} "
                          f"fields, got {values!r}")
    hints = typing.get_type_hints(cls)
    if unknown := sorted(set(values) - set(hints)):
        raise ConfigError(f"{where}: unknown key(s) {', '.join(prefix + str(k) for k in unknown)}; known: "
                          f"{', '.join(prefix + k for k in hints)}")
    try:
        values = {k: checked(prefix + k, v, hints[k]) for k, v in values.items()}
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:  # ConfigError included: what __post_init__ refuses
        raise ConfigError(f"{where}: {prefix}{e}" if prefix else f"{where}: {e}") from e


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
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
            if top not in SECTIONS:
                raise ConfigError(f"{where}: {top!r} has no sub-keys, so {key!r} is not a key")
            out[top] = {**(out.get(top) or {}), sub: value}
        else:
            out[top] = value
    return out


def read_profile(profile: str | Path, seen: tuple = ()) -> tuple[Path, dict]:
    """A profile's path and its mapping, with ``base: NAME`` resolved: the base profile's keys first, then this
    one's (``model``, ``synthfer``, ``data_options`` and ``notebooks`` merge key by key)."""
    path = profile_path(profile)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the profile as UTF-8") from e
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
        nested = key in SECTIONS + ("notebooks",) and isinstance(value, dict)
        inherited[key] = {**(inherited.get(key) or {}), **value} if nested else value
    return path, inherited


def load_profile(profile: str | Path = "cpu", overrides: dict | list[str] | None = None) -> TrainConfig:
    """Read a profile and apply overrides (a dict, or ``key=value`` strings) → a validated TrainConfig. A
    ``synthfer_domain`` (the profile's, or an override's) applies between the two (see the module docstring)."""
    path, values = read_profile(profile)
    values.pop("notebooks", None)  # the notebooks' parameters: see notebook_parameters
    if isinstance(overrides, (list, tuple)):
        overrides = parse_overrides(overrides)
    overrides = dict(overrides or {})
    where = f"{path}" + (f" with {', '.join(overrides)} set" if overrides else "")
    domain = overrides.pop("synthfer_domain", values.pop("synthfer_domain", "studio"))
    values = domain_values(apply_overrides({}, values, where=str(path)), domain, where)
    values = apply_overrides(values, overrides)
    config = TrainConfig.from_dict(values, where=where)
    if domain != "studio" and config.dataset != "synthfer":
        raise ConfigError(f"{where}: synthfer_domain {domain!r} applies to dataset synthfer only, not {config.dataset}")
    return config


def domain_values(values: dict, domain, where: str = "config") -> dict:
    """A mapping of TrainConfig fields on SynthFER domain ``domain``: ``DOMAINS[domain]`` over its ``synthfer``
    mapping and ``-<domain>`` after its ``data_root`` (studio: unchanged); an unknown domain is a ConfigError."""
    if domain not in DOMAINS:
        raise ConfigError(f"{where}: synthfer_domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    if domain == "studio":
        return values
    return {**values, "synthfer": {**(values.get("synthfer") or {}), **DOMAINS[domain]},
            "data_root": f"{values.get('data_root', TrainConfig.data_root)}-{domain}"}


def synthfer_domain(config: TrainConfig, domain: str) -> TrainConfig:
    """``config`` on SynthFER domain ``domain`` (``domain_values``), e.g. ``data/synthfer-smoke`` with
    ``max_rotation`` 5 → ``data/synthfer-smoke-pose`` with ``max_rotation`` 15."""
    if domain != "studio" and config.dataset != "synthfer":
        raise ConfigError(f"synthfer_domain {domain!r} applies to dataset synthfer only, not {config.dataset}")
    return TrainConfig.from_dict(domain_values(config.to_dict(), domain))
