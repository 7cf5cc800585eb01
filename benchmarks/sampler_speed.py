"""Quadruplet sampling speed: ``draw_quadruplets`` against the official per-sample pandas filters.

    .venv/bin/python benchmarks/sampler_speed.py [--official-samples 200]

The official dataset, for every sample, filters the whole label table three times (positive:
same label and another name; negative: another label; negative2: the negative's label and
another name) and samples one row from each. Both run here in one process on an AffectNet-8
sized training list (287,651 labels with AffectNet-8's class counts); the official method is
timed on a subset of samples and scaled per sample.
"""
import argparse
import datetime
import time

import numpy as np
import pandas as pd

from machine import write_json  # benchmarks/machine.py (scripts run from benchmarks/)
from qcslib.data.quadruplets import draw_quadruplets

# AffectNet-8 manually annotated training counts: neutral, happy, sad, surprise, fear, disgust, anger, contempt
AFFECTNET8_COUNTS = [74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750]


def official_quadruplet(table: pd.DataFrame, row: int) -> tuple:
    """What the official ``Dataset.__getitem__`` does to find one quadruplet (without reading images)."""
    name, label = table.ImageName[row], table.label[row]
    positive = table[(table.label == label) & (table.ImageName != name)].sample(1)
    negative = table[table.label != label].sample(1)
    neg_name, neg_label = negative.ImageName.iloc[0], negative.label.iloc[0]
    negative2 = table[(table.label == neg_label) & (table.ImageName != neg_name)].sample(1)
    return positive.index[0], negative.index[0], negative2.index[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-samples", type=int, default=200)
    args = parser.parse_args()
    labels = np.repeat(np.arange(8), AFFECTNET8_COUNTS)
    table = pd.DataFrame({"ImageName": [f"{i:06d}.jpg" for i in range(len(labels))], "label": labels})

    rows = np.random.default_rng(0).integers(0, len(labels), args.official_samples)
    start = time.perf_counter()
    for row in rows:
        official_quadruplet(table, row)
    official_per_sample = (time.perf_counter() - start) / len(rows)

    times = []
    for epoch in range(5):
        start = time.perf_counter()
        draw_quadruplets(labels, seed=0, epoch=epoch)
        times.append(time.perf_counter() - start)
    ours_per_sample = min(times) / len(labels)

    print(f"{datetime.date.today()} · {len(labels):,} labels · one process\n")
    print("| method | per quadruplet | one epoch | draws/s |")
    print("|---|---|---|---|")
    print(f"| official (pandas filters, {len(rows)} samples timed) | {official_per_sample * 1e3:.2f} ms "
          f"| {official_per_sample * len(labels) / 60:.1f} min (scaled) | {1 / official_per_sample:,.0f} |")
    print(f"| draw_quadruplets (best of 5 epochs) | {ours_per_sample * 1e6:.3f} µs | {min(times) * 1e3:.0f} ms "
          f"| {1 / ours_per_sample:,.0f} |")
    print(f"\nspeed-up: {official_per_sample / ours_per_sample:,.0f}×")
    write_json("sampler_speed", {"date": str(datetime.date.today()), "labels": len(labels),
                                 "official_per_sample_s": official_per_sample, "ours_per_sample_s": ours_per_sample,
                                 "ours_epoch_s": min(times), "speedup": official_per_sample / ours_per_sample})


if __name__ == "__main__":
    main()
