"""Batch-1 CPU latency of the paper-size QCS against light students at the paper's 224 px, fp32 and int8.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/student_speed.py [--students resnet10t mobilenetv3_small_100]
                                                                  [--runs 100] [--threads 1]

Every model is untrained (latency does not depend on the weights; agreement and accuracy are not measured here:
notebook 10 measures them on trained students). The paper-size QCSNet (224 px input, 112 px inside the backbone)
runs in PyTorch and as fp32 ONNX; each student (a ``StudentNet`` at 224 px) in PyTorch, as fp32 ONNX, and as
int8 ONNX from ``export_int8`` in static (QDQ, 64 calibration images of a small SynthFER written to a temporary
folder and resized to 224 px by the eval transform) and dynamic mode. Each model runs ``--runs`` times at batch 1
after 10 warm-up runs (``qcslib.latency``), with ``--threads`` threads, one after another in this one process.
Speed-ups are the paper-size QCS's p50 in the same runtime family (PyTorch, or ONNX Runtime) over the model's.
Writes reports/bench/student_speed.json.
"""
import argparse
import tempfile
from pathlib import Path

import onnxruntime

from machine import machine_line, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib import QCSConfig, QCSNet, count_parameters, inference_flops, save_checkpoint
from qcslib.data.synthfer import SynthFERSettings, generate
from qcslib.export import export, export_int8
from qcslib.latency import onnx_latency, torch_latency
from qcslib.models.student import StudentConfig, StudentNet


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", nargs="+", default=["resnet10t", "mobilenetv3_small_100"])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    timing = {"runs": args.runs, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthfer"
        settings = SynthFERSettings(size=64, train_identities=6, val_identities=1, test_identities=1,
                                    images_per_identity=14)
        generate(root, settings, workers=1)
        trained_on = {"dataset": "synthfer", "data_root": str(root), "transform": "rafdb"}
        classes = list(settings.class_names)
        models = {"paper-size QCS": QCSNet(QCSConfig.sized("paper", num_classes=len(classes))).eval()}
        models.update({name: StudentNet(StudentConfig(name, len(classes), 224)).eval() for name in args.students})
        rows = []
        for name, model in models.items():
            checkpoint = Path(tmp) / f"{name}.pt"
            save_checkpoint(checkpoint, model, classes=classes, train_config=trained_on)
            cost = {"params_m": count_parameters(model)["inference"] / 1e6, "gflops": inference_flops(model, 224) / 1e9}
            onnx_files = {"fp32": export(checkpoint, "onnx", Path(tmp) / f"{name}.onnx")["path"]}
            if name in args.students:
                onnx_files.update({f"int8 {mode}": export_int8(checkpoint, Path(tmp) / f"{name}.{mode}.onnx", mode,
                                                               test_images=8)["path"] for mode in ("static", "dynamic")})
            rows.append({"model": name, "runtime": "PyTorch", "precision": "fp32", **cost,
                         **torch_latency(model, image_size=224, **timing)})
            rows += [{"model": name, "runtime": "ONNX Runtime", "precision": precision, **cost,
                      **onnx_latency(path, 224, **timing)} for precision, path in onnx_files.items()]
    reference = {r["runtime"]: r["p50_ms"] for r in rows if r["model"] == "paper-size QCS"}
    print(machine_line(), f"· onnxruntime {onnxruntime.__version__} · {args.threads} thread(s) · batch 1 · 224 px · "
          f"{args.runs} timed runs each")
    print("| model | runtime | precision | params (M) | GFLOPs | p50 ms | p95 ms | speed-up over paper-size QCS, "
          "same runtime | over paper-size QCS in PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        r.update(speedup=reference[r["runtime"]] / r["p50_ms"], speedup_torch=reference["PyTorch"] / r["p50_ms"])
        print(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['params_m']:.2f} | {r['gflops']:.3f} | "
              f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['speedup']:.1f}× | {r['speedup_torch']:.1f}× |")
    write_json("student_speed", {"machine": machine_line(), **timing, "rows": rows})


if __name__ == "__main__":
    main()
