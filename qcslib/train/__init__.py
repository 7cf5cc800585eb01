"""Training: configuration and profiles, SAM, the quadruplet loss, and the fit / evaluate engine."""
from .config import ConfigError, TrainConfig, load_profile, parse_overrides
from .engine import Run, TrainingError, evaluate, fit, load_data, predict, select_device
from .losses import head_names, quadruplet_loss
from .sam import SAM

__all__ = ["ConfigError", "TrainConfig", "load_profile", "parse_overrides", "Run", "TrainingError", "evaluate", "fit",
           "load_data", "predict", "select_device", "head_names", "quadruplet_loss", "SAM"]
