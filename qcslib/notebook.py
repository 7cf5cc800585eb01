"""What the numbered notebooks share: their parameters, one set-up call, and loading the runs they study.

A notebook takes the run parameters ``profile``, ``dataset``, ``data_root``, ``run_dir`` and ``device``
(None: the profile's; the runs go to ``run_dir = <runs_dir>/<name>``) and some of the
``NotebookParameters`` (None: the profile's ``notebooks:`` value, else the field's default). The pipeline
injects every one of them with papermill; a notebook run by hand or by nbval takes ``profile`` from
``$QCS_PROFILE`` and the rest from that profile. ``setup`` turns them into the TrainConfig and the
checked parameters::

    config, params = notebook.setup(profile, dataset=dataset, data_root=data_root, run_dir=run_dir,
                                    device=device, seeds=seeds)

Notebooks 04-06 study the ablation runs: they pass ``ablation_overrides``, and get the config with those
applied; with any, the runs go to ``run_dir/ablation``, so that shortened runs never replace 02's run. 05 and 06
also pass ``map_overrides`` (a resolution whose token grid can localise): with any, their runs go to
``run_dir/maps``.
Notebook 08 sets up twice: with ``ablation_overrides`` for 04's runs, and without for the profile's own.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch

from .ablation import reuse_or_fit, train_variants, variant_config
from .export import INT8_MODES
from .paper import parse_domain_overrides
from .students import parse_distill_overrides
from .analysis import cam, embedding
from .analysis.metrics import au_oracle
from .analysis.calibration import scaled
from .confidence import calibrate, ours
from .data.sources import DATASET_CLASSES, DATASETS, SPLITS, Split, load_split, verify_images
from .data.photo_clip import write_photo_clip
from .data.synthfer import DOMAINS
from .data.synthfer.video import ClipFaces, ClipSettings, write_clips
from .models.weights import LoadReport, load_checkpoint
from .train.evaluation import Scores, score_checkpoint
from .train.config import ConfigError, TrainConfig, load_profile, parse_overrides, read_profile
from .data.transforms import recipe_for
from .typed import checked
from .video import VideoFile, predict_video
from .video.nuisance import degrade_clip
from .train.runtime import select_device

ROOT = Path(__file__).resolve().parents[1]
RUN_PARAMETERS = ("profile", "dataset", "data_root", "run_dir", "device")


@dataclass(frozen=True)
class NotebookParameters:
    """What the notebooks take beyond one run's config; a profile's ``notebooks:`` mapping may set any of them.
    Each field is checked against its type hint (``typing.get_type_hints``) and keeps the value as the hint takes
    it (``"1e-1"`` for a float: 0.1); counts are at least 1."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # 04's main variants; the others use seeds[0]
    ablation_seeds: list[int] = field(default_factory=lambda: [0])  # 04's other variants
    ablation_overrides: list[str] = field(default_factory=list)  # key=value overrides of the runs 04-06 study
    map_overrides: list[str] = field(default_factory=list)  # 05, 06: more overrides of their runs (a resolution whose
                                    # token grid can localise, e.g. model.image_size=64); empty: 04's runs
    parallel_runs: int = 1          # 04: runs trained at once (worker processes sharing the CPU threads)
    n_gpus: int = 1                 # 02: > 1 trains with torchrun on that many GPUs
    force: bool = False             # 02, 04: retrain runs that are finished
    reuse_stale: bool = False       # reuse finished runs trained by other code (named in the reports)
    samples_per_class: int = 6      # 01
    quadruplets_shown: int = 4      # 01
    checkpoint: str = ""            # 03, 07: a checkpoint path; empty: 02's QCS run (seed seeds[0])
    mistakes_shown: int = 12        # 03
    eval_dataset: str = ""          # 03: score on this dataset (one of DATASETS); empty: the run's
    eval_root: str = ""             # 03: eval_dataset's root (needed with it); empty: the run's data_root
    eval_split: str = ""            # 03: the split scored; empty: the run's test_split
    tsne_points: int = 1000         # 05: test images embedded
    cam_images: int = 8             # 06: test images shown with their Grad-CAMs
    localisation_images: int = 200  # 06: test images scored against SynthFER's masks
    photos: str = ""                # 07: a photo or a folder of them; empty: scikit-image's astronaut
    classes: str = ""               # 03, 07: the dataset an official checkpoint (it stores no class names) was
                                    # trained on, giving its label order (rafdb, ferplus, ...); empty: 03 takes the
                                    # scored dataset's, 07 refuses
    val_clips: int = 5              # 09: SynthFER clips the smoother is chosen on (other people than the test ones)
    test_clips: int = 10            # 09: held-out SynthFER clips the chosen smoother is reported on
    clip_seconds: float = 9.0       # 09: each clip's length (one expression per 3 s)
    clip_fps: float = 10.0          # 09: their frame rate
    nuisance: float = 0.5           # 09: the strength of real-video nuisances the smoother is chosen and reported at
    nuisance_sweep: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0])  # 09: strengths reported
    every: int = 1                  # 09: detect faces every K frames, track them in between
    smooth: float = 0.5             # 09: the EMA's time constant in seconds for the real clip (0: no smoothing)
    smooth_sweep: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0, 2.0])  # 09: the EMA's τs tried
    hysteresis_sweep: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3])  # 09: the margins tried
    video: str = ""                 # 09: a video file to read; empty: a clip made of real photos
    student: str = "resnet10t"      # 10: the students' timm network
    student_seeds: list[int] = field(default_factory=list)  # 10: the students' seeds; empty: seeds
    temperature: float = 4.0        # 10: KD's temperature T
    alpha: float = 0.9              # 10: KD's weight α (the labels-only students have 0)
    beta: float = 1.0               # 10: the feature term's weight β (kd_feature students only)
    distill_overrides: list[str] = field(default_factory=list)  # 10: key=value overrides of the students' recipe
    int8: str = "auto"              # 10: the int8 export mode (auto, static or dynamic)
    latency_runs: int = 100         # 10: timed batch-1 runs per model
    official_checkpoints: list[str] = field(default_factory=list)  # 08: "dataset=path" checkpoints (e.g. the
                                    # authors'), scored on that dataset's test split and across datasets
    domains: list[str] = field(default_factory=lambda: list(DOMAINS))  # 08: the SynthFER domains of the matrix
    domain_overrides: list[str] = field(default_factory=list)  # 08: key=value overrides of the domain runs

    def __post_init__(self):
        for name, hint in typing.get_type_hints(type(self)).items():
            try:
                value = checked(name, getattr(self, name), hint)
            except TypeError as e:
                raise ConfigError(str(e)) from None
            object.__setattr__(self, name, value)  # frozen: the checked value replaces the raw one
            if hint is int and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
            if hint is float and value < 0:
                raise ConfigError(f"{name} must be at least 0, got {value}")
        if min(self.student_seeds, default=0) < 0:
            raise ConfigError(f"student_seeds must be seeds ≥ 0 (empty: seeds), got {self.student_seeds}")
        if not self.smooth_sweep or min(self.smooth_sweep) < 0:
            raise ConfigError(f"smooth_sweep must be a non-empty list of seconds ≥ 0, got {self.smooth_sweep}")
        if not all(0 <= m < 1 for m in self.hysteresis_sweep):
            raise ConfigError(f"hysteresis_sweep must be margins in [0, 1), got {self.hysteresis_sweep}")
        if not 0 <= self.nuisance <= 1 or not self.nuisance_sweep or not all(0 <= s <= 1 for s in self.nuisance_sweep):
            raise ConfigError(f"nuisance and nuisance_sweep must be strengths in [0, 1], got {self.nuisance} and "
                              f"{self.nuisance_sweep}")
        for name in ("seeds", "ablation_seeds"):
            if not getattr(self, name) or min(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be a non-empty list of seeds ≥ 0, got {getattr(self, name)}")
        if self.classes and self.classes not in DATASET_CLASSES:
            raise ConfigError(f"classes must be empty or one of {', '.join(DATASET_CLASSES)}, got {self.classes!r}")
        if self.eval_dataset and self.eval_dataset not in DATASETS:
            raise ConfigError(f"eval_dataset must be empty or one of {', '.join(DATASETS)}, got {self.eval_dataset!r}")
        if self.eval_split and self.eval_split not in SPLITS:
            raise ConfigError(f"eval_split must be empty or one of {', '.join(SPLITS)}, got {self.eval_split!r}")
        if self.eval_dataset and not self.eval_root:
            raise ConfigError(f"eval_root: where {self.eval_dataset}'s data is must be given with eval_dataset")
        if not self.domains or len(set(self.domains)) < len(self.domains) or set(self.domains) - set(DOMAINS):
            raise ConfigError(f"domains must be distinct names of {', '.join(DOMAINS)}, got {self.domains}")
        if self.int8 not in INT8_MODES:
            raise ConfigError(f"int8 must be one of {', '.join(INT8_MODES)}, got {self.int8!r}")
        if not 0 <= self.alpha <= 1 or not self.temperature > 0:
            raise ConfigError(f"need 0 ≤ alpha ≤ 1 and temperature > 0, got alpha={self.alpha}, "
                              f"temperature={self.temperature}")
        if not timm.is_model(self.student):
            raise ConfigError(f"student: {self.student!r} is not a timm model name (e.g. resnet10t)")
        official_checkpoints(self.official_checkpoints)
        parse_domain_overrides(self.domain_overrides)
        parse_distill_overrides(self.distill_overrides)

    def override(self, changes: dict, where: str = "") -> NotebookParameters:
        """A copy with ``changes``; an unknown or ill-typed one is a ConfigError whose message is ``where``
        (e.g. ``"cpu.yaml: notebooks."``) followed by the key and what is wrong with it."""
        known = [f.name for f in dataclasses.fields(self)]
        if unknown := [k for k in changes if k not in known]:
            raise ConfigError(f"{where}{unknown[0]}: not a notebook parameter; known: {', '.join(known)}")
        try:
            return dataclasses.replace(self, **changes)
        except ConfigError as e:
            raise ConfigError(f"{where}{e}") from None


def official_checkpoints(entries: list[str]) -> dict[str, Path]:
    """``["rafdb=ckpt/raf.pth", ...]`` → ``{"rafdb": Path("ckpt/raf.pth"), ...}``: one checkpoint a dataset of
    ``DATASET_CLASSES``, each an existing file (a relative path starts at the project root, as the notebooks'
    paths do); anything else is a one-line ConfigError."""
    out = {}
    for entry in entries:
        dataset, sep, path = entry.partition("=")
        if not sep or dataset not in DATASET_CLASSES or not path:
            raise ConfigError(f"official_checkpoints: {entry!r} is not DATASET=PATH with DATASET one of "
                              f"{', '.join(DATASET_CLASSES)}")
        if dataset in out:
            raise ConfigError(f"official_checkpoints: two checkpoints for {dataset}")
        if not (ROOT / path).is_file():
            raise ConfigError(f"official_checkpoints: {entry!r}: no file at {path}")
        out[dataset] = Path(path)
    return out


def notebook_parameters(profile: str | Path = "cpu") -> NotebookParameters:
    """The profile's ``notebooks:`` mapping (``base`` profiles merged) over the defaults, checked: an unknown or
    ill-typed key, or an ablation override that makes no valid config, is a one-line ConfigError naming the
    profile file and the key."""
    path, values = read_profile(profile)
    given = values.get("notebooks") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"{path}: notebooks must be a mapping of notebook parameters")
    params = NotebookParameters().override(given, f"{path}: notebooks.")
    for name in ("ablation_overrides", "domain_overrides", "distill_overrides"):
        try:
            load_profile(profile, getattr(params, name))
        except ConfigError as e:
            rest = str(e).removeprefix(str(path))  # "<path> with KEY set: ..." when the config refused a value
            raise ConfigError(f"{path}: notebooks.{name}{rest if rest != str(e) else ': ' + rest}") from None
    return params


