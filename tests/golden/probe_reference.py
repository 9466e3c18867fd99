"""PyTorch references for the probe heads, optimizers and schedule, then the C++ side checked against them.

Usage: probe_reference.py UNIT_TEST_BINARY OUTDIR

Writes OUTDIR/cases.json and, per case, .npy files: the inputs (tokens, attention, labels), the initial head
state, and what one training-mode step must give (logits, loss, every parameter gradient, the BatchNorm
running statistics, the pooling weights). For the optimizers: 10 steps of LARS (the official MAE
util/lars.py, restated below), SGD and AdamW (torch.optim) under MAE's warm-up + half-cosine schedule
(util/lr_sched.py), with the learning rate and every parameter after each step. Then runs the unit-test
binary's ProbeReference.* tests with VITPROBE_PROBE_REFERENCES=OUTDIR; they compare within 1e-5 (float32).

The heads are written here in the official modules' natural form (beyond_cls ABMILPHead; efficient-probing
EfficientProbing with d_out and its `_all` bag, SimPool, AttentionPoolingClassifier (aim); V-JEPA's
AttentivePooler), not in the folded form vitprobe uses. Pooling weights are those of the evaluation-mode forward
after the training step (aim's BatchNorm then uses its running statistics).
"""
import json
import math
import subprocess
import sys
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_vit import get_2d_sincos_pos_embed  # noqa: E402  (MAE's table)

BATCH, NUM_CLASSES, DIM, NUM_HEADS, GRID = 6, 5, 16, 4, 4


def layout(prefix):
    return {"embed_dim": DIM, "num_prefix_tokens": prefix, "class_token": True, "grid_size": GRID,
            "num_encoder_heads": NUM_HEADS}


# ---- fixed aggregations (beyond_cls models_vit.py forward_features), prefix tokens dropped from the keys

def center_window(n):
    c = GRID // 2
    return c - math.ceil(n / 2), c + math.floor(n / 2)


def fixed_features(tokens, attention, prefix):
    patches = tokens[:, prefix:]
    B, N, D = patches.shape
    out = {"cls": tokens[:, 0], "mean": patches.mean(1)}
    s, e = center_window(2)
    out["center:2"] = patches.reshape(B, GRID, GRID, D)[:, s:e, s:e].mean(dim=[1, 2])
    attn = attention.mean(1)[:, prefix:, prefix:].reshape(B, GRID, GRID, N)
    ca = attn[:, s:e, s:e].mean(dim=[1, 2])
    ca = ca / (ca.sum(1, keepdim=True) + 1e-6)
    out["cattn:2"] = (patches * ca.unsqueeze(2)).sum(1)  # vitprobe sums (official: mean = sum / N)
    mean_map = attention[:, :, 0, prefix:].mean(1)
    mean_map = mean_map / mean_map.sum(1, keepdim=True)
    out["attn-mean"] = (patches * mean_map.unsqueeze(2)).sum(1)
    cls_patch = attention[:, :, 0, prefix:]
    renorm = cls_patch / (cls_patch.sum(2, keepdim=True) + 1e-6)
    entropy = -(renorm * (renorm + 1e-6).log()).sum(2)
    head = entropy.argmin(1)
    lcte = cls_patch[torch.arange(B), head]
    lcte = lcte / lcte.sum(1, keepdim=True)
    out["attn-minent"] = (patches * lcte.unsqueeze(2)).sum(1)
    return out


# ---- learned poolings, official forms

