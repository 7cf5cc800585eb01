"""Input pipeline: quadruplets/s the training loader delivers, with and without the decoded uint8 cache.

    .venv/bin/python benchmarks/loader_speed.py [--root data/synthfer] [--sizes 224 48] [--workers 0 2] [--quads 512]

The loader of ``fit``: ``QuadrupletSampler`` → ``QuadrupletDataset`` (4 images, each with its own RAF-DB train
augmentation) → batches of 32. Without the cache every image is decoded from its PNG each time; with it, from
a (N, s, s, 3) uint8 array decoded once (the time to build it is printed apart). With ``augment_on_device`` the
loader only decodes and resizes; the rest's cost, measured on this CPU, is printed apart. Compare with the training
step's quadruplets/s (train_speed.py) to see whether the loader can feed the model.

``--end-to-end`` measures instead what ``fit`` spends on its input on a CPU with the decoded cache, in one
process: the per-image path (PIL augmentation in ``QuadrupletDataset``) against ``augment_on_device`` (batches
gathered from the cache by ``CachedQuadruplets``, then ``BatchAugment``), augmented quadruplets/s and their
ratio. Writes reports/bench/loader_speed.json.
"""
import argparse
import datetime
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from machine import cpu_name, write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib.data import (QuadrupletDataset, QuadrupletSampler, SynthFERSettings, build_transforms, decode_images,
                         generate, load_split)
from qcslib.data.datasets import CachedQuadruplets, as_batch
from qcslib.data.transforms import build_split_transforms


def rate(split, size, cache, workers, quads, split_transform) -> float:
    sampler = QuadrupletSampler(split.labels, seed=0, num_anchors=quads)
    transform = build_split_transforms("rafdb", size)[0] if split_transform else build_transforms("rafdb", size, True)
    loader = DataLoader(QuadrupletDataset(split, transform, cache), batch_size=32,
                        sampler=sampler, num_workers=workers, persistent_workers=workers > 0,
                        prefetch_factor=4 if workers else None)
    next(iter(loader))  # workers started
    t = time.perf_counter()
    n = sum(len(batch[-1]) for batch in loader)
    return n / (time.perf_counter() - t)


def end_to_end(split, size, cache, quads, batched: bool, repeats: int = 3) -> float:
    """Augmented quadruplets/s, loader and augmentation together, one process, the best of ``repeats``."""
    sampler = QuadrupletSampler(split.labels, seed=0, num_anchors=quads)
    if batched:
        loader = DataLoader(CachedQuadruplets(split, cache), batch_size=64, sampler=sampler, collate_fn=as_batch)
        augment = build_split_transforms("rafdb", size)[1]
    else:
        loader = DataLoader(QuadrupletDataset(split, build_transforms("rafdb", size, True), cache), batch_size=64,
                            sampler=sampler)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for batch in loader:
            if batched:
                [augment(x) for x in batch[:4]]
        best = max(best, quads / (time.perf_counter() - t))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="a SynthFER directory (default: generate 1,400 images to a temp dir)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 48])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, os.cpu_count()])
    parser.add_argument("--quads", type=int, default=512)
    parser.add_argument("--end-to-end", action="store_true", help="per-image PIL vs batched augmentation only")
    args = parser.parse_args()
    root = Path(args.root) if args.root else generate(Path("/tmp/qcs-loader-bench"), SynthFERSettings(
        train_identities=20, val_identities=1, test_identities=8, images_per_identity=50))
    split = load_split("synthfer", root, "train")
    machine = f"{datetime.date.today()} · {cpu_name()} · {os.cpu_count()} cores · torch {torch.__version__}"
    if args.end_to_end:
        rows = []
        for size in args.sizes:
            cache = decode_images(split, size, progress=False)
            pil, batched = (end_to_end(split, size, cache, args.quads, b) for b in (False, True))
            rows.append(dict(size=size, per_image_pil=round(pil, 1), batched=round(batched, 1),
                             ratio=round(batched / pil, 2)))
        print(f"\n{machine} · augmented quadruplets/s from the decoded cache, one process\n")
        print("| image size | per-image PIL | CachedQuadruplets + BatchAugment | ratio |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['size']} | {r['per_image_pil']} | {r['batched']} | {r['ratio']}× |")
        write_json("loader_speed_end_to_end", {"machine": machine, "rows": rows})
        return
    rows = []
    for size in args.sizes:
        t = time.perf_counter()
        cache = decode_images(split, size)
        build = time.perf_counter() - t
        for workers in args.workers:
            for cached in (False, True):
                for on_device in (False, True):
                    qps = rate(split, size, cache if cached else None, workers, args.quads, on_device)
                    rows.append(dict(size=size, workers=workers, cache=cached, augment_on_device=on_device,
                                     quadruplets_per_s=round(qps, 1), images_per_s=round(4 * qps, 1),
                                     cache_build_s=round(build, 2)))
                    print(rows[-1], flush=True)
        augment = build_split_transforms("rafdb", size)[1]
        batch = torch.randint(0, 256, (128, 3, size, size), dtype=torch.uint8)
        t = time.perf_counter()
        augment(batch)
        device_rate = 128 / 4 / (time.perf_counter() - t)
        print(f"device half of the augmentation, run on this CPU: {device_rate:.1f} quadruplets/s at {size}²")
    print(f"\n{machine} · {len(split)} SynthFER train images (112² PNG)\n")
    print("| image size | workers | decoded cache | augment_on_device (loader part only) | quadruplets/s | images/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['workers']} | {r['cache']} | {r['augment_on_device']} | {r['quadruplets_per_s']:.1f} "
              f"| {r['images_per_s']:.1f} |")
    write_json("loader_speed", {"machine": machine, "rows": rows})


if __name__ == "__main__":
    main()
