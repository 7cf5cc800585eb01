"""CPU latency at batch 1: how long one face takes through a PyTorch model or an ONNX file.

Latency is the wall time of one forward pass on one random image (batch 1, the model's input side), after
``warmup`` passes, repeated ``runs`` times in this process with ``threads`` CPU threads (1 by default: one
face on one core, the figure that compares across machines best); the summary is the 50th and 95th
percentile in milliseconds. PyTorch models run eager in ``inference_mode``, ONNX files in one ONNX Runtime
session on the CPU provider. Parameters and FLOPs: ``models.qcs.count_parameters`` and ``inference_flops``,
which read a StudentNet as well.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn


def timed(call: Callable[[], object], runs: int, warmup: int = 10) -> dict:
    """``call()`` ``warmup`` times, then ``runs`` times timed → ``{p50_ms, p95_ms, runs}``."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs ≥ 1 and warmup ≥ 0, got {runs} and {warmup}")
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    p50, p95 = 1e3 * np.percentile(seconds, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "runs": runs}


def torch_latency(model: nn.Module, runs: int = 100, warmup: int = 10, threads: int = 1,
                  image_size: int | None = None) -> dict:
    """``timed`` batch-1 forward passes of a PyTorch model on the CPU with ``threads`` threads (restored after)."""
    size = image_size or model.config.image_size
    images = torch.randn(1, 3, size, size)
    model = model.cpu().eval()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return timed(lambda: model(images), runs, warmup)
    finally:
        torch.set_num_threads(before)


def onnx_latency(path: str | Path, image_size: int, runs: int = 100, warmup: int = 10, threads: int = 1) -> dict:
    """``timed`` batch-1 runs of an ONNX model (input ``images``) in one ONNX Runtime CPU session."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"images": np.random.default_rng(0).standard_normal((1, 3, image_size, image_size), dtype=np.float32)}
    return timed(lambda: session.run(None, feed), runs, warmup)