def setup(profile: str | Path, *, dataset: str | None = None, data_root: str | None = None,
          run_dir: str | None = None, device: str | None = None,
          **parameters) -> tuple[TrainConfig, NotebookParameters]:
    """A notebook's first call → (the TrainConfig of the runs it studies, its NotebookParameters).

    It works from the project root (the paths in the parameters start there) and shows table cells whole.
    ``parameters`` are NotebookParameters fields; None, like a run parameter that is None, means the profile's.
    Passing ``ablation_overrides`` (04-06) applies them; with any, the runs go to ``run_dir/ablation``. Passing
    ``map_overrides`` too (05, 06) applies them after those; with any, the runs go to ``run_dir/maps``."""
    os.chdir(ROOT)
    pd.set_option("display.max_colwidth", None)  # table cells are sentences: show them whole
    params = notebook_parameters(profile).override({k: v for k, v in parameters.items() if v is not None},
                                                   "notebook parameter ")
    where = {k: v for k, v in {"dataset": dataset, "data_root": data_root, "device": device}.items() if v is not None}
    if run_dir is not None:
        where.update(runs_dir=str(Path(run_dir).parent), name=Path(run_dir).name)
    config = load_profile(profile, where)
    studied, name = dict(where), None
    if "ablation_overrides" in parameters and params.ablation_overrides:
        studied, name = {**studied, **parse_overrides(params.ablation_overrides)}, "ablation"
    if "map_overrides" in parameters and params.map_overrides:
        studied, name = {**studied, **parse_overrides(params.map_overrides)}, "maps"
    if name is not None:
        config = load_profile(profile, studied).replace(runs_dir=str(config.run_dir), name=name)
    return config, params


