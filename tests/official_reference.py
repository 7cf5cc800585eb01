"""Independent functional re-statement of the official QCS / DCS network.

This module is test-only ground truth.  It knows the *official* checkpoint
layout (parameter names as registered by the authors' ``pyramid_trans_expr``)
and evaluates the network directly from such a state dict with plain
``torch`` / ``torch.nn.functional`` calls, in eval-mode semantics
(BatchNorm on running statistics, every dropout disabled).

Public helpers
--------------
``official_keys_and_shapes``   every key / shape the official model registers
``random_official_state_dict`` a well-scaled random official-format state dict
``official_forward``           base and cross logits from such a state dict
``write_official_checkpoint``  a checkpoint file laid out like the training
                               script writes it (DataParallel prefix, SAM
                               optimizer state, pickled ``__main__`` recorders)
"""

from __future__ import annotations

import collections
import math
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# ---------------------------------------------------------------------------
# architecture constants of the official model
# ---------------------------------------------------------------------------
EMBED_DIM = 768
NUM_HEADS = 8
MLP_HIDDEN = 4 * EMBED_DIM
TOKENS_PER_SCALE = 49
NUM_TOKENS = 3 * TOKENS_PER_SCALE          # 147 image tokens
STAGE_CHANNELS = (64, 128, 256)
STAGE_UNITS = (3, 4, 14)
BASE_DEPTH = 2
CROSS_DEPTH = 1
ECA_KERNEL = 5                             # eca_block(channel=196) -> k=5
BACKBONE_SIZE = 112
VIT_LN_EPS = 1e-6
CROSS_LN_EPS = 1e-5
BN_EPS = 1e-5

_NEW_EMBED = ("embed_1", "embed_2", "embed_3")
_OLD_EMBED = ("embed_q", "embed_k", "embed_v")


# ---------------------------------------------------------------------------
# 1. key inventory
# ---------------------------------------------------------------------------
def _bn_entries(prefix: str, ch: int) -> List[Tuple[str, tuple]]:
    return [
        (prefix + ".weight", (ch,)),
        (prefix + ".bias", (ch,)),
        (prefix + ".running_mean", (ch,)),
        (prefix + ".running_var", (ch,)),
        (prefix + ".num_batches_tracked", ()),
    ]


def _linear_entries(prefix: str, n_in: int, n_out: int) -> List[Tuple[str, tuple]]:
    return [(prefix + ".weight", (n_out, n_in)), (prefix + ".bias", (n_out,))]


def _ln_entries(prefix: str, dim: int) -> List[Tuple[str, tuple]]:
    return [(prefix + ".weight", (dim,)), (prefix + ".bias", (dim,))]


def _conv_entries(prefix: str, c_in: int, c_out: int, k: int, bias: bool = True):
    out = [(prefix + ".weight", (c_out, c_in, k, k))]
    if bias:
        out.append((prefix + ".bias", (c_out,)))
    return out


def _vit_entries(prefix: str, depth: int, num_classes: int) -> List[Tuple[str, tuple]]:
    d = EMBED_DIM
    n_seq = NUM_TOKENS + 1
    e = [
        (prefix + "cls_token", (1, 1, d)),
        (prefix + "pos_embed", (1, n_seq, d)),
    ]
    e += _linear_entries(prefix + "se_block.linear1", d, d)
    e += _linear_entries(prefix + "se_block.linear2", d, d)
    e += _conv_entries(prefix + "patch_embed.proj", 256, d, 1)          # unused
    e += _linear_entries(prefix + "head.linear", d, num_classes)
    e += [(prefix + "eca_block.conv.weight", (1, 1, ECA_KERNEL))]         # unused
    e += _conv_entries(prefix + "CON1", 256, d, 1, bias=False)           # unused
    e += _linear_entries(prefix + "IRLinear1", 1024, d)                  # unused
    e += _linear_entries(prefix + "IRLinear2", d, 512)                   # unused
    for i in range(depth):
        b = f"{prefix}blocks.{i}."
        e += _ln_entries(b + "norm1", d)
        e += [(b + "conv.weight", (n_seq, n_seq, 1)), (b + "conv.bias", (n_seq,))]  # unused
        e += _linear_entries(b + "attn.qkv", d, 3 * d)
        e += _linear_entries(b + "attn.proj", d, d)
        e += _ln_entries(b + "norm2", d)
        e += _linear_entries(b + "mlp.fc1", d, MLP_HIDDEN)
        e += _linear_entries(b + "mlp.fc2", MLP_HIDDEN, d)
    e += _ln_entries(prefix + "norm", d)
    return e


