"""Independent PyTorch reference of the BEiT / SimMIM ViT encoder, for golden tests.

Written from the official formulas, not from vitprobe's C++ (file:line of the sources read):
  microsoft/SimMIM models/vision_transformer.py   Attention:56-121, Block:124-152, RelativePositionBias:179-213,
                                                  VisionTransformer:216-256 (state-dict names), simmim.py:57-121
  gmum/beyond_cls models_simmim.py                the same model, whose Block.forward:138-152 also returns the
                                                  magnitudes [|x|, |y|] with y = attn(norm1(x)) taken BEFORE
                                                  gamma_1 * y; main_attention_stats.py:260-262 the ratio |y|/(|x|+1e-6)
  microsoft/SimMIM utils.py:49-61                 the checkpoint: {'model', 'optimizer', 'lr_scheduler',
                                                  'max_accuracy', 'epoch', 'config'} with the yacs config
The module and parameter names reproduce the official state dict exactly (q_bias / v_bias without a k bias,
gamma_1 / gamma_2, relative_position_bias_table with its persistent relative_position_index buffer, norm or
fc_norm), so a checkpoint written from this model has the official key layout. timm's Beit (same layout) is
a second, independent implementation: timm_beit() loads the same weights for the self-check.
"""
import math
from functools import partial
import sys
import types
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-6  # build_vit: norm_layer=partial(nn.LayerNorm, eps=1e-6)


@dataclass
class SimMIMConfig:
    """VisionTransformerSimMIM's arguments (models_simmim.py:219-223) for a tiny model."""

    img_size: int = 32
    patch_size: int = 8
    in_chans: int = 3
    embed_dim: int = 64
    depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    init_values: float = 0.1        # LayerScale gamma_1 / gamma_2 (None: no LayerScale)
    use_abs_pos_emb: bool = False
    use_rel_pos_bias: bool = False  # a table per block
    use_shared_rel_pos_bias: bool = True
    use_mean_pooling: bool = False  # True: norm is Identity and fc_norm follows mean pooling
    num_classes: int = 0

    @property
    def grid_size(self):
        return self.img_size // self.patch_size


def relative_position_index(grid):
    """(1 + g*g, 1 + g*g) int64: the official construction (vision_transformer.py:65-80), [cls] row/col last."""
    coords = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"))
    flat = torch.flatten(coords, 1)
    relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += grid - 1
    relative[:, :, 1] += grid - 1
    relative[:, :, 0] *= 2 * grid - 1
    num_distances = (2 * grid - 1) ** 2 + 3
    index = torch.zeros((grid * grid + 1,) * 2, dtype=relative.dtype)
    index[1:, 1:] = relative.sum(-1)
    index[0, 0:] = num_distances - 3  # [cls] attending to patches
    index[0:, 0] = num_distances - 2  # patches attending to [cls]
    index[0, 0] = num_distances - 1
    return index


def relative_bias(table, index):
    """The (heads, T, T) logit bias: table[index] with the head axis first (vision_transformer.py:104-110)."""
    tokens = index.shape[0]
    return table[index.view(-1)].view(tokens, tokens, -1).permute(2, 0, 1).contiguous()


class RelativePositionBias(nn.Module):
    """The shared table ((2g-1)^2 + 3, heads) and its index (vision_transformer.py:179-213)."""

    def __init__(self, grid, num_heads):
        super().__init__()
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(grid))

    def forward(self):
        return relative_bias(self.relative_position_bias_table, self.relative_position_index)


