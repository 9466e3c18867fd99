"""Independent PyTorch reference of the ViT encoders vitprobe runs, for golden tests.

Written from the published formulas (timm's vision_transformer.py, the MAE and DINOv2 code), not from
vitprobe's C++, so the two can check each other. Attention is computed explicitly, never through a fused
kernel, so the softmax probabilities of every block can be returned and compared.

Also here: the fixed 2-D sin-cos position embedding of MAE / I-JEPA, timm-style resampling of a learned
position embedding, the key map from torchvision's VisionTransformer to timm names, and a minimal
safetensors reader/writer (Debian ships no safetensors package).
"""
import json
import math
import struct
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-6


@dataclass
class VitConfig:
    """Hyper-parameters of one encoder; names follow timm's VisionTransformer arguments."""

    img_size: int = 32
    patch_size: int = 8
    in_chans: int = 3
    embed_dim: int = 64
    depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    num_registers: int = 0
    layer_scale: bool = False
    num_classes: int = 0

    @property
    def grid_size(self):
        return self.img_size // self.patch_size

    @property
    def num_prefix_tokens(self):
        return int(self.class_token) + self.num_registers


class Attention(nn.Module):
    """Multi-head self-attention that also returns softmax(q k^T * head_dim^-0.5) per head."""

    def __init__(self, dim, num_heads, qkv_bias):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, n_tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, n_tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attention @ v).transpose(1, 2).reshape(batch, n_tokens, dim)
        return self.proj(out), attention


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (CaiT / DINOv2 `ls1.gamma`, `ls2.gamma`)."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as timm's nn.GELU default


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, config):
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias)
        self.ls1 = LayerScale(dim) if config.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.ls2 = LayerScale(dim) if config.layer_scale else nn.Identity()

    def forward(self, x):
        attended, attention = self.attn(self.norm1(x))
        x = x + self.ls1(attended)
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x, attention


class PatchEmbed(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, config.patch_size, config.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D), patches row-major


class ReferenceViT(nn.Module):
    """timm / MAE / DINOv2-layout ViT. State-dict names are timm's, with DINOv2's `register_tokens`."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        if config.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if config.num_registers:
            self.register_tokens = nn.Parameter(torch.zeros(1, config.num_registers, dim))
        n_positions = int(config.class_token) + config.grid_size**2
        self.pos_embed = nn.Parameter(torch.zeros(1, n_positions, dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        if config.num_classes:
            self.head = nn.Linear(dim, config.num_classes)

    def embed(self, x):
        """Token sequence entering block 0: [cls], registers, patches (DINOv2 order).

        The position embedding covers [cls] and patches only and is added before the registers are
        inserted, so registers carry no position (DINOv2 `prepare_tokens_with_masks`).
        """
        patches = self.patch_embed(x)
        grid = (x.shape[-2] // self.config.patch_size, x.shape[-1] // self.config.patch_size)
        n_cls = int(self.config.class_token)
        pos_embed = self.pos_embed
        if pos_embed.shape[1] != n_cls + grid[0] * grid[1]:
            pos_embed = resample_abs_pos_embed(pos_embed, grid, num_prefix_tokens=n_cls)
        tokens = patches
        if n_cls:
            tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + pos_embed
        if self.config.num_registers:
            registers = self.register_tokens.expand(len(x), -1, -1)
            tokens = torch.cat([tokens[:, :n_cls], registers, tokens[:, n_cls:]], dim=1)
        return tokens

    def forward_all(self, x):
        """Everything a golden test compares: final normed tokens, each block's output and attention."""
        tokens = self.embed(x)
        block_outputs, attentions = [], []
        for block in self.blocks:
            tokens, attention = block(tokens)
            block_outputs.append(tokens)
            attentions.append(attention)
        normed = self.norm(tokens)
        result = {"tokens": normed, "blocks": block_outputs, "attentions": attentions}
        if self.config.num_classes:
            result["logits"] = self.head(normed[:, 0])  # timm global_pool='token'
        return result