class SelfAttention(nn.Module):  # timm Attention(dim, num_heads=1), qkv_bias=False
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, 1, C).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * C ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Abmilp(nn.Module):  # beyond_cls abmilp.py ABMILPHead
    def __init__(self, dim, depth, act, sa, cond, content, prefix):
        super().__init__()
        self.sa, self.cond, self.content, self.prefix = sa, cond, content, prefix
        self.self_attn = SelfAttention(dim) if sa != "none" else None
        layers = []
        for _ in range(depth - 1):
            layers += [nn.Linear(dim, dim), nn.Tanh() if act == "tanh" else nn.ReLU()]
        layers.append(nn.Linear(dim, 1))
        self.scorer = nn.Sequential(*layers)
        pe = torch.from_numpy(get_2d_sincos_pos_embed(dim, GRID)).float()
        if content == "all":
            pe = torch.cat([torch.zeros(prefix, dim), pe])
        # abmilp.py makes it an nn.Parameter(requires_grad=False); main_linprobe.py then sets requires_grad on
        # every model.head parameter and optimises them all: the official runs train the table.
        self.pe = nn.Parameter(pe.unsqueeze(0)) if cond == "pe" else None

    def forward_with_map(self, tokens):
        x = tokens[:, self.prefix:] if self.content == "patch" else tokens
        x_attn = self.self_attn(x) if self.self_attn is not None else x
        inp = x_attn if self.sa in ("map", "both") else x
        if self.cond == "pe":
            inp = inp + self.pe
        attn_map = F.softmax(self.scorer(inp), dim=1)
        values = x_attn if self.sa == "both" else x
        weights = attn_map.squeeze(-1)
        if self.content == "all":
            weights = weights[:, self.prefix:]
        return (values * attn_map).sum(1), weights

    def named(self):
        names = {}
        if self.pe is not None:
            names["pool.pos_embed"] = self.pe
        if self.self_attn is not None:
            names.update({"pool.self_attn.qkv.weight": self.self_attn.qkv.weight,
                          "pool.self_attn.proj.weight": self.self_attn.proj.weight,
                          "pool.self_attn.proj.bias": self.self_attn.proj.bias})
        for index, layer in enumerate(self.scorer):
            if isinstance(layer, nn.Linear):
                names[f"pool.scorer.{index}.weight"] = layer.weight
                names[f"pool.scorer.{index}.bias"] = layer.bias
        return names