class Attention(nn.Module):
    """qkv without a bias; q_bias and v_bias, k's bias fixed at zero; optional own relative position bias."""

    def __init__(self, dim, num_heads, qkv_bias, grid=None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        if grid:
            # The official Attention holds its own table and index (vision_transformer.py:58-82).
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, num_heads))
            self.register_buffer("relative_position_index", relative_position_index(grid))
        else:
            self.relative_position_bias_table = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, shared_bias=None):
        batch, n_tokens, dim = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, n_tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if self.relative_position_bias_table is not None:
            logits = logits + relative_bias(self.relative_position_bias_table, self.relative_position_index)
        if shared_bias is not None:
            logits = logits + shared_bias
        # fp32 softmax whatever the dtype, as under the official run's autocast (softmax autocasts to fp32).
        attention = logits.float().softmax(dim=-1)
        out = (attention.to(v.dtype) @ v).transpose(1, 2).reshape(batch, n_tokens, dim)
        return self.proj(out), attention


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias,
                              config.grid_size if config.use_rel_pos_bias else None)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        if config.init_values is not None:
            self.gamma_1 = nn.Parameter(config.init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(config.init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x, shared_bias=None):
        """(output, attention, magnitudes): magnitudes as beyond_cls returns them plus the after-gamma norm,
        {"residual": |x|, "branch": |y|, "branch_after_layer_scale": |gamma_1 * y|}, y = attn(norm1(x))."""
        y, attention = self.attn(self.norm1(x), shared_bias)
        scaled = y if self.gamma_1 is None else self.gamma_1 * y
        magnitudes = {"residual": torch.linalg.vector_norm(x, dim=2), "branch": torch.linalg.vector_norm(y, dim=2),
                      "branch_after_layer_scale": torch.linalg.vector_norm(scaled, dim=2)}
        x = x + scaled
        mlp = self.mlp(self.norm2(x))
        x = x + (mlp if self.gamma_2 is None else self.gamma_2 * mlp)
        return x, attention, magnitudes


class PatchEmbed(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, config.patch_size, config.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class SimMIMViT(nn.Module):
    """The official VisionTransformer (SimMIM) with its exact state-dict names."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid_size ** 2 + 1, dim)) if config.use_abs_pos_emb else None
        self.rel_pos_bias = (RelativePositionBias(config.grid_size, config.num_heads)
                             if config.use_shared_rel_pos_bias else None)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.Identity() if config.use_mean_pooling else nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.fc_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS) if config.use_mean_pooling else None
        self.head = nn.Linear(dim, config.num_classes) if config.num_classes else None

    def forward_all(self, x):
        """Final tokens (after norm: Identity with mean pooling), each block's output, attention, magnitudes."""
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), self.patch_embed(x)], dim=1)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed
        shared = self.rel_pos_bias() if self.rel_pos_bias is not None else None
        blocks, attentions, magnitudes = [], [], []
        for block in self.blocks:
            tokens, attention, magnitude = block(tokens, shared)
            blocks.append(tokens)
            attentions.append(attention)
            magnitudes.append(magnitude)
        return {"tokens": self.norm(tokens), "blocks": blocks, "attentions": attentions, "magnitudes": magnitudes}


def randomize_(model, seed, gamma_range=(0.05, 0.35)):
    """Non-trivial seeded weights: LayerNorm gains near 1, biases and relative tables random, LayerScale gammas
    uniform in gamma_range (far from 1, so the magnitude before and after LayerScale differ several-fold)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            owner_name, _, leaf = name.rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            noise = torch.randn(param.shape, generator=generator)
            if isinstance(owner, nn.LayerNorm):
                value = 1.0 + 0.2 * noise if leaf == "weight" else 0.1 * noise
            elif leaf.startswith("gamma_"):
                low, high = gamma_range
                value = low + (high - low) * torch.rand(param.shape, generator=generator)
            elif leaf == "relative_position_bias_table":
                value = noise  # logit offsets of order 1: the bias visibly moves the attention
            elif leaf.endswith("weight") and param.dim() >= 2:
                value = noise / math.sqrt(param[0].numel())
            elif leaf.endswith("bias"):
                value = 0.1 * noise
            else:  # [cls], position embedding
                value = 0.5 * noise
            param.copy_(value)
    return model.eval()


def encoder_state(model):
    """The encoder's tensors as the official state dict names them (buffers included, no head)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("head.")}


def encoder_parameter_count(state):
    """Parameters vitprobe's encoder uses: no index buffers, no fc_norm (it follows mean pooling)."""
    return int(sum(v.numel() for k, v in state.items()
                   if not k.endswith("relative_position_index") and not k.startswith("fc_norm.")))


def model_from_state(config, state):
    """A SimMIMViT loaded strictly from an official-layout state dict."""
    model = SimMIMViT(config).eval()
    model.load_state_dict(state, strict=True)
    return model