def _unit_plan():
    """(stage index, unit index, in channels, out channels, stride) for every IR unit."""
    plan = []
    c_in = 64
    for s, (c_out, n_units) in enumerate(zip(STAGE_CHANNELS, STAGE_UNITS)):
        for u in range(n_units):
            plan.append((s + 1, u, c_in if u == 0 else c_out, c_out, 2 if u == 0 else 1))
        c_in = c_out
    return plan


def _backbone_entries(prefix: str) -> List[Tuple[str, tuple]]:
    e = _conv_entries(prefix + "input_layer.0", 3, 64, 3, bias=False)
    e += _bn_entries(prefix + "input_layer.1", 64)
    e += [(prefix + "input_layer.2.weight", (64,))]
    # the classifier tail of IR-50: registered, never evaluated
    e += _bn_entries(prefix + "output_layer.0", 512)
    e += _linear_entries(prefix + "output_layer.3", 512 * 7 * 7, 512)
    e += _bn_entries(prefix + "output_layer.4", 512)
    for stage, u, c_in, c_out, _ in _unit_plan():
        p = f"{prefix}body{stage}.{u}."
        if c_in != c_out:
            e += _conv_entries(p + "shortcut_layer.0", c_in, c_out, 1, bias=False)
            e += _bn_entries(p + "shortcut_layer.1", c_out)
        e += _bn_entries(p + "res_layer.0", c_in)
        e += _conv_entries(p + "res_layer.1", c_in, c_out, 3, bias=False)
        e += [(p + "res_layer.2.weight", (c_out,))]
        e += _conv_entries(p + "res_layer.3", c_out, c_out, 3, bias=False)
        e += _bn_entries(p + "res_layer.4", c_out)
    return e


def _cross_entries(prefix: str, with_theta: bool) -> List[Tuple[str, tuple]]:
    d = EMBED_DIM
    e = [(prefix + "theta", ())] if with_theta else []
    e += _ln_entries(prefix + "norm1", d)
    e += _ln_entries(prefix + "norm2", d)
    e += _linear_entries(prefix + "proj", d, 2 * d)
    e += _linear_entries(prefix + "mlp.fc1", d, MLP_HIDDEN)
    e += _linear_entries(prefix + "mlp.fc2", MLP_HIDDEN, d)
    return e


def _check_variant(variant: str) -> str:
    v = variant.lower()
    if v not in ("qcs", "dcs"):
        raise ValueError(f"variant must be 'qcs' or 'dcs', got {variant!r}")
    return v


def official_keys_and_shapes(variant: str, num_classes: int, old_names: bool = False,
                             with_fusion: bool = False) -> Dict[str, tuple]:
    """Ordered mapping key -> shape of the official ``pyramid_trans_expr`` state dict.

    Includes buffers (BatchNorm statistics, ``num_batches_tracked``) and every
    parameter that is registered but never used by the forward pass.
    """
    v = _check_variant(variant)
    c1, c2, c3 = STAGE_CHANNELS
    e1, e2, e3 = _OLD_EMBED if old_names else _NEW_EMBED
    d = EMBED_DIM
    entries: List[Tuple[str, tuple]] = []
    entries += _vit_entries("VIT_base.", BASE_DEPTH, num_classes)
    entries += _vit_entries("VIT_cross.", CROSS_DEPTH, num_classes)
    entries += _backbone_entries("ir_back.")
    for i, c in enumerate(STAGE_CHANNELS, start=1):
        entries += _conv_entries(f"conv{i}", c, c, 3)
    entries += _conv_entries(f"{e1}.0", c1, d, 3)
    entries += _conv_entries(f"{e1}.1", d, d, 3)
    entries += _conv_entries(f"{e2}.0", c2, d, 3)
    entries += _conv_entries(f"{e3}.proj", c3, d, 1)
    for i in (1, 2, 3):
        entries += _cross_entries(f"cross_attention_{i}.", with_theta=(v == "qcs"))
    if with_fusion:
        entries += _linear_entries("fusion.classifier", d * d, num_classes)
    out = collections.OrderedDict()
    for k, s in entries:
        assert k not in out, k
        out[k] = tuple(s)
    return out


