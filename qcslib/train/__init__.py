"""Training: configuration and profiles, SAM, the quadruplet and distillation losses, the loop (``fit``, and
``distill`` through it), evaluation, the run directory, and the runtime (device, precision)."""
from .config import ConfigError, TrainConfig, load_profile, parse_overrides
from .evaluation import Scores, evaluate, evaluate_checkpoint, predict, score, score_checkpoint
from .loop import TrainingError, distill, fit, load_data
from .losses import distillation_loss, head_names, quadruplet_loss
from .rundir import Run
from .runtime import select_device
from .sam import SAM

__all__ = ["ConfigError", "TrainConfig", "load_profile", "parse_overrides", "Run", "TrainingError", "evaluate",
           "evaluate_checkpoint", "score", "score_checkpoint", "Scores", "fit", "load_data", "predict", "select_device",
           "head_names", "quadruplet_loss", "SAM", "distill", "distillation_loss"]