def qcs_checkpoint(config: TrainConfig, checkpoint: str, seed: int, reuse_stale: bool = False) -> Path:
    """``checkpoint``, or (empty) the best.pt of this profile's QCS run of ``seed``, the run notebook 02 trains
    (trained here when it has not finished, or was trained by other code: ``reuse_or_fit``)."""
    if checkpoint:
        return Path(checkpoint)
    return reuse_or_fit(variant_config(config, "qcs", seed), reuse_stale=reuse_stale).best_checkpoint


def recipe(config: TrainConfig, checkpoint_meta: dict) -> str:
    """The transform recipe a checkpoint is scored with: the one it was trained with (our checkpoints store it),
    else the dataset's (official checkpoints store none), else the config's."""
    return recipe_for(config.dataset, checkpoint_meta, default=config.transform)


@dataclass(frozen=True)
class Loaded:
    """Models loaded from checkpoints, with the test split they are studied on."""

    models: dict[str, torch.nn.Module]  # name → model, in eval mode, on `device`
    reports: dict[str, LoadReport]      # name → what loading its checkpoint found
    test: Split                         # the config's test split
    recipe: str                         # the transform recipe the models are scored with (``recipe``)
    device: torch.device


def load_on_test(config: TrainConfig, checkpoints: dict[str, str | Path], verify: bool = False) -> Loaded:
    """Load each ``{name: checkpoint}`` onto the config's device, with the config's test split (``verify``: every
    image decoded first, unreadable ones left out and listed). The checkpoints must share one recipe."""
    device = select_device(config.device)
    loaded = {name: load_checkpoint(path) for name, path in checkpoints.items()}
    recipes = {name: recipe(config, report.meta) for name, (_, report) in loaded.items()}
    if len(set(recipes.values())) > 1:
        raise ValueError(f"the checkpoints were trained with different transform recipes: {recipes}")
    test = load_split(config.dataset, config.data_root, config.test_split, **config.data_options.to_dict())
    return Loaded({name: model.to(device) for name, (model, _) in loaded.items()},
                  {name: report for name, (_, report) in loaded.items()},
                  verify_images(test) if verify else test, next(iter(recipes.values())), device)