def yacs_config_node(values):
    """An object pickled exactly as yacs.config.CfgNode (a dict subclass with four attributes), which SimMIM's
    save_checkpoint stores under 'config'; yacs itself is not a dependency, so a stand-in class is registered
    under its module name for the pickler."""
    module = sys.modules.get("yacs.config")
    if module is None:
        package = sys.modules.setdefault("yacs", types.ModuleType("yacs"))
        module = types.ModuleType("yacs.config")

        class CfgNode(dict):
            pass

        CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
        module.CfgNode = CfgNode
        package.config = module
        sys.modules["yacs.config"] = module

    def build(entries):
        node = module.CfgNode({k: build(v) if isinstance(v, dict) else v for k, v in entries.items()})
        node.__dict__.update({"__immutable__": True, "__deprecated_keys__": set(), "__renamed_keys__": {},
                              "__new_allowed__": False})
        return node

    return build(values)


def simmim_config_node(config):
    """The parts of SimMIM's yacs config (config.py) a pretraining run records."""
    return yacs_config_node({
        "MODEL": {"TYPE": "vit", "NAME": "simmim_pretrain", "DROP_PATH_RATE": 0.1,
                  "VIT": {"PATCH_SIZE": config.patch_size, "IN_CHANS": config.in_chans, "EMBED_DIM": config.embed_dim,
                          "DEPTH": config.depth, "NUM_HEADS": config.num_heads, "MLP_RATIO": config.mlp_ratio,
                          "QKV_BIAS": config.qkv_bias, "INIT_VALUES": config.init_values,
                          "USE_APE": config.use_abs_pos_emb, "USE_RPB": config.use_rel_pos_bias,
                          "USE_SHARED_RPB": config.use_shared_rel_pos_bias,
                          "USE_MEAN_POOLING": config.use_mean_pooling}},
        "DATA": {"IMG_SIZE": config.img_size, "MASK_PATCH_SIZE": 32, "MASK_RATIO": 0.6},
        "TRAIN": {"EPOCHS": 800, "BASE_LR": 1e-4, "LR_SCHEDULER": {"NAME": "multistep", "MULTISTEPS": [700]}},
        "AMP_OPT_LEVEL": "O0", "OUTPUT": "output/simmim_pretrain", "TAG": "simmim_pretrain__vit_tiny"})


def save_simmim_pretrain_checkpoint(path, model, seed):
    """SimMIM's main_simmim.py checkpoint: the SimMIM module's state dict (encoder.*, encoder.mask_token,
    decoder.0 = the 1x1 conv to stride^2 * 3 channels) in {'model', 'optimizer', 'lr_scheduler', 'max_accuracy',
    'epoch', 'config'} (utils.py:49-55)."""
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    state = {"encoder." + k: v for k, v in encoder_state(model).items()}
    state["encoder.mask_token"] = 0.02 * torch.randn(1, 1, config.embed_dim, generator=generator)
    out_channels = config.patch_size ** 2 * 3
    state["decoder.0.weight"] = 0.02 * torch.randn(out_channels, config.embed_dim, 1, 1, generator=generator)
    state["decoder.0.bias"] = torch.zeros(out_channels)
    torch.save({"model": state,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "weight_decay": 0.05, "params": [0, 1]}]},
                "lr_scheduler": {"t_initial": 800, "decay_t": [700], "decay_rate": 0.1},
                "max_accuracy": 0.0, "epoch": 799, "config": simmim_config_node(config)}, path)


def timm_beit(config, state):
    """timm's Beit (timm/models/beit.py) with the same weights: an independent second implementation."""
    from timm.models.beit import Beit

    model = Beit(img_size=config.img_size, patch_size=config.patch_size, in_chans=config.in_chans,
                 num_classes=config.num_classes, global_pool="avg" if config.use_mean_pooling else "token",
                 embed_dim=config.embed_dim, depth=config.depth, num_heads=config.num_heads,
                 mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias, init_values=config.init_values,
                 use_abs_pos_emb=config.use_abs_pos_emb, use_rel_pos_bias=config.use_rel_pos_bias,
                 use_shared_rel_pos_bias=config.use_shared_rel_pos_bias,
                 norm_layer=partial(nn.LayerNorm, eps=LAYER_NORM_EPS)).eval()
    # timm keeps the index and the zero k bias as non-persistent buffers: not in its state dict.
    wanted = {k: v for k, v in state.items() if not k.endswith("relative_position_index")}
    model.load_state_dict(wanted, strict=True)
    return model


def timm_beit_tokens(model, x):
    """timm Beit's tokens after its final norm (Identity with mean pooling), before pooling and head."""
    with torch.no_grad():
        return model.forward_features(x)


def describe_config(config):
    return asdict(config)
