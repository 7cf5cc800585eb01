"""The network: sizes, variants, what runs in training and inference, and what gradients reach."""
import pytest
import torch
import torch.nn.functional as F

from qcslib import (QCSConfig, QCSNet, TrainOutput, count_parameters, inference_flops, load_checkpoint,
                    save_checkpoint)

VARIANTS = [("qcs", "sd"), ("qcs", "s"), ("qcs", "d"), ("qcs", "sdpa"), ("dcs", "s"), ("dcs", "sdpa"),
            ("baseline", None)]


def tiny(variant="qcs", **kw):
    """A tiny model with weights spread as after training, so that every part visibly moves the logits:
    linears N(0, 1/fan_in), LayerNorms away from identity, and cross-module values scaled up, since each
    CSA gate is only about 1/N."""
    torch.manual_seed(0)
    model = QCSNet(QCSConfig.sized("tiny", variant=variant, **kw))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, m.in_features ** -0.5)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
        for m in model.cross or []:
            m.proj.weight[m.proj.out_features // 2:] *= 8
    return model


def images(n, batch=3, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g) for _ in range(n)]


def test_paper_size_counts_what_the_official_model_uses():
    model = QCSNet()
    assert count_parameters(model) == {"inference": 40_700_039, "training": 66_810_513}
    assert round(inference_flops(model) / 1e9, 2) == 16.24
    assert model.config.tokens_per_scale == 49


@pytest.mark.parametrize("variant, mode", VARIANTS)
def test_forward_train_returns_logits_per_branch(variant, mode):
    model = tiny(variant, csa=mode).train()
    n = model.branches
    out = model.forward_train(*images(n))
    assert isinstance(out, TrainOutput)
    assert len(out.base_logits) == n and all(x.shape == (3, 7) for x in out.base_logits)
    assert len(out.cross_logits) == (0 if variant == "baseline" else n)
    assert all(x.shape == (3, 7) for x in out.cross_logits)
    if mode == "sd":
        torch.testing.assert_close(out.k, torch.ones(3))  # k = 1 + tanh 0 at initialisation
    else:
        assert out.k is None


@pytest.mark.parametrize("variant, mode", VARIANTS)
def test_every_parameter_gets_a_gradient_in_training(variant, mode):
    model = tiny(variant, csa=mode).train()
    out = model.forward_train(*images(model.branches))
    labels = torch.tensor([0, 3, 6])
    loss = sum(F.cross_entropy(x, labels) for x in out.base_logits + out.cross_logits)
    loss.backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_timm_style_api_features_head_and_forward():
    model = tiny().eval()
    x = images(1)[0]
    with torch.no_grad():
        z = model.forward_features(x)
        n = 3 * model.config.tokens_per_scale
        assert z.shape == (len(x), 1 + n, model.config.dim)
        embedding = model.forward_head(z, pre_logits=True)
        assert embedding.shape == (len(x), model.config.dim)
        torch.testing.assert_close(model.base.encoder.head(embedding), model.forward_head(z), rtol=0, atol=0)
        torch.testing.assert_close(model.forward_head(z), model(x), rtol=0, atol=0)
    with pytest.raises(TypeError):
        model(*images(4))  # forward is inference only: the quadruplets go through forward_train


def test_the_baseline_trains_through_forward_train_with_one_branch():
    model = tiny("baseline").eval()
    x = images(1)[0]
    with torch.no_grad():
        out = model.forward_train(x)
        assert len(out.base_logits) == 1 and out.cross_logits == [] and out.k is None
        torch.testing.assert_close(out.base_logits[0], model(x), rtol=0, atol=0)


def test_inference_runs_the_base_branch_only():
    model = tiny().eval()
    ran = []
    for module in [*model.cross, model.cross_encoder]:
        module.register_forward_hook(lambda *_: ran.append(1))
    x = images(1)[0]
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.base(x), rtol=0, atol=0)
        assert ran == []
        model.forward_train(*images(4))
    assert len(ran) == 3 + 4  # the hooks fire when they run: 3 cross modules, the cross ViT per branch


def test_base_holds_exactly_the_inference_weights():
    model = tiny()
    names = {n for n, _ in model.named_parameters()}
    base = {f"base.{n}" for n, _ in model.base.named_parameters()}
    assert base <= names
    assert all(n.startswith(("cross.", "cross_encoder.")) for n in names - base)


