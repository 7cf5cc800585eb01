"""Where and how a run computes: the device, autocast, channels_last, and Ctrl-C between steps."""
from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import threading
import time
from pathlib import Path

import torch

from .config import ConfigError


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    return names[0].strip() if names else platform.processor() or platform.machine()


def matmul_gflops(dtype: torch.dtype = torch.float32, threads: int | None = None, size: int = 2048,
                  seconds: float = 3.0) -> float:
    """This CPU's measured matmul rate: the best GFLOP/s of ``size × size`` matmuls in ``dtype`` on ``threads`` torch
    threads (all by default) over about ``seconds`` of repeats, 2 n³ FLOPs each: the denominator of an MFU, and
    what makes timings on different machines comparable."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        torch.mm(a, b)  # warm-up
        best, end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * size ** 3 / best / 1e9


def machine() -> dict:
    """This machine as a timing records it: its CPU, its cores and its fp32 matmul rate (``matmul_gflops``, 1 s)."""
    return {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)),
            "fp32_matmul_gflops": round(matmul_gflops(seconds=1.0), 1)}


def describe_machine(recorded: dict | None) -> str:
    """A ``machine()`` record in words: "CPU, N cores, fp32 matmul R GFLOP/s"; None (not recorded) says so."""
    if not recorded:
        return "machine not recorded"
    return f"{recorded['cpu']}, {recorded['cores']} cores, fp32 matmul {recorded['fp32_matmul_gflops']:.0f} GFLOP/s"


def select_device(name: str = "auto") -> torch.device:
    """``auto``: cuda if there is one, then mps, then cpu. A named device that is missing is an error."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(k for k in ("cuda", "mps", "cpu") if available[k])
    if not available.get(name, False):
        raise ConfigError(f"device {name!r} is not available here (cuda: {available['cuda']}, "
                          f"mps: {available['mps']})")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: fp32). ``auto`` is bf16 on CUDA, fp16 where bf16 is missing, fp32 elsewhere."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("precision fp16 needs a GPU; use fp32 or bf16 on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype``, or nothing for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """``x`` on ``device`` (non-blocking), in channels_last memory format if asked."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class Interrupt:
    """Turns the first Ctrl-C (SIGINT) into a flag the loop checks between steps; a second one is immediate."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
