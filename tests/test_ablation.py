"""Ablation bookkeeping: variant configs, run reuse, mean ± std, paired differences, bias-conflicting accuracy."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from qcslib import ablation
from qcslib.data.sources import load_split
from qcslib.data.synthfer import SynthFERSettings, generate
from qcslib.train import load_profile


def fake_runs(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for variant, accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append({"variant": variant, "seed": seed, **{f"{w}_{m}": acc + (0.01 if w == "best" else 0)
                                                               for w in ("best", "last") for m in ablation.METRICS}})
    return pd.DataFrame(rows)


def test_variant_configs_change_only_the_model_and_the_name():
    base = load_profile("smoke")
    c = ablation.variant_config(base, "qcs_s", 3)
    assert (c.name, c.runs_dir, c.seed) == ("qcs_s-s3", "runs/smoke", 3)
    assert c.model_config().csa == "s" and c.model_config().variant == "qcs"
    assert ablation.variant_config(base, "baseline", 0).model_config().csa is None
    assert {k: v for k, v in c.to_dict().items() if k not in ("name", "runs_dir", "seed", "model")} == \
        {k: v for k, v in base.to_dict().items() if k not in ("name", "runs_dir", "seed", "model")}
    with pytest.raises(ValueError, match="unknown variant 'qcs_x'"):
        ablation.variant_config(base, "qcs_x", 0)


def test_a_run_is_reused_only_when_its_config_matches_and_it_finished(tmp_path):
    c = ablation.variant_config(load_profile("smoke", [f"runs_dir={tmp_path}"]), "qcs", 0)
    assert not ablation.finished(c)
    c.run_dir.mkdir(parents=True)
    (c.run_dir / "config.yaml").write_text(yaml.safe_dump(c.to_dict()))
    (c.run_dir / "summary.json").write_text(json.dumps({"epochs": c.epochs}))
    assert ablation.finished(c)
    assert not ablation.finished(c.replace(lr=0.5))                      # another config
    (c.run_dir / "summary.json").write_text(json.dumps({"epochs": c.epochs - 1}))
    assert not ablation.finished(c)                                     # stopped early


def test_summary_is_mean_and_sample_std_over_seeds():
    runs = fake_runs({"baseline": [0.5, 0.6, 0.7], "qcs": [0.6, 0.6, 0.9]})
    table = ablation.summarize(runs)
    assert list(table.index) == ["baseline", "qcs"] and table["n"].tolist() == [3, 3]
    assert table.loc["qcs", "last_test_accuracy_mean"] == pytest.approx(0.7)
    assert table.loc["qcs", "last_test_accuracy_std"] == pytest.approx(np.std([0.6, 0.6, 0.9], ddof=1))
    assert table.loc["baseline", "best_test_accuracy_mean"] == pytest.approx(0.61)
    text = ablation.format_mean_std(table)
    assert text.loc["baseline", "last_test_accuracy"] == "60.00 ± 10.00"


def test_paired_differences_against_the_baseline():
    runs = fake_runs({"baseline": [0.5, 0.6, 0.7], "qcs": [0.6, 0.6, 0.9], "dcs": [0.4, 0.5, 0.6]})
    paired = ablation.paired_vs_baseline(runs)
    assert list(paired.index) == ["qcs", "dcs"]
    assert paired.loc["qcs", "mean_diff"] == pytest.approx(0.1)
    assert paired.loc["qcs", "ahead"] == 2 and paired.loc["qcs", "seeds"] == 3
    assert paired.loc["qcs", "p_value"] == pytest.approx(stats.ttest_rel([0.6, 0.6, 0.9], [0.5, 0.6, 0.7]).pvalue)
    assert np.isnan(paired.loc["dcs", "p_value"])  # a constant difference has no t statistic
    with pytest.raises(ValueError, match="no 'baseline' runs"):
        ablation.paired_vs_baseline(runs[runs.variant != "baseline"])


class Oracle(__import__("torch").nn.Module):
    """Predicts class 0 for every image: right exactly on the class-0 images."""

    def forward(self, images):
        import torch
        return torch.nn.functional.one_hot(torch.zeros(len(images), dtype=torch.long), 7).float()


def test_bias_accuracy_splits_the_test_set_by_the_attribute(tmp_path):
    root = generate(tmp_path / "s", SynthFERSettings(size=32, train_identities=1, test_identities=2,
                                                      images_per_identity=14, bias_strength=0.9))
    test = load_split("synthfer", root, "test")
    result = ablation.bias_accuracy(Oracle(), test, root / "meta.csv", 32, progress=False)
    meta = pd.read_csv(root / "meta.csv").query("split == 'test'")
    conflicting = meta["bias_conflicting"].astype(bool).to_numpy()
    right = (meta["label"] == 0).to_numpy()
    assert result["n_conflicting"] == conflicting.sum() and result["n_aligned"] == (~conflicting).sum()
    assert result["conflicting"] == pytest.approx(right[conflicting].mean())
    assert result["aligned"] == pytest.approx(right[~conflicting].mean())
    assert result["accuracy"] == pytest.approx(right.mean())
