"""The QCS model: IR-50 backbone, token ViT, CSA functions, cross module, variants and weight loading."""
from .qcs import (BRANCHES, SIZES, BaseNet, QCSConfig, QCSNet, TrainOutput, count_parameters,
                  inference_flops)
from .weights import (CheckpointError, LoadReport, load_backbone_weights, load_checkpoint,
                      load_official_checkpoint, save_checkpoint)

__all__ = ["BRANCHES", "SIZES", "BaseNet", "QCSConfig", "QCSNet", "TrainOutput", "count_parameters",
           "inference_flops", "CheckpointError", "LoadReport", "load_backbone_weights", "load_checkpoint",
           "load_official_checkpoint", "save_checkpoint"]