# ---------------------------------------------------------------------------
# 2. random, well-scaled state dict
# ---------------------------------------------------------------------------
def _random_tensor(key: str, shape: tuple, gen: torch.Generator) -> Tensor:
    def normal(std, mean=0.0):
        return torch.randn(shape, generator=gen) * std + mean

    def uniform(lo, hi):
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    name = key.rsplit(".", 1)[-1]
    if name == "num_batches_tracked":
        return torch.tensor(int(torch.randint(100, 5000, (1,), generator=gen)), dtype=torch.int64)
    if name == "theta":
        # distinct per scale so that k = 1 + tanh(theta) differs between modules
        idx = int(key.split(".")[0].rsplit("_", 1)[-1])
        return torch.tensor((0.3, -0.25, 0.6)[idx - 1])
    if name in ("cls_token", "pos_embed"):
        return normal(0.02)
    if name == "running_mean":
        return normal(0.05)
    if name == "running_var":
        return uniform(0.5, 1.5)
    if ".input_layer.2." in key or ".res_layer.2." in key:
        return uniform(0.15, 0.35)                      # PReLU slopes
    is_norm = (".norm" in key or ".res_layer.0." in key or ".res_layer.4." in key
               or ".input_layer.1." in key or ".shortcut_layer.1." in key
               or ".output_layer.0." in key or ".output_layer.4." in key)
    if is_norm and name == "weight":
        if ".res_layer.4." in key:
            # the residual branch's closing BN is damped so that the 21 IR
            # units do not blow the activation scale up
            return uniform(0.35, 0.55)
        return normal(0.1, 1.0)
    if name == "bias" and len(shape) == 1:
        return normal(0.02)
    if name == "weight" and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        std = 1.0 / math.sqrt(fan_in)
        if "head.linear" in key:
            std *= 2.0                                   # O(1) logits
        return normal(std)
    raise KeyError(f"no init rule for {key} {shape}")


def random_official_state_dict(variant: str, num_classes: int, seed: int = 0, old_names: bool = False,
                               with_fusion: bool = False) -> "collections.OrderedDict[str, Tensor]":
    """Random float32 official-format state dict (no ``module.`` prefix)."""
    gen = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for key, shape in official_keys_and_shapes(variant, num_classes, old_names, with_fusion).items():
        t = _random_tensor(key, shape, gen)
        if key.startswith("cross_attention_") and key.endswith(".proj.weight"):
            # rows [768:] produce V.  The gates are softmaxes over 49 tokens
            # (~1/49 each), so a larger V makes the cross-similarity maps
            # (and any mistake in them) clearly visible in the cross logits.
            t[EMBED_DIM:] *= 4.0
        sd[key] = t if t.dtype == torch.int64 else t.to(torch.float32).contiguous()
    return sd


# ---------------------------------------------------------------------------
# 3. functional forward
# ---------------------------------------------------------------------------
def _embed_names(sd) -> Tuple[str, str, str]:
    if "embed_1.0.weight" in sd:
        return _NEW_EMBED
    if "embed_q.0.weight" in sd:
        return _OLD_EMBED
    raise KeyError("state dict has neither embed_1.* nor embed_q.* keys")


def _bn(sd, p: str, x: Tensor) -> Tensor:
    """Eval-mode BatchNorm with the stored running statistics."""
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"],
                        sd[p + ".weight"], sd[p + ".bias"], training=False, eps=BN_EPS)


def _linear(sd, p: str, x: Tensor) -> Tensor:
    return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias"))


def _layer_norm(sd, p: str, x: Tensor, eps: float) -> Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], eps)


