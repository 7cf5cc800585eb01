"""What the benchmarks print about the machine they ran on."""
import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """Date, CPU, torch threads, torch version and GPU (or "no GPU"): the first line of a benchmark's table."""
    import datetime

    import torch

    gpu = f" · {torch.cuda.get_device_name()}" if torch.cuda.is_available() else " · no GPU"
    return (f"{datetime.date.today()} · {cpu_name()} · {torch.get_num_threads()} threads · torch {torch.__version__}"
            + gpu)


def write_json(name: str, payload: dict) -> None:
    """Write ``payload`` to ``reports/bench/<name>.json`` (git-ignored), where every benchmark leaves its numbers."""
    import json
    from pathlib import Path

    out = Path(__file__).resolve().parents[1] / "reports" / "bench" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