def evaluation_split(config: TrainConfig, params: NotebookParameters) -> Split:
    """03's split, every image decoded (the unreadable ones left out and listed): ``eval_split`` (empty: the config's
    test split) of ``eval_dataset`` at ``eval_root`` (empty: the run's dataset, with its data options, at the run's
    data root). Another dataset is read with its default options."""
    dataset = params.eval_dataset or config.dataset
    options = config.data_options.to_dict() if dataset == config.dataset else {}
    return verify_images(load_split(dataset, params.eval_root or config.data_root,
                                    params.eval_split or config.test_split, **options))


def evaluate(config: TrainConfig, params: NotebookParameters, checkpoint: str | Path) -> tuple[LoadReport, Scores]:
    """03: ``checkpoint`` loaded onto the config's device and scored on ``evaluation_split`` → (what loading
    found, its ``Scores``). Classes are matched by name (``train.evaluation.score_checkpoint``): an official
    checkpoint, which stores none, takes those of ``params.classes`` (its ``trained_on``) or else the split's."""
    device = select_device(config.device)
    model, report = load_checkpoint(checkpoint)
    scores = score_checkpoint(model.to(device), report, evaluation_split(config, params), params.classes or None,
                              device=device)
    return report, scores


def confidence(config: TrainConfig, checkpoint: str | Path, scores: Scores) -> tuple[dict | None, dict]:
    """03: a temperature fitted on ``checkpoint``'s val split and stored in it (``confidence.calibrate``) →
    (its summary, ``{"before": p, "after": p}`` for ``scores``' images); an official checkpoint is not ours to
    write, so (None, ``{"uncalibrated": p}``)."""
    if not ours(checkpoint):
        return None, {"uncalibrated": scores.probabilities}
    summary = calibrate(checkpoint, device=config.device)
    return summary, {"before": scores.probabilities, "after": scaled(scores.probabilities, summary["temperature"])}


