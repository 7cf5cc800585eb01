"""Data: dataset adapters, SynthFER, quadruplet sampling, transforms and PyTorch datasets."""
from .datasets import ImageDataset, QuadrupletDataset, decode_images
from .quadruplets import QuadrupletSampler, SamplingError, draw_quadruplets
from .report import data_report
from .sources import (CLASS_NAMES, DATASET_CLASSES, DATASETS, DataError, DataOptions, Split, load_split, read_image,
                      verify_images)
from .synthfer import SynthFERSettings, generate
from .transforms import RECIPES, build_transforms

__all__ = ["ImageDataset", "QuadrupletDataset", "QuadrupletSampler", "decode_images", "SamplingError",
           "draw_quadruplets", "data_report", "CLASS_NAMES", "DATASET_CLASSES", "DATASETS", "DataError", "DataOptions",
           "Split", "load_split", "read_image", "verify_images", "SynthFERSettings", "generate", "RECIPES",
           "build_transforms"]