class EfficientProbing(nn.Module):  # efficient-probing poolings/ep.py: num_heads=1, qkv_bias=False
    """with_cls: the `_all` variants' bag, [cls] then the patches (models_more.py DinoWrapper, "both")."""

    def __init__(self, dim, num_queries, prefix, d_out=1, with_cls=False):
        super().__init__()
        self.prefix, self.num_queries, self.d_out, self.with_cls = prefix, num_queries, d_out, with_cls
        self.out_dim = dim // d_out
        self.v = nn.Linear(dim, dim // d_out, bias=False)
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)  # EP's cls_token

    def forward_with_map(self, tokens):
        patches = tokens[:, self.prefix:]
        x = torch.cat([tokens[:, :1], patches], 1) if self.with_cls else patches
        B, N, C = x.shape
        M = self.num_queries
        q = self.queries.expand(B, -1, -1).reshape(B, M, 1, C).permute(0, 2, 1, 3) * C ** -0.5
        k = x.reshape(B, N, 1, C).permute(0, 2, 1, 3)
        v = self.v(x).reshape(B, N, M, C // (self.d_out * M)).permute(0, 2, 1, 3)
        attn = (q @ k.transpose(-2, -1)).softmax(-1)  # (B, 1, M, N)
        out = torch.matmul(attn.squeeze(1).unsqueeze(2), v).view(B, C // self.d_out)
        weights = attn.squeeze(1)
        return out, weights[:, :, 1:] if self.with_cls else weights

    def named(self):
        return {"pool.queries": self.queries, "pool.v.weight": self.v.weight}


class SimPool(nn.Module):  # efficient-probing poolings/simpool.py, num_heads=1, gamma=None
    def __init__(self, dim, prefix):
        super().__init__()
        self.prefix = prefix
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)

    def forward_with_map(self, tokens):
        x = tokens[:, self.prefix:]
        q = x.mean(1, keepdim=True)
        k = v = self.norm(x)
        attn = ((self.wq(q) @ self.wk(k).transpose(-2, -1)) * x.shape[-1] ** -0.5).softmax(-1)  # (B, 1, N)
        return (attn @ v).squeeze(1), attn.squeeze(1)

    def named(self):
        return {"pool.norm.weight": self.norm.weight, "pool.norm.bias": self.norm.bias,
                "pool.wq.weight": self.wq.weight, "pool.wk.weight": self.wk.weight}


class AimPooler(nn.Module):  # efficient-probing poolings/aim.py AttentionPoolingClassifier, num_queries=1
    def __init__(self, dim, num_heads, prefix):
        super().__init__()
        self.prefix, self.num_heads = prefix, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6)

    def forward_with_map(self, tokens):
        x = tokens[:, self.prefix:]
        B, N, C = x.shape
        H = self.num_heads
        x = self.bn(x.transpose(-2, -1)).transpose(-2, -1)
        q = self.cls_token.expand(B, -1, -1).reshape(B, 1, H, C // H).permute(0, 2, 1, 3)
        k = self.k(x).reshape(B, N, H, C // H).permute(0, 2, 1, 3)
        q = q * self.scale
        v = self.v(x).reshape(B, N, H, C // H).permute(0, 2, 1, 3)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, 1, N)
        x_cls = (attn @ v).transpose(1, 2).reshape(B, 1, C).mean(dim=1)
        return x_cls, attn.squeeze(2)

    def named(self):
        return {"pool.cls_token": self.cls_token, "pool.k.weight": self.k.weight, "pool.v.weight": self.v.weight}

    def named_buffers_state(self):
        return {"pool.bn.running_mean": self.bn.running_mean, "pool.bn.running_var": self.bn.running_var}


# V-JEPA's AttentivePooler (facebookresearch/jepa src/models/attentive_pooler.py; modules.py MLP, Attention,
# Block, CrossAttention, CrossAttentionBlock), num_queries=1, qkv_bias=True, mlp_ratio 4, nn.LayerNorm, the
# explicit (use_sdpa=False) attention so that the weights can be returned. proj: efficient-probing's copy
# (poolings/jepa/modules.py:157) applies CrossAttention.proj; facebookresearch/jepa reverted that (a0517b4).

class JepaMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class JepaCrossAttention(nn.Module):
    def __init__(self, dim, num_heads, use_proj):
        super().__init__()
        self.num_heads, self.use_proj = num_heads, use_proj
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q, x):
        B, n, C = q.shape
        q = self.q(q).reshape(B, n, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        B, N, C = x.shape
        kv = self.kv(x).reshape(B, N, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        xattn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # (B, H, n, N)
        q = (xattn @ v).transpose(1, 2).reshape(B, n, C)
        if self.use_proj:
            q = self.proj(q)
        return q, xattn


class JepaCrossAttentionBlock(nn.Module):
    def __init__(self, dim, num_heads, use_proj):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.xattn = JepaCrossAttention(dim, num_heads, use_proj)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = JepaMlp(dim, 4 * dim)

    def forward(self, q, x):
        y, xattn = self.xattn(q, self.norm1(x))
        q = q + y
        return q + self.mlp(self.norm2(q)), xattn


class JepaAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class JepaBlock(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), JepaAttention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), JepaMlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VJepaPooler(nn.Module):
    def __init__(self, dim, num_heads, depth, use_proj, prefix):
        super().__init__()
        self.prefix, self.use_proj = prefix, use_proj
        self.query_tokens = nn.Parameter(torch.zeros(1, 1, dim))
        self.cross_attention_block = JepaCrossAttentionBlock(dim, num_heads, use_proj)
        self.blocks = nn.ModuleList([JepaBlock(dim, num_heads) for _ in range(depth - 1)])

    def forward_with_map(self, tokens):
        x = tokens[:, self.prefix:]
        q = self.query_tokens.repeat(len(x), 1, 1)
        q, xattn = self.cross_attention_block(q, x)
        for block in self.blocks:
            q = block(q)
        return q.squeeze(1), xattn.squeeze(2)

    def named(self):
        names = {"pool.query_tokens": self.query_tokens}
        for name, param in self.named_parameters():
            if name != "query_tokens" and (self.use_proj or "xattn.proj" not in name):
                names["pool." + name] = param
        return names


def perturb_(module, generator):
    """Non-trivial values for every parameter: LayerNorm gains 1 + 0.2 noise, everything else larger than
    PyTorch's initialisation (queries included); BatchNorm running statistics away from 0 and 1."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name == "pe":  # AbMILP's table keeps its sin-cos start (a real table for the gradient check)
                continue
            noise = torch.randn(param.shape, generator=generator)
            parts = name.split(".")
            if len(parts) > 1 and parts[-2].startswith("norm") and parts[-1] == "weight":
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(noise * (0.5 if param.dim() > 1 else 0.3))
        for name, buffer in module.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.3 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))


class Head(nn.Module):
    """aggregation -> BatchNorm1d(affine=False, eps=1e-6) -> Linear, as MAE main_linprobe.py."""

    def __init__(self, spec, pooling, feature_dim, generator):
        super().__init__()
        self.spec, self.pooling = spec, pooling
        self.bn = nn.BatchNorm1d(feature_dim, affine=False, eps=1e-6)
        self.linear = nn.Linear(feature_dim, NUM_CLASSES)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(self.linear.weight.shape, generator=generator) * 0.3)
            self.linear.bias.copy_(torch.randn(NUM_CLASSES, generator=generator) * 0.1)
            self.bn.running_mean.copy_(torch.randn(feature_dim, generator=generator) * 0.1)
            self.bn.running_var.copy_(1 + torch.rand(feature_dim, generator=generator))

    def forward(self, tokens, fixed):
        weights = None
        if self.pooling is not None:
            pooled, weights = self.pooling.forward_with_map(tokens)
        elif self.spec == "cls+mean":
            pooled = torch.cat([fixed["cls"], fixed["mean"]], 1)
        else:
            pooled = fixed[self.spec]
        return self.linear(self.bn(pooled)), weights

    def named_state(self):
        names = dict(self.pooling.named()) if self.pooling is not None else {}
        names.update({"linear.weight": self.linear.weight, "linear.bias": self.linear.bias})
        return names

    def named_buffers_state(self):
        names = {}
        if self.pooling is not None and hasattr(self.pooling, "named_buffers_state"):
            names.update(self.pooling.named_buffers_state())
        names.update({"bn.running_mean": self.bn.running_mean, "bn.running_var": self.bn.running_var})
        return names


HEAD_CASES = [
    # (case, --heads spec, prefix tokens)
    ("cls", "cls", 1), ("mean", "mean", 1), ("cls_mean", "cls+mean", 1), ("center", "center:2", 1),
    ("cattn", "cattn:2", 1), ("attn_mean", "attn-mean", 1), ("attn_minent", "attn-minent", 1),
    ("abmilp", "abmilp", 1),
    ("abmilp_full", "abmilp:depth=2,act=tanh,sa=both,cond=pe,content=all", 3),
    ("abmilp_map", "abmilp:depth=2,sa=map", 1),
    ("abmilp_pe_registers", "abmilp:cond=pe", 3),
    ("abmilp_deep_pe", "abmilp:depth=4,act=tanh,cond=pe", 1),
    ("ep", "ep:4", 1), ("simpool", "simpool", 1),
    # issue 16: EP's d_out and `_all` bag, the EP repository's AIM pooler, V-JEPA's AttentivePooler
    ("ep_dout", "ep:4,d_out=2", 1), ("ep_all", "ep_all:4", 1), ("ep_all_registers", "ep_all:2,d_out=2", 3),
    ("aim", "aim:heads=4", 1), ("aim_default_heads_registers", "aim", 3),
    ("vjepa", "vjepa:heads=4", 1), ("vjepa_deep_registers", "vjepa:heads=2,depth=3", 3),
    ("vjepa_no_proj", "vjepa:heads=4,proj=off", 1),
]


def parse_spec(spec):
    """'ep_all:2,d_out=2' -> ('ep_all', '2', {'d_out': '2'}): the head word, a leading size, key=value options."""
    word, _, argument = spec.partition(":")
    items = [item for item in argument.split(",") if item]
    size = items.pop(0) if items and "=" not in items[0] else None
    return word, size, dict(item.split("=") for item in items)


def make_pooling(spec, prefix):
    word, size, options = parse_spec(spec)
    if word == "abmilp":
        return Abmilp(DIM, int(options.get("depth", 1)), options.get("act", "relu"), options.get("sa", "none"),
                      options.get("cond", "none"), options.get("content", "patch"), prefix)
    if word in ("ep", "ep_all"):
        return EfficientProbing(DIM, int(size), prefix, int(options.get("d_out", 1)), word == "ep_all")
    if word == "simpool":
        return SimPool(DIM, prefix)
    if word == "aim":
        return AimPooler(DIM, int(options.get("heads", 16)), prefix)
    if word == "vjepa":
        return VJepaPooler(DIM, int(options.get("heads", 16)), int(options.get("depth", 1)),
                           options.get("proj", "on") == "on", prefix)
    return None


def save(folder, name, tensor):
    np.save(folder / f"{name}.npy", tensor.detach().cpu().numpy())


def inputs(prefix, generator):
    T = prefix + GRID * GRID
    tokens = torch.randn(BATCH, T, DIM, generator=generator) + 0.5 * torch.randn(1, 1, DIM, generator=generator)
    # Peaked attention, so that the lowest-entropy head differs between images.
    logits = 3.0 * torch.randn(BATCH, NUM_HEADS, T, T, generator=generator)
    attention = logits.softmax(-1)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)
    return tokens, attention, labels


def write_head_case(outdir, case, spec, prefix, seed):
    generator = torch.Generator().manual_seed(seed)
    folder = outdir / case
    folder.mkdir(parents=True, exist_ok=True)
    tokens, attention, labels = inputs(prefix, generator)
    pooling = make_pooling(spec, prefix)
    if pooling is not None:
        perturb_(pooling, generator)
    feature_dim = 2 * DIM if spec == "cls+mean" else getattr(pooling, "out_dim", DIM)
    head = Head(spec, pooling, feature_dim, generator).train()
    save(folder, "tokens", tokens)
    save(folder, "attention", attention)
    save(folder, "labels", labels)
    for name, value in head.named_state().items():
        save(folder, f"init.{name}", value)
    for name, value in head.named_buffers_state().items():
        save(folder, f"init.{name}", value)
    logits, weights = head(tokens, fixed_features(tokens, attention, prefix))
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    save(folder, "logits", logits)
    save(folder, "loss", loss.reshape(1))
    for name, value in head.named_state().items():
        save(folder, f"grad.{name}", value.grad)
    for name, value in head.named_buffers_state().items():
        save(folder, f"after.{name}", value)
    with torch.no_grad():
        head.eval()
        eval_logits, eval_weights = head(tokens, fixed_features(tokens, attention, prefix))
        save(folder, "eval_logits", eval_logits)
    if eval_weights is not None:
        save(folder, "pooling_weights", eval_weights)
    return {"spec": spec, "layout": layout(prefix), "num_classes": NUM_CLASSES,
            "gradients": sorted(head.named_state()), "buffers": sorted(head.named_buffers_state()),
            "has_pooling_weights": weights is not None}


# ---- optimizers: MAE util/lars.py and util/lr_sched.py, restated

class Lars(torch.optim.Optimizer):
    def __init__(self, params, lr=0, weight_decay=0, momentum=0.9, trust_coefficient=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim > 1:  # biases and other 1-d parameters: no weight decay, no trust ratio
                    dp = dp.add(p, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.0,
                                    torch.where(update_norm > 0, group["trust_coefficient"] * param_norm / update_norm,
                                                one), one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                state["mu"].mul_(group["momentum"]).add_(dp)
                p.add_(state["mu"], alpha=-group["lr"])


def scheduled_lr(epoch, lr, warmup, epochs, min_lr=0.0):
    if epoch < warmup:
        return lr * epoch / warmup
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))


OPTIMIZER_CASES = {
    # name: (optimizer, head spec, base lr, weight decay, momentum)
    "lars": ("lars", "abmilp", 0.1, 0.0, 0.9),
    "lars_wd": ("lars", "cls", 0.1, 0.05, 0.9),
    # AbMILP's position table is trained (and, being 3-d, gets LARS's trust ratio), as in the official runs.
    "lars_abmilp_pe": ("lars", "abmilp:depth=2,cond=pe", 0.1, 0.0, 0.9),
    # beyond_cls main_linprobe.py:332: SGD(model.head.parameters(), lr, weight_decay) - no momentum, every
    # parameter (biases included) decays.
    "sgd": ("sgd", "abmilp", 0.1, 0.01, 0.0),
    "sgd_momentum": ("sgd", "cls", 0.1, 0.01, 0.9),
    # AdamW normalises every gradient, so parameters whose exact gradient is 0 (a bias added to all of a
    # softmax's inputs, as abmilp's last scorer bias) would follow float noise: EP has none.
    "adamw": ("adamw", "ep:4", 1e-3, 0.05, 0.9),
}
STEPS, STEPS_PER_EPOCH, WARMUP_EPOCHS, EPOCHS = 10, 4, 1, 4


def make_optimizer(kind, params, weight_decay, momentum):
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    if kind == "lars":
        return Lars(params, weight_decay=weight_decay, momentum=momentum)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.0, momentum=momentum, weight_decay=weight_decay)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
    return torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.999), eps=1e-8)


def write_optimizer_case(outdir, case, seed):
    kind, spec, base_lr, weight_decay, momentum = OPTIMIZER_CASES[case]
    generator = torch.Generator().manual_seed(seed)
    folder = outdir / case
    folder.mkdir(parents=True, exist_ok=True)
    prefix = 1
    pooling = make_pooling(spec, prefix)
    if pooling is not None:
        perturb_(pooling, generator)
    head = Head(spec, pooling, DIM, generator).train()
    for name, value in head.named_state().items():
        save(folder, f"init.{name}", value)
    save(folder, "init.bn.running_mean", head.bn.running_mean)
    save(folder, "init.bn.running_var", head.bn.running_var)
    params = list(head.named_state().values())
    optimizer = make_optimizer(kind, params, weight_decay, momentum)
    peak_lr = base_lr * BATCH / 256
    lrs = []
    for step in range(STEPS):
        tokens, attention, labels = inputs(prefix, generator)
        save(folder, f"step{step}.tokens", tokens)
        save(folder, f"step{step}.attention", attention)
        save(folder, f"step{step}.labels", labels)
        lr = scheduled_lr(step / STEPS_PER_EPOCH, peak_lr, WARMUP_EPOCHS, EPOCHS)
        lrs.append(lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits, _ = head(tokens, fixed_features(tokens, attention, prefix))
        F.cross_entropy(logits, labels).backward()
        optimizer.step()
        optimizer.zero_grad()
        for name, value in head.named_state().items():
            save(folder, f"step{step}.{name}", value)
    return {"spec": spec, "layout": layout(prefix), "num_classes": NUM_CLASSES, "optimizer": kind,
            "base_lr": base_lr, "weight_decay": weight_decay, "momentum": momentum, "batch": BATCH, "steps": STEPS,
            "steps_per_epoch": STEPS_PER_EPOCH, "warmup_epochs": WARMUP_EPOCHS, "epochs": EPOCHS, "lrs": lrs,
            "parameters": sorted(head.named_state())}


# ---- the classifier's initialisation: nn.Linear's own reset_parameters (beyond_cls and efficient-probing
# leave the head's Linear as PyTorch makes it) and MAE main_linprobe.py's trunc_normal_(std=0.01), bias 0,
# drawn from a generator seeded as vitprobe seeds it (probe/heads.cpp: derive_seed(seed, kLinearSeedStream)).
# nn.Linear's draws are compared value for value; torch's trunc_normal_ (inverse-CDF) and vitprobe's normal_
# differ in their draws, so the MAE case compares the distribution (std and mean of 16,000 values).

MASK64 = (1 << 64) - 1


def mix_bits(value):
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK64
    return value ^ (value >> 31)


def derive_seed(seed, stream, item=0):
    """data/random.h derive_seed."""
    return mix_bits((mix_bits(mix_bits((seed + 0x9E3779B97F4A7C15) & MASK64) ^ stream) +
                     item * 0x9E3779B97F4A7C15) & MASK64)


LINEAR_SEED_STREAM = 12
INIT_CASES = [
    # (case, init, --heads spec, classes, head seed)
    ("init_pytorch_cls", "pytorch", "cls", 10, 7), ("init_pytorch_cls_mean", "pytorch", "cls+mean", 1000, 8),
    ("init_mae_cls", "mae", "cls", 1000, 9),
]


def write_init_case(outdir, case, init, spec, classes, seed):
    folder = outdir / case
    folder.mkdir(parents=True, exist_ok=True)
    feature_dim = 2 * DIM if spec == "cls+mean" else DIM
    generator = torch.Generator().manual_seed(derive_seed(seed, LINEAR_SEED_STREAM))
    linear = nn.Linear(feature_dim, classes)
    with torch.no_grad():
        if init == "pytorch":  # nn.Linear.reset_parameters with our generator, step for step
            nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(feature_dim)
            nn.init.uniform_(linear.bias, -bound, bound, generator=generator)
        else:  # MAE: trunc_normal_(head.weight, std=0.01) (a at +-2 = 200 sd: never reached), zero bias
            nn.init.trunc_normal_(linear.weight, std=0.01, a=-2.0, b=2.0, generator=generator)
            nn.init.zeros_(linear.bias)
    save(folder, "linear.weight", linear.weight)
    save(folder, "linear.bias", linear.bias)
    return {"init": init, "spec": spec, "layout": layout(1), "num_classes": classes, "seed": seed}


def main(argv):
    if len(argv) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    binary, outdir = Path(argv[1]), Path(argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    index = {"heads": {}, "optimizers": {}, "inits": {}}
    for seed, (case, spec, prefix) in enumerate(HEAD_CASES):
        index["heads"][case] = write_head_case(outdir, case, spec, prefix, 100 + seed)
    for seed, case in enumerate(OPTIMIZER_CASES):
        index["optimizers"][case] = write_optimizer_case(outdir, case, 200 + seed)
    for case, init, spec, classes, seed in INIT_CASES:
        index["inits"][case] = write_init_case(outdir, case, init, spec, classes, seed)
    (outdir / "cases.json").write_text(json.dumps(index, indent=2))
    env = dict(os.environ, VITPROBE_PROBE_REFERENCES=str(outdir))
    result = subprocess.run([str(binary), "--gtest_filter=ProbeReference.*"], env=env)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