def load_pair(config: TrainConfig, seed: int, variants: tuple[str, ...] = ("baseline", "qcs"),
              reuse_stale: bool = False) -> Loaded:
    """The runs of ``variants`` of ``seed`` (trained here unless 04 finished them with this config and this
    code), their best.pt (chosen on the selection split) loaded as ``models[variant]``."""
    runs = train_variants(config, {v: [seed] for v in variants}, reuse_stale=reuse_stale)
    return load_on_test(config, {r.variant: Path(r.run_dir) / "best.pt" for r in runs.itertuples()})


EMBEDDED = ("baseline", "baseline_matched", "qcs")  # the variants 05 embeds and 06 scores


def localisations(config: TrainConfig, seeds: list[int], images: int, reuse_stale: bool = False
                  ) -> dict[int, pd.DataFrame | None]:
    """06: for each seed, ``cam.localisation`` of the ``EMBEDDED`` runs (``load_pair``) on ``images`` test images
    drawn with the seed (``sample``) → ``{seed: table}`` (None off SynthFER)."""
    tables = {}
    for seed in seeds:
        pair = load_pair(config, seed, EMBEDDED, reuse_stale)
        tables[seed] = cam.localisation(pair.models, sample(pair.test, images, seed), pair.recipe)
    return tables


@dataclass(frozen=True)
class Embeddings:
    """05's study: the scores of every seed, and the first seed's test features for its t-SNE."""

    scores: pd.DataFrame             # one row per variant and seed: silhouette, knn_accuracy, k
    test: Split                      # the first seed's sample of test images
    features: dict[str, np.ndarray]  # variant → its features of ``test`` (first seed)
    first: pd.DataFrame              # the first seed's scores, one row per variant (index)


def embeddings(config: TrainConfig, seeds: list[int], points: int, reuse_stale: bool = False) -> Embeddings:
    """For each seed: the ``EMBEDDED`` runs (``load_pair``), ``points`` test and ``points`` train images drawn
    with the seed (``sample``), each model's features of both, and ``embedding.scores_by_model`` (the k-NN fitted
    on the train images, scored on the test images)."""
    rows, first = [], None
    for seed in seeds:
        loaded = load_pair(config, seed, EMBEDDED, reuse_stale)  # generates the data first, where it must
        train = load_split(config.dataset, config.data_root, config.train_split, **config.data_options.to_dict())
        test, reference = sample(loaded.test, points, seed), sample(train, points, seed)
        features = embedding.features_by_model(loaded.models, test, loaded.recipe, device=loaded.device)
        known = embedding.features_by_model(loaded.models, reference, loaded.recipe, device=loaded.device)
        scores = embedding.scores_by_model(known, reference.labels, features, test.labels)
        rows.append(scores.rename_axis("variant").reset_index().assign(seed=seed))
        first = first or (test, features, scores)
    return Embeddings(pd.concat(rows, ignore_index=True), *first)


def sample(split: Split, n: int, seed: int = 0) -> Split:
    """``n`` images of ``split`` drawn at random without replacement (all of them when it has fewer), kept in
    the split's order."""
    rng = np.random.default_rng(seed)
    return split.subset(np.sort(rng.choice(len(split), min(n, len(split)), replace=False)))


def chance(config: TrainConfig) -> float:
    """The accuracy of guessing: 1 / the number of classes."""
    return 1 / config.model.num_classes


def au_ceiling(config: TrainConfig) -> dict | None:
    """``au_oracle`` of the config's SynthFER (what its true action units allow); None for other datasets, which
    store no action units."""
    return au_oracle(Path(config.data_root) / "meta.csv") if config.dataset == "synthfer" else None