def _conv(sd, p: str, x: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
    return F.conv2d(x, sd[p + ".weight"], sd.get(p + ".bias"), stride=stride, padding=padding)


def ir_unit(sd, p: str, x: Tensor, c_in: int, c_out: int, stride: int) -> Tensor:
    """IR bottleneck: BN-conv3x3-PReLU-conv3x3(stride)-BN plus a shortcut."""
    if c_in == c_out:
        shortcut = x[:, :, ::stride, ::stride]          # MaxPool2d(kernel 1, stride)
    else:
        shortcut = _bn(sd, p + "shortcut_layer.1", _conv(sd, p + "shortcut_layer.0", x, stride=stride))
    r = _bn(sd, p + "res_layer.0", x)
    r = _conv(sd, p + "res_layer.1", r, 1, 1)
    r = F.prelu(r, sd[p + "res_layer.2.weight"])
    r = _conv(sd, p + "res_layer.3", r, stride, 1)
    r = _bn(sd, p + "res_layer.4", r)
    return r + shortcut


def backbone(sd, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """IR-50 stages 1-3 on the nearest-resized 112x112 image -> (56², 28², 14²) maps."""
    p = "ir_back."
    x = F.interpolate(x, size=BACKBONE_SIZE)            # default mode: nearest
    x = _conv(sd, p + "input_layer.0", x, 1, 1)
    x = _bn(sd, p + "input_layer.1", x)
    x = F.prelu(x, sd[p + "input_layer.2.weight"])
    feats = []
    for stage, u, c_in, c_out, stride in _unit_plan():
        if u == 0 and stage > 1:
            feats.append(x)
        x = ir_unit(sd, f"{p}body{stage}.{u}.", x, c_in, c_out, stride)
    feats.append(x)
    return tuple(feats)


def tokens(sd, x: Tensor) -> Tensor:
    """Image -> 147 tokens (3 scales x 49) of width 768."""
    f1, f2, f3 = backbone(sd, x)
    f1 = _conv(sd, "conv1", f1, 2, 1)
    f2 = _conv(sd, "conv2", f2, 2, 1)
    f3 = _conv(sd, "conv3", f3, 2, 1)
    n1, n2, n3 = _embed_names(sd)
    t1 = _conv(sd, n1 + ".1", _conv(sd, n1 + ".0", f1, 2, 1), 2, 1)
    t2 = _conv(sd, n2 + ".0", f2, 2, 1)
    t3 = _conv(sd, n3 + ".proj", f3)
    return torch.cat([t.flatten(2).transpose(1, 2) for t in (t1, t2, t3)], dim=1)


def _self_attention(sd, p: str, x: Tensor) -> Tensor:
    b, n, c = x.shape
    hd = c // NUM_HEADS
    qkv = _linear(sd, p + "qkv", x).reshape(b, n, 3, NUM_HEADS, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = ((q @ k.transpose(-2, -1)) * hd ** -0.5).softmax(dim=-1)
    out = (att @ v).transpose(1, 2).reshape(b, n, c)
    return _linear(sd, p + "proj", out)


def _mlp(sd, p: str, x: Tensor) -> Tensor:
    return _linear(sd, p + "fc2", F.gelu(_linear(sd, p + "fc1", x)))


def vit(sd, p: str, x: Tensor, depth: int) -> Tuple[Tensor, Tensor]:
    """Pre-norm ViT on (B, 147, 768) tokens -> (logits, 147 final-normed tokens)."""
    cls = sd[p + "cls_token"].expand(x.shape[0], -1, -1)
    h = torch.cat([cls, x], dim=1) + sd[p + "pos_embed"]
    for i in range(depth):
        b = f"{p}blocks.{i}."
        h = h + _self_attention(sd, b + "attn.", _layer_norm(sd, b + "norm1", h, VIT_LN_EPS))
        h = h + _mlp(sd, b + "mlp.", _layer_norm(sd, b + "norm2", h, VIT_LN_EPS))
    h = _layer_norm(sd, p + "norm", h, VIT_LN_EPS)
    cls_out, toks = h[:, 0], h[:, 1:]
    gate = torch.sigmoid(_linear(sd, p + "se_block.linear2", F.relu(_linear(sd, p + "se_block.linear1", cls_out))))
    logits = _linear(sd, p + "head.linear", cls_out * gate)
    return logits, toks


def _shifted_distance(a: Tensor, b: Tensor) -> Tensor:
    """cdist(a, b) minus its global (whole-batch) minimum."""
    d = torch.cdist(a, b, p=2)
    return d - d.min()


def _flip(d: Tensor) -> Tensor:
    """Turn a (min-shifted) distance into a similarity: global max minus value."""
    return d.max() - d


def _col_score(m: Tensor) -> Tensor:
    """Row-wise L2 normalise (over last dim), then sum over rows -> per-column score."""
    return F.normalize(m, p=2, dim=2).sum(dim=1)


def _row_score(m: Tensor) -> Tensor:
    """Column-wise L2 normalise (over dim 1), then sum over columns -> per-row score."""
    return F.normalize(m, p=2, dim=1).sum(dim=2)


def csa_dcs(qk_a: Tensor, qk_p: Tensor) -> Tuple[Tensor, Tensor]:
    """Two-branch cross-similarity gates (B, N) for anchor and positive."""
    s = _flip(_shifted_distance(qk_p, qk_a))           # rows: positive, cols: anchor
    return _col_score(s).softmax(-1), _row_score(s).softmax(-1)


def csa_qcs(qk1: Tensor, qk2: Tensor, qk3: Tensor, qk4: Tensor, k: Tensor) -> Tuple[Tensor, ...]:
    """Four-branch similarity (same class pairs) + dissimilarity (cross class pairs) gates.

    Branches: 1 anchor, 2 positive, 3 negative, 4 negative2.  The similarity maps
    pair (1,2) and (3,4); the dissimilarity maps pair (1,3) and (2,4), each
    weighted by k (= 1 + tanh(theta)).
    """
    s21 = _flip(_shifted_distance(qk2, qk1))           # rows 2, cols 1
    s43 = _flip(_shifted_distance(qk4, qk3))           # rows 4, cols 3
    d31 = _shifted_distance(qk3, qk1)                  # rows 3, cols 1
    d42 = _shifted_distance(qk4, qk2)                  # rows 4, cols 2
    g1 = _col_score(s21) + k * _col_score(d31)
    g2 = _row_score(s21) + k * _col_score(d42)
    g3 = _col_score(s43) + k * _row_score(d31)
    g4 = _row_score(s43) + k * _row_score(d42)
    return tuple(g.softmax(-1) for g in (g1, g2, g3, g4))


def cross(sd, p: str, xs: Sequence[Tensor], variant: str, residual_from_norm: bool) -> List[Tensor]:
    """Cross module of one scale over all branches' (B, 49, 768) tokens."""
    b, n, c = xs[0].shape
    normed = [_layer_norm(sd, p + "norm1", x, CROSS_LN_EPS) for x in xs]
    qk, val = [], []
    for x in normed:
        pv = _linear(sd, p + "proj", x).reshape(b, n, 2, c)
        qk.append(pv[:, :, 0])
        val.append(pv[:, :, 1])
    if variant == "qcs":
        k = torch.tanh(sd[p + "theta"]) + 1
        gates = csa_qcs(*qk, k)
    else:
        gates = csa_dcs(*qk)
    outs = []
    for x, xn, g, v in zip(xs, normed, gates, val):
        h = (xn if residual_from_norm else x) + g.reshape(b, n, 1) * v
        hn = _layer_norm(sd, p + "norm2", h, CROSS_LN_EPS)
        outs.append((hn if residual_from_norm else h) + _mlp(sd, p + "mlp.", hn))
    return outs


def official_forward(sd, images: Sequence[Tensor], variant: str,
                     residual_from_norm: bool = True) -> Tuple[List[Tensor], List[Tensor]]:
    """Eval-mode official forward from an official-format state dict.

    ``images``: [x] for base-only inference, [anchor, positive] for 'dcs',
    [anchor, positive, negative, negative2] for 'qcs'.  Returns
    (base logits per branch, cross logits per branch); cross is [] for one image.

    Branches are batched together through backbone and ViT: in eval mode no
    operation there couples samples, so this equals running them one by one.
    The cross modules are evaluated per branch group exactly as officially,
    because their min/max shifts span the whole batch.
    """
    v = _check_variant(variant)
    images = list(images)
    n_br = len(images)
    if n_br != 1 and n_br != (4 if v == "qcs" else 2):
        raise ValueError(f"{v}: expected 1 or {4 if v == 'qcs' else 2} image batches, got {n_br}")
    sizes = [im.shape[0] for im in images]
    with torch.no_grad():
        toks = tokens(sd, torch.cat(images, dim=0))
        logits_all, normed_all = vit(sd, "VIT_base.", toks, BASE_DEPTH)
        base = list(torch.split(logits_all, sizes, dim=0))
        if n_br == 1:
            return base, []
        normed = list(torch.split(normed_all, sizes, dim=0))
        per_scale = [[t[:, s * TOKENS_PER_SCALE:(s + 1) * TOKENS_PER_SCALE] for t in normed] for s in range(3)]
        refined = [cross(sd, f"cross_attention_{s + 1}.", per_scale[s], v, residual_from_norm) for s in range(3)]
        cross_logits = []
        for br in range(n_br):
            fused = normed[br] + torch.cat([refined[s][br] for s in range(3)], dim=1)
            cross_logits.append(vit(sd, "VIT_cross.", fused, CROSS_DEPTH)[0])
    return base, cross_logits


# ---------------------------------------------------------------------------
# 4. checkpoint writer mimicking the training script
# ---------------------------------------------------------------------------
class _LossRecorder:
    """Stand-in for the script's loss recorder (pickled as __main__.RecorderMeter_loss)."""

    def __init__(self, total_epoch: int, done: int, rng: np.random.Generator):
        self.total_epoch = total_epoch
        self.current_epoch = done
        self.epoch_losses = np.zeros((total_epoch, 4), dtype=np.float32)
        self.epoch_losses[:done] = rng.uniform(0.05, 0.3, size=(done, 4)).astype(np.float32)


class _MatrixRecorder:
    """Stand-in for the confusion-matrix recorder (pickled as __main__.RecorderMeter_matrix)."""

    def __init__(self, total_epoch: int, rng: np.random.Generator, n_cls: int = 7):
        self.total_epoch = total_epoch
        self.current_epoch = 0
        self.epoch_losses = np.zeros((total_epoch, 2), dtype=np.float32)
        self.epoch_accuracy = np.zeros((total_epoch, 2), dtype=np.float32)
        self.y_pred = rng.integers(0, n_cls, size=16).astype(np.int64)
        self.y_true = rng.integers(0, n_cls, size=16).astype(np.int64)


_RECORDER_NAMES = {"RecorderMeter_loss": _LossRecorder, "RecorderMeter_matrix": _MatrixRecorder}


def _as_main_class(name: str, impl: type) -> type:
    """A subclass-free copy of ``impl`` that claims to live in ``__main__`` under ``name``."""
    return type(name, (object,), {"__module__": "__main__", "__qualname__": name,
                                  "__init__": impl.__init__, "__doc__": impl.__doc__})


def _plausible_optimizer_state(sd, rng_gen: torch.Generator, epoch: int) -> dict:
    """SAM(Adam) state dict as the script saves it: SAM's own state holds ``old_p``."""
    buffers = (".running_mean", ".running_var", ".num_batches_tracked")
    float_keys = [k for k in sd if not k.endswith(buffers)]
    n_params = len(float_keys)
    state = {}
    for i in range(min(3, n_params)):
        t = sd[float_keys[i]]
        state[i] = {"old_p": t.clone() + 1e-4 * torch.randn(t.shape, generator=rng_gen)}
    lr0 = 3e-6
    group = {
        "rho": 0.05, "adaptive": False, "lr": lr0 * 0.98 ** epoch, "betas": (0.9, 0.999),
        "eps": 1e-08, "weight_decay": 0, "amsgrad": False, "maximize": False, "foreach": None,
        "capturable": False, "differentiable": False, "fused": None, "initial_lr": lr0,
        "params": list(range(n_params)),
    }
    return {"state": state, "param_groups": [group]}


def write_official_checkpoint(path, sd, epoch: int = 12, best_acc: float = 92.5) -> None:
    """Write ``sd`` like the authors' ``save_checkpoint`` (model wrapped in DataParallel).

    The recorder objects are pickled as ``__main__.RecorderMeter_loss`` /
    ``__main__.RecorderMeter_matrix``; those classes exist in ``__main__`` only
    while saving, so loading needs ``weights_only=False`` plus stubs or fails.
    """
    rng = np.random.default_rng(epoch)
    gen = torch.Generator().manual_seed(epoch)
    main_mod = sys.modules["__main__"]
    classes = {name: _as_main_class(name, impl) for name, impl in _RECORDER_NAMES.items()}
    previous = {name: getattr(main_mod, name) for name in classes if hasattr(main_mod, name)}
    try:
        for name, cls in classes.items():
            setattr(main_mod, name, cls)
        total = max(40, epoch)
        payload = {
            "epoch": epoch,
            "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
            "best_acc": torch.tensor(float(best_acc)),
            "optimizer": _plausible_optimizer_state(sd, gen, epoch),
            "recorder_m": classes["RecorderMeter_matrix"](total, rng),
            "recorder": classes["RecorderMeter_loss"](total, epoch, rng),
        }
        torch.save(payload, path)
    finally:
        for name in classes:
            if name in previous:
                setattr(main_mod, name, previous[name])
            elif hasattr(main_mod, name):
                delattr(main_mod, name)
