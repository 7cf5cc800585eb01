"""int8 against fp32 ONNX for a tiny QCS: top-1 agreement, accuracy and batch-1 latency, static and dynamic.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_speed.py [--runs 300] [--steps 60]

A small SynthFER (48 px, 6 train / 4 test identities × 14 images) is written to a temporary folder; a tiny QCSNet
(seed 0) is fitted for ``--steps`` full-batch Adam steps of cross-entropy on its base branch (so that its
predictions vary and agreement means something; it is not a trained model), saved, and exported by
``qcslib.export.export_int8`` in both modes (static: 64 calibration images). The fp32 ONNX, static int8 and
dynamic int8 models then each run ``--runs`` times at batch 1 (one image, after 10 warm-up runs) in one
onnxruntime session with one intra-op thread, in this one process. Writes reports/bench/int8_speed.json.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from machine import machine_line, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import QCSConfig, QCSNet, save_checkpoint
from qcslib.data.sources import load_split
from qcslib.data.synthfer import SynthFERSettings, generate
from qcslib.export import _images, export, export_int8


def latencies(path: str, image: np.ndarray, runs: int) -> np.ndarray:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(10):
        session.run(None, {"images": image})
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, {"images": image})
        out.append(time.perf_counter() - t)
    return np.array(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthfer"
        settings = SynthFERSettings(size=48, train_identities=6, val_identities=1, test_identities=4,
                                    images_per_identity=14)
        generate(root, settings, workers=1)
        model = QCSNet(QCSConfig.sized("tiny", num_classes=settings.classes))
        size = model.config.image_size
        train = load_split("synthfer", root, "train")
        x, y = torch.from_numpy(_images(train, np.arange(len(train)), "rafdb", size)), torch.from_numpy(train.labels)
        optimizer = torch.optim.Adam(model.base.parameters(), 1e-3)
        model.base.train()
        for _ in range(args.steps):
            loss = torch.nn.functional.cross_entropy(model.base(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        checkpoint = Path(tmp) / "tiny.pt"
        save_checkpoint(checkpoint, model.eval(), classes=list(settings.class_names),
                        train_config={"dataset": "synthfer", "data_root": str(root), "transform": "rafdb"})
        results = {mode: export_int8(checkpoint, Path(tmp) / f"{mode}.onnx", mode) for mode in ("static", "dynamic")}
        paths = {"fp32": export(checkpoint, "onnx", Path(tmp) / "fp32.onnx")["path"],
                 **{mode: r["path"] for mode, r in results.items()}}
        image = _images(load_split("synthfer", root, "test"), np.arange(1), "rafdb", size)
        times = {name: latencies(path, image, args.runs) for name, path in paths.items()}
    print(machine_line(), f"· onnxruntime {onnxruntime.__version__} · final train loss {loss.item():.3f}")
    print("| model | test images | top-1 agreement | accuracy % | Δ accuracy (int8 − fp32) | p50 ms | p95 ms | "
          "p50 speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name, t in times.items():
        r = results.get(name, results["static"])
        row = dict(model=name, test_images=r["test_images"],
                   agreement=1.0 if name == "fp32" else r["top1_agreement"],
                   accuracy=r["fp32_accuracy"] if name == "fp32" else r["int8_accuracy"],
                   delta=0.0 if name == "fp32" else r["accuracy_delta"],
                   p50_ms=1e3 * np.percentile(t, 50), p95_ms=1e3 * np.percentile(t, 95),
                   speedup=np.percentile(times["fp32"], 50) / np.percentile(t, 50), runs=len(t))
        rows.append(row)
        print(f"| {name} | {row['test_images']} | {row['agreement']:.3f} | {row['accuracy']:.1f} | "
              f"{row['delta']:+.1f} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
              f"{row['speedup']:.2f}× |")
    write_json("int8_speed", {"machine": machine_line(), "runs": args.runs, "steps": args.steps, "rows": rows})


if __name__ == "__main__":
    main()