def bounds(config: TrainConfig) -> dict:
    """``{chance, ceiling}``: the accuracy of guessing and the AU-oracle's test accuracy (None off SynthFER)."""
    ceiling = au_ceiling(config)
    return {"chance": chance(config), "ceiling": None if ceiling is None else ceiling["test_accuracy"]}


def show(table: pd.DataFrame | None, note: str):
    """What a cell shows: the table, or, where there is none (None), the note saying why, as markdown."""
    from IPython.display import Markdown

    return Markdown(note) if table is None else table


def photo_folder(photos: str, run_dir: str | Path) -> Path:
    """``photos`` (a photo or a folder of them), or (empty) ``run_dir/photos`` with scikit-image's astronaut photo
    written into it."""
    if photos:
        return Path(photos)
    from PIL import Image
    from skimage import data

    photos = Path(run_dir) / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(photos / "astronaut.png")
    return photos


def synthfer_clips(config: TrainConfig, params: NotebookParameters) -> dict[str, list[dict]]:
    """09's SynthFER clips, rendered into ``run_dir/video/synthfer/{val,test}``, of ``params.clip_seconds`` at
    ``params.clip_fps``, drawn like the profile's SynthFER (its size, classes and look; the size made even):
    ``params.val_clips`` clips with seed ``config.seed + 1`` (other people) to choose the smoother on, and
    ``params.test_clips`` with seed ``config.seed`` to report it on → ``{split: write_clips' records}``."""
    look = config.synthfer
    out = {}
    for split, seed, count in (("val", config.seed + 1, params.val_clips), ("test", config.seed, params.test_clips)):
        settings = ClipSettings(seed=seed, fps=params.clip_fps, seconds=params.clip_seconds,
                                size=look.size + look.size % 2, classes=look.classes, look=look)
        out[split] = write_clips(Path(config.run_dir) / "video" / "synthfer" / split, settings, count)
    return out


def read_clips(predictor, clips: dict[str, list[dict]], params: NotebookParameters) -> dict:
    """The clips of ``synthfer_clips`` degraded by ``video.nuisance.degrade_clip`` (seeded by the clip's index;
    the validation clips at ``params.nuisance``, the test clips at every strength of ``params.nuisance_sweep``, at
    ``params.nuisance`` and at 0, as rendered), each read by ``predict_video`` with its truth as the face detector,
    raw (the smoothers are applied afterwards, ``temporal.resmoothed``) → ``{"val": summaries, "test": {strength:
    summaries}}``."""
    def read(split: str, strength: float) -> list[dict]:
        folder = Path(clips[split][0]["video"]).parent.with_name(f"{split}-nuisance-{strength:g}")
        degraded = [degrade_clip(c["video"], c["truth"], folder, strength, seed=k) for k, c in enumerate(clips[split])]
        return predict_clips(predictor, degraded, params)

    strengths = sorted(set(params.nuisance_sweep) | {params.nuisance, 0.0})
    return {"val": read("val", params.nuisance), "test": {s: read("test", s) for s in strengths}}


def predict_clips(predictor, clips: list[dict], params: NotebookParameters) -> list[dict]:
    """Each SynthFER clip through ``predict_video`` with its truth as the face detector (``ClipFaces``), every
    ``params.every`` frames, unsmoothed → the summaries, each with its ``truth``."""
    results = []
    for clip in clips:
        out = Path(clip["video"]).with_suffix("")  # clip000.mp4 → clip000/
        summary = predict_video(predictor, VideoFile(clip["video"]), out, ClipFaces(clip["truth"]),
                                every=params.every, progress=False)
        results.append({**summary, "truth": clip["truth"]})
    return results


def predict_real_video(predictor, config: TrainConfig, params: NotebookParameters) -> dict:
    """``params.video``, or (empty) a clip made of real photos (``data.photo_clip``) written to
    ``run_dir/video/photos.mp4``, through ``predict_video`` with MTCNN → its summary (``photos``: which frames
    show which photo, for the clip made here)."""
    folder = Path(config.run_dir) / "video"
    clip = {"video": params.video} if params.video else write_photo_clip(folder / "photos.mp4")
    summary = predict_video(predictor, VideoFile(clip["video"]), folder / Path(clip["video"]).stem,
                            every=params.every, smooth=params.smooth, progress=False)
    return {**summary, "photos": clip.get("photos")}