def test_swapping_anchor_positive_with_negative2_negative_permutes_all_outputs():
    model = tiny().eval()
    a, p, n, n2 = images(4)
    with torch.no_grad():
        out = model.forward_train(a, p, n, n2)
        swapped = model.forward_train(n2, n, p, a)
    for got, expected in ((swapped.base_logits, out.base_logits[::-1]), (swapped.cross_logits, out.cross_logits[::-1])):
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-5)


@pytest.mark.parametrize("change", [dict(residual=False), dict(per_sample_norm=True),
                                    dict(cross_residual_from="input"), dict(csa="s")])
def test_options_change_the_cross_logits_and_never_the_base(change):
    contrast = torch.tensor([0.3, 1.0, 3.0]).view(3, 1, 1, 1)  # samples that differ, as real batches do
    x = [im * contrast for im in images(4)]
    reference = tiny().eval()
    model = tiny(**change).eval()
    model.load_state_dict(reference.state_dict(), strict=change.get("csa") is None)
    with torch.no_grad():
        ref, out = reference.forward_train(*x), model.forward_train(*x)
    for r, o in zip(ref.base_logits, out.base_logits, strict=True):
        torch.testing.assert_close(r, o)
    assert (ref.cross_logits[0] - out.cross_logits[0]).abs().max() > 1e-2


def test_per_branch_batch_norm_matches_separate_calls_in_training():
    model = tiny().train()
    x = images(4)
    out = model.forward_train(*x)
    for xi, logits in zip(x, out.base_logits, strict=True):
        torch.testing.assert_close(model.base(xi), logits)


def test_concatenated_branches_equal_separate_calls_in_eval_and_share_batch_norm_in_training():
    x = images(4)
    separate, joint = tiny().eval(), tiny(concat_branches=True).eval()
    a, b = separate.forward_train(*x), joint.forward_train(*x)
    for u, v in zip(a.base_logits + a.cross_logits, b.base_logits + b.cross_logits, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)
    joint.train()
    logits = joint.forward_train(*x).base_logits
    torch.testing.assert_close(torch.cat(logits), joint.base(torch.cat(x)))  # one batch: statistics over all 4
    assert not torch.allclose(logits[0], joint.base(x[0]), atol=1e-4)


def test_save_load_round_trip(tmp_path):
    model = tiny("dcs", per_sample_norm=True, num_classes=8).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, epoch=4, best_acc=71.5)
    loaded, report = load_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    assert report.meta == {"variant": "dcs", "num_classes": 8, "epoch": 4, "best_acc": 71.5}
    x = images(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x[0]), model(x[0]), rtol=0, atol=0)
        torch.testing.assert_close(loaded.forward_train(*x).cross_logits[1], model.forward_train(*x).cross_logits[1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(variant="quad"), "variant must be one of"),
    (dict(variant="dcs", csa="sd"), "needs the negatives"),
    (dict(variant="baseline", csa="s"), "baseline has no cross module"),
    (dict(csa="cosine"), "csa must be one of"),
    (dict(backbone_size=100), "multiple of 16"),
    (dict(dim=100, heads=8), "not divisible"),
    (dict(cross_residual_from="raw"), "residual_from"),
    (dict(csa="sdpa", per_sample_norm=True), "per_sample_norm applies to"),
])
def test_bad_configs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QCSNet(QCSConfig.sized("tiny", **kwargs))


def test_bad_inputs_are_rejected():
    model = tiny()
    with pytest.raises(ValueError, match=r"takes 4 image batches \(anchor, positive, negative, negative2\), got 2"):
        model.forward_train(*images(2))
    with pytest.raises(ValueError, match="same batch shape"):
        model.forward_train(*images(3), images(1, batch=2)[0])
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(2, 1, 64, 64\)"):
        model(torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match="size must be one of"):
        QCSConfig.sized("huge")


def test_the_encoder_init_is_the_official_one_unless_asked():
    torch.manual_seed(0)
    official = QCSNet(QCSConfig.sized("tiny"))
    torch.manual_seed(0)
    default = QCSNet(QCSConfig.sized("tiny", encoder_init="torch"))
    w_official, w_default = official.base.encoder.head.weight, default.base.encoder.head.weight
    assert w_official.std().item() == pytest.approx(0.01, rel=0.2)  # TN(0, 0.01)
    assert w_default.std().item() == pytest.approx(1 / (3 * 64) ** 0.5, rel=0.2)  # U(±1/√64)
    assert torch.equal(official.base.encoder.pos_embed, default.base.encoder.pos_embed)  # tokens as officially
    with pytest.raises(ValueError, match="encoder_init must be one of"):
        QCSConfig(encoder_init="xavier")