def resample_abs_pos_embed(pos_embed, new_size, num_prefix_tokens=1, antialias=False):
    """Resample a learned (1, prefix + h*w, D) position embedding to a new (h', w') patch grid.

    timm's resample_abs_pos_embed semantics: prefix ([cls]) positions are kept apart and unchanged, the
    square grid is interpolated bicubically with align_corners=False, in fp32. antialias=False matches MAE's
    interpolate_pos_embed and DINOv2; recent timm passes antialias=True, which differs when upsampling
    (PyTorch's antialiased bicubic uses a=-0.5), so it is available for diagnosis only.
    """
    prefix, grid_tokens = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = int(math.isqrt(grid_tokens.shape[1]))
    dim = grid_tokens.shape[-1]
    grid = grid_tokens.float().reshape(1, old, old, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_size), mode="bicubic", align_corners=False,
                         antialias=antialias)
    grid_tokens = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid_tokens], dim=1)


def get_1d_sincos_pos_embed_from_grid(embed_dim, positions):
    """MAE's 1-D formula: [sin(p * omega), cos(p * omega)], omega_i = 1 / 10000^(i / (embed_dim/2))."""
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=False):
    """Fixed 2-D sin-cos position embedding, transcribed from MAE's util/pos_embed.py (I-JEPA uses it too).

    Ordering, which is easy to get wrong: MAE builds grid = meshgrid(grid_w, grid_h) (numpy 'xy' indexing),
    so grid[0][row, col] = col and grid[1][row, col] = row, and then names the half computed from grid[0]
    "emb_h". For the patch at (row, col), token index row * grid_size + col, the embedding is therefore
        [sin(col * omega), cos(col * omega), sin(row * omega), cos(row * omega)],
    each part embed_dim / 4 wide: the first half encodes the column (x), the second half the row (y).
    Returns float64 (N, D), or (1 + N, D) with a zero row for [cls]; MAE casts it to fp32 when stored.
    """
    assert embed_dim % 4 == 0
    grid_h = np.arange(grid_size, dtype=np.float64)
    grid_w = np.arange(grid_size, dtype=np.float64)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, grid_size, grid_size)
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    pos_embed = np.concatenate([emb_h, emb_w], axis=1)
    if cls_token:
        pos_embed = np.concatenate([np.zeros([1, embed_dim]), pos_embed], axis=0)
    return pos_embed


def state_dict_from_torchvision(tv_state):
    """Map a torchvision VisionTransformer state dict to timm names (the weights are used unchanged:
    in_proj_weight is already [q; k; v] stacked like timm's qkv)."""
    layer_map = {
        "ln_1": "norm1", "ln_2": "norm2", "self_attention.in_proj": "attn.qkv",
        "self_attention.out_proj": "attn.proj", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2",
    }
    fixed = {"conv_proj.weight": "patch_embed.proj.weight", "conv_proj.bias": "patch_embed.proj.bias",
             "class_token": "cls_token", "encoder.pos_embedding": "pos_embed",
             "encoder.ln.weight": "norm.weight", "encoder.ln.bias": "norm.bias",
             "heads.head.weight": "head.weight", "heads.head.bias": "head.bias"}
    timm_state = {}
    for key, value in tv_state.items():
        if key in fixed:
            timm_state[fixed[key]] = value
            continue
        prefix = "encoder.layers.encoder_layer_"
        assert key.startswith(prefix), key
        index, rest = key[len(prefix):].split(".", 1)
        for tv_name, timm_name in layer_map.items():
            if rest.startswith(tv_name):
                rest = timm_name + rest[len(tv_name):].replace("_weight", ".weight").replace("_bias", ".bias")
                break
        timm_state[f"blocks.{index}.{rest}"] = value
    return timm_state


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}


def write_safetensors(path, tensors, metadata=None):
    """Write a safetensors file: u64 little-endian header length, JSON header padded with spaces so the
    data starts 8-byte aligned, then the raw little-endian bytes of each tensor in order."""
    names = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}
    header, blobs, offset = {}, [], 0
    for key, tensor in tensors.items():
        tensor = tensor.detach().contiguous().cpu()
        blob = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[key] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape),
                       "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = metadata
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-(8 + len(header_bytes)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Read a safetensors file into a dict of CPU tensors, in header order."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + header_len:]
    tensors = {}
    for key, info in header.items():
        start, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        raw = bytearray(body[start:end])
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[key] = flat.reshape(info["shape"]).clone()
    return tensors
