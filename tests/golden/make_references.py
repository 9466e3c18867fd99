"""Write tiny checkpoints in every supported layout, their inputs, and the outputs vitprobe must reproduce.

Usage: make_references.py OUTDIR [CASE ...]   (all cases when none are named)

Each case gets OUTDIR/<case>/ with the checkpoint, input.npy and expected tokens.npy, block{i}.npy,
attn{i}.npy (and logits.npy where a classifier exists); OUTDIR/cases.json describes every case written
(checkpoint, extra CLI arguments, expected files, what `vitprobe inspect` must report).

The weights are random but deliberately far from an identity-like initialisation (LayerNorm gains and
biases, [cls], registers, position embeddings and LayerScale all random) so that a missing bias, a
transposed weight or a wrong token order shows up as a large difference. Everything is seeded: two runs
write identical arrays.
"""
import argparse
import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

import reference_simmim
from reference_simmim import SimMIMConfig, SimMIMViT
from reference_vit import (Block, ReferenceViT, VitConfig, get_2d_sincos_pos_embed,
                           resample_abs_pos_embed, write_safetensors)

TINY = VitConfig(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=4, mlp_ratio=4.0)
BATCH = 2
MAE_SEED = 1  # the weights shared by the mae, mae-safetensors, resample, dino and mocov3 cases


def randomize_(module, seed):
    """Fill every parameter with non-trivial random values of a sensible scale (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            noise = torch.randn(param.shape, generator=generator)
            if isinstance(owner, nn.LayerNorm):
                value = 1.0 + 0.2 * noise if leaf == "weight" else 0.1 * noise
            elif leaf == "gamma":
                value = 0.1 + 0.9 * torch.rand(param.shape, generator=generator)
            elif leaf.endswith("weight") and param.dim() >= 2:
                value = noise / math.sqrt(param[0].numel())
            elif leaf.endswith("bias"):
                value = 0.1 * noise
            else:  # [cls], registers, position embeddings
                value = 0.5 * noise
            param.copy_(value)
    return module


def perturbed(state, seed, scale=0.05):
    """A copy of a state dict with small noise: the student / online / momentum encoder that must NOT be
    the one vitprobe picks, different enough that picking it fails the comparison."""
    generator = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v.clone()
            for k, v in state.items()}


def random_tensors(shapes, seed):
    generator = torch.Generator().manual_seed(seed)
    return {name: 0.1 * torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def reference_model(config, seed):
    return randomize_(ReferenceViT(config), seed).eval()


def encoder_state(model):
    """The encoder's tensors under timm names (no classifier head)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("head.")}


def mae_model(num_classes=0):
    model = reference_model(TINY, MAE_SEED)
    if not num_classes:
        return model
    with_head = ReferenceViT(replace(TINY, num_classes=num_classes)).eval()
    with_head.load_state_dict(model.state_dict(), strict=False)
    randomize_(with_head.head, seed=11)
    return with_head


def make_input(size, seed):
    return torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(seed))


def block_state(prefix, dim, num_heads, seed):
    """Random tensors of one transformer block (used for decoders / predictors that must be ignored)."""
    block = randomize_(Block(replace(TINY, embed_dim=dim, num_heads=num_heads)), seed)
    return {prefix + k: v.detach().clone() for k, v in block.state_dict().items()}


def mae_decoder_state(grid_size, patch_size, seed):
    decoder_dim = 32
    state = random_tensors({"mask_token": (1, 1, decoder_dim),
                            "decoder_embed.weight": (decoder_dim, TINY.embed_dim),
                            "decoder_embed.bias": (decoder_dim,),
                            "decoder_pos_embed": (1, 1 + grid_size**2, decoder_dim)}, seed)
    state.update(block_state("decoder_blocks.0.", decoder_dim, 2, seed + 1))
    state.update(random_tensors({"decoder_norm.weight": (decoder_dim,), "decoder_norm.bias": (decoder_dim,),
                                 "decoder_pred.weight": (patch_size**2 * 3, decoder_dim),
                                 "decoder_pred.bias": (patch_size**2 * 3,)}, seed + 2))
    return state


def adam_state(example):
    """An optimizer state dict as torch.optim.AdamW writes it: int keys, tuples, None, bools."""
    return {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(example),
                          "exp_avg_sq": torch.zeros_like(example)}},
            "param_groups": [{"lr": 1.5e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.05,
                              "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                              "params": [0, 1, 2]}]}


def save_mae_checkpoint(path, encoder):
    """MAE's main_pretrain.py layout: {'model', 'optimizer', 'epoch', 'scaler', 'args'}."""
    model = dict(encoder)
    model.update(mae_decoder_state(TINY.grid_size, TINY.patch_size, seed=21))
    args = argparse.Namespace(model="mae_vit_tiny_patch8", input_size=32, mask_ratio=0.75,
                              norm_pix_loss=True, batch_size=64, epochs=800, blr=1.5e-4, lr=None,
                              data_path="/datasets/imagenet", output_dir="./output_dir", seed=0,
                              pin_mem=True, dist_on_itp=False)
    torch.save({"model": model, "optimizer": adam_state(encoder["cls_token"]), "epoch": 7,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                           "growth_interval": 2000, "_growth_tracker": 17},
                "args": args}, path)


def torchvision_outputs(model, x):
    """Expected outputs of a torchvision VisionTransformer, taken from its own modules.

    Attention probabilities come from each layer's self_attention called with need_weights=True on the
    ln_1 output; the layer output recomputed from that call must equal the layer's own forward.
    """
    with torch.no_grad():
        patches = model._process_input(x)
        tokens = torch.cat([model.class_token.expand(len(x), -1, -1), patches], dim=1)
        hidden = tokens + model.encoder.pos_embedding
        blocks, attentions = [], []
        for layer in model.encoder.layers:
            normed = layer.ln_1(hidden)
            attended, attention = layer.self_attention(normed, normed, normed, need_weights=True,
                                                       average_attn_weights=False)
            residual = attended + hidden
            recomputed = residual + layer.mlp(layer.ln_2(residual))
            hidden = layer(hidden)
            assert (recomputed - hidden).abs().max() <= 1e-5, "need_weights path differs from the layer"
            blocks.append(hidden)
            attentions.append(attention)
        final = model.encoder(tokens)
        assert (final - model.encoder.ln(hidden)).abs().max() <= 1e-6
        logits = model(x)
    return {"tokens": final, "blocks": blocks, "attentions": attentions, "logits": logits}


def save_outputs(case_dir, outputs):
    """Write expected arrays as float32 .npy; returns their paths relative to the output root."""
    def save(name, tensor):
        np.save(case_dir / name, tensor.detach().numpy().astype(np.float32))
        return f"{case_dir.name}/{name}"

    expected = {"tokens": save("tokens.npy", outputs["tokens"]),
                "blocks": [save(f"block{i}.npy", t) for i, t in enumerate(outputs["blocks"])],
                "attn": [save(f"attn{i}.npy", t) for i, t in enumerate(outputs["attentions"])],
                "logits": None}
    if "logits" in outputs:
        expected["logits"] = save("logits.npy", outputs["logits"])
    return expected


def arch_of(config):
    fields = ["embed_dim", "depth", "num_heads", "patch_size", "img_size", "mlp_ratio", "qkv_bias",
              "class_token", "num_registers", "layer_scale"]
    return {name: getattr(config, name) for name in fields}


def describe(case_dir, *, description, checkpoint, source, config, encoder, outputs, x, args=(),
             ignored_keys=(), not_ignored_keys=(), skipped_entries=(), unwrap=None):
    """Save input and expected outputs and return the case's cases.json entry.

    unwrap says how the Python self-check finds the encoder again: {"container": [...], "prefix": "..."}
    (timm names after stripping), or {"torchvision": true}.
    """
    np.save(case_dir / "input.npy", x.numpy().astype(np.float32))
    return {
        "description": description,
        "checkpoint": f"{case_dir.name}/{checkpoint}",
        "format": "safetensors" if checkpoint.endswith(".safetensors") else "torch-zip",
        "input": f"{case_dir.name}/input.npy",
        "args": list(args),
        "source": source,
        "arch": arch_of(config),
        "config": asdict(config),
        "num_params": int(sum(v.numel() for k, v in encoder.items() if k != "mask_token")),
        "num_prefix_tokens": config.num_prefix_tokens,
        "expected": save_outputs(case_dir, outputs),
        "ignored_keys": list(ignored_keys),
        "not_ignored_keys": list(not_ignored_keys),
        "skipped_entries": list(skipped_entries),
        "unwrap": unwrap or {"container": [], "prefix": ""},
    }


def forward_reference(model, x):
    with torch.no_grad():
        return model.forward_all(x)


def case_torchvision(case_dir):
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=4, hidden_dim=64,
                              mlp_dim=256, num_classes=10)
    randomize_(model, seed=5).eval()
    torch.save(model.state_dict(), case_dir / "vit_torchvision.pth")
    x = make_input(32, seed=105)
    encoder = {k: v for k, v in model.state_dict().items() if not k.startswith("heads.")}
    return describe(case_dir, description="torchvision VisionTransformer state_dict with a 10-class head",
                    checkpoint="vit_torchvision.pth", source="torchvision", config=replace(TINY, num_classes=10),
                    encoder=encoder, outputs=torchvision_outputs(model, x), x=x,
                    ignored_keys=["heads.head.weight", "heads.head.bias"],
                    not_ignored_keys=["class_token", "encoder.layers.encoder_layer_0.self_attention.in_proj_weight"],
                    unwrap={"torchvision": True})


def case_mae(case_dir):
    model = mae_model()
    encoder = encoder_state(model)
    save_mae_checkpoint(case_dir / "mae_pretrain.pth", encoder)
    x = make_input(32, seed=101)
    return describe(case_dir, description="MAE pre-training checkpoint: encoder + decoder, optimizer, args",
                    checkpoint="mae_pretrain.pth", source="mae", config=TINY, encoder=encoder,
                    outputs=forward_reference(model, x), x=x,
                    ignored_keys=["model.mask_token", "model.decoder_embed.weight", "model.decoder_pos_embed",
                                  "model.decoder_blocks.0.attn.qkv.weight", "model.decoder_norm.weight",
                                  "model.decoder_pred.weight"],
                    not_ignored_keys=["model.cls_token", "model.pos_embed", "model.blocks.0.attn.qkv.weight"],
                    skipped_entries=["args", "epoch"], unwrap={"container": ["model"], "prefix": ""})


def case_mae_safetensors(case_dir):
    model = mae_model(num_classes=10)
    write_safetensors(case_dir / "vit_timm.safetensors", model.state_dict(), metadata={"format": "pt"})
    x = make_input(32, seed=102)
    return describe(case_dir, description="the MAE encoder plus a 10-class timm head as flat safetensors",
                    checkpoint="vit_timm.safetensors", source="timm", config=model.config,
                    encoder=encoder_state(model), outputs=forward_reference(model, x), x=x,
                    ignored_keys=["head.weight", "head.bias"], not_ignored_keys=["cls_token", "norm.weight"])


def case_ijepa(case_dir):
    config = replace(TINY, class_token=False)
    model = reference_model(config, seed=3)
    with torch.no_grad():  # I-JEPA stores its fixed sin-cos table as the (frozen) pos_embed parameter
        model.pos_embed.copy_(torch.from_numpy(get_2d_sincos_pos_embed(64, config.grid_size)).float()[None])
    target = encoder_state(model)
    predictor_dim = 32
    predictor = random_tensors({"predictor_embed.weight": (predictor_dim, 64), "predictor_embed.bias": (predictor_dim,),
                                "mask_token": (1, 1, predictor_dim),
                                "predictor_pos_embed": (1, config.grid_size**2, predictor_dim)}, seed=31)
    predictor.update(block_state("predictor_blocks.0.", predictor_dim, 2, seed=32))
    predictor.update(random_tensors({"predictor_norm.weight": (predictor_dim,), "predictor_norm.bias": (predictor_dim,),
                                     "predictor_proj.weight": (64, predictor_dim), "predictor_proj.bias": (64,)}, seed=33))
    torch.save({"encoder": {"module." + k: v for k, v in perturbed(target, seed=34).items()},
                "predictor": {"module." + k: v for k, v in predictor.items()},
                "target_encoder": {"module." + k: v for k, v in target.items()},
                "opt": adam_state(target["pos_embed"]), "scaler": None, "epoch": 3, "loss": 0.1234,
                "batch_size": 128, "world_size": 8, "lr": 0.001}, case_dir / "ijepa.pth.tar")
    x = make_input(32, seed=103)
    return describe(case_dir, description="I-JEPA checkpoint without [cls]; target_encoder must be used",
                    checkpoint="ijepa.pth.tar", source="ijepa", config=config, encoder=target,
                    outputs=forward_reference(model, x), x=x,
                    ignored_keys=["predictor.module.predictor_embed.weight", "predictor.module.mask_token",
                                  "encoder.module.blocks.0.attn.qkv.weight"],
                    not_ignored_keys=["target_encoder.module.pos_embed",
                                      "target_encoder.module.blocks.0.attn.qkv.weight"],
                    skipped_entries=["epoch"], unwrap={"container": ["target_encoder"], "prefix": "module."})


def case_dinov2_registers(case_dir):
    config = replace(TINY, num_registers=4, layer_scale=True)
    model = reference_model(config, seed=4)
    encoder = encoder_state(model)
    state = {"cls_token": encoder.pop("cls_token"), "pos_embed": encoder.pop("pos_embed"),
             "register_tokens": encoder.pop("register_tokens"),
             "mask_token": 0.1 * torch.randn(1, 64, generator=torch.Generator().manual_seed(41))}
    state.update(encoder)  # DINOv2's own key order: tokens, mask_token, patch_embed, blocks, norm
    torch.save(state, case_dir / "dinov2_reg4.pth")
    x = make_input(32, seed=104)
    return describe(case_dir, description="DINOv2 layout: 4 registers, LayerScale, mask_token; plain state dict",
                    checkpoint="dinov2_reg4.pth", source="dinov2", config=config, encoder=state,
                    outputs=forward_reference(model, x), x=x, ignored_keys=["mask_token"],
                    not_ignored_keys=["register_tokens", "blocks.0.ls1.gamma"])


def case_resample(case_dir):
    model = mae_model()
    encoder = encoder_state(model)
    save_mae_checkpoint(case_dir / "mae_pretrain.pth", encoder)
    x = make_input(48, seed=106)
    case = describe(case_dir, description="the MAE checkpoint run at --img-size 48: pos_embed resampled 4x4 -> 6x6",
                    checkpoint="mae_pretrain.pth", source="mae", config=TINY, encoder=encoder,
                    outputs=forward_reference(model, x), x=x, args=["--img-size", "48"],
                    skipped_entries=["args", "epoch"], unwrap={"container": ["model"], "prefix": ""})
    np.save(case_dir / "tokens_antialias.npy", antialiased_tokens(model, x).numpy())
    case["diagnostics"] = {"tokens_antialias": f"{case_dir.name}/tokens_antialias.npy"}
    return case


def antialiased_tokens(model, x):
    """Tokens had the position embedding been resampled with antialias=True (recent timm's default).

    Only used to explain a resampling mismatch, never as the expected value.
    """
    grid = (x.shape[-2] // model.config.patch_size, x.shape[-1] // model.config.patch_size)
    resized = ReferenceViT(replace(model.config, img_size=x.shape[-1])).eval()
    state = model.state_dict()
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], grid, antialias=True)
    resized.load_state_dict(state)
    with torch.no_grad():
        return resized.forward_all(x)["tokens"]


def case_dino(case_dir):
    model = mae_model()
    encoder = encoder_state(model)
    head = random_tensors({"mlp.0.weight": (96, 64), "mlp.0.bias": (96,), "mlp.2.weight": (96, 96),
                           "mlp.2.bias": (96,), "mlp.4.weight": (32, 96), "mlp.4.bias": (32,),
                           "last_layer.weight_g": (256, 1), "last_layer.weight_v": (256, 32)}, seed=61)
    teacher = {**{"backbone." + k: v for k, v in encoder.items()}, **{"head." + k: v for k, v in head.items()}}
    student = {"module." + k: v for k, v in perturbed(teacher, seed=62).items()}
    args = argparse.Namespace(arch="vit_tiny", patch_size=8, out_dim=256, norm_last_layer=True,
                              momentum_teacher=0.996, use_bn_in_head=False, warmup_teacher_temp=0.04,
                              teacher_temp=0.04, use_fp16=False, lr=0.0005, global_crops_scale=(0.4, 1.0),
                              local_crops_number=8, data_path="/datasets/imagenet/train", seed=0)
    torch.save({"student": student, "teacher": teacher, "optimizer": adam_state(encoder["cls_token"]),
                "epoch": 100, "args": args, "dino_loss": {"center": 0.1 * torch.ones(1, 256)}},
               case_dir / "dino_checkpoint.pth")
    x = make_input(32, seed=101)
    return describe(case_dir, description="DINO checkpoint (teacher/student) of the MAE weights: teacher backbone",
                    checkpoint="dino_checkpoint.pth", source="dino", config=TINY, encoder=encoder,
                    outputs=forward_reference(model, x), x=x,
                    ignored_keys=["teacher.head.mlp.0.weight", "teacher.head.last_layer.weight_g",
                                  "student.module.backbone.cls_token", "dino_loss.center"],
                    not_ignored_keys=["teacher.backbone.cls_token", "teacher.backbone.blocks.0.attn.qkv.weight"],
                    skipped_entries=["args", "epoch"], unwrap={"container": ["teacher"], "prefix": "backbone."})


def case_mocov3(case_dir):
    model = mae_model()
    encoder = encoder_state(model)
    projector = random_tensors({"0.weight": (96, 64), "1.weight": (96,), "1.bias": (96,),
                                "1.running_mean": (96,), "1.running_var": (96,), "3.weight": (32, 96)}, seed=71)
    projector["1.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)
    predictor = random_tensors({"0.weight": (96, 32), "1.weight": (96,), "1.bias": (96,), "3.weight": (32, 96)},
                               seed=72)
    base = {**encoder, **{"head." + k: v for k, v in projector.items()}}
    state = {**{"module.base_encoder." + k: v for k, v in base.items()},
             **{"module.momentum_encoder." + k: v for k, v in perturbed(base, seed=73).items()},
             **{"module.predictor." + k: v for k, v in predictor.items()}}
    torch.save({"epoch": 300, "arch": "vit_tiny", "state_dict": state, "optimizer": adam_state(encoder["cls_token"]),
                "scaler": {"scale": 1024.0}}, case_dir / "mocov3_checkpoint.pth.tar")
    x = make_input(32, seed=101)
    return describe(case_dir, description="MoCo v3 checkpoint of the MAE weights: base_encoder, projection head ignored",
                    checkpoint="mocov3_checkpoint.pth.tar", source="mocov3", config=TINY, encoder=encoder,
                    outputs=forward_reference(model, x), x=x,
                    ignored_keys=["state_dict.module.base_encoder.head.0.weight",
                                  "state_dict.module.predictor.0.weight",
                                  "state_dict.module.momentum_encoder.cls_token"],
                    not_ignored_keys=["state_dict.module.base_encoder.cls_token"],
                    skipped_entries=["epoch", "arch"],
                    unwrap={"container": ["state_dict"], "prefix": "module.base_encoder."})


def simmim_outputs(model, x):
    """Expected outputs of the SimMIM reference (tokens after its norm, blocks, fp32 attention)."""
    with torch.no_grad():
        outputs = model.forward_all(x)
    return {key: outputs[key] for key in ("tokens", "blocks", "attentions")}


def simmim_arch(config, layer_scale=True):
    """What `inspect` must report, in reference_vit's VitConfig terms."""
    return VitConfig(img_size=config.img_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
                     depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
                     qkv_bias=config.qkv_bias, layer_scale=layer_scale)


def simmim_case(case_dir, *, description, checkpoint, config, model, x, **kwargs):
    """describe() for a SimMIM / BEiT case: its reference is reference_simmim (family "simmim")."""
    encoder = reference_simmim.encoder_state(model)
    case = describe(case_dir, description=description, checkpoint=checkpoint, source="beit",
                    config=simmim_arch(config), encoder=encoder, outputs=simmim_outputs(model, x), x=x, **kwargs)
    case["family"] = "simmim"
    case["arch"].update({"final_norm": not config.use_mean_pooling,
                         "pos_embed": "learned" if config.use_abs_pos_emb else "none",
                         "rel_pos_bias": config.use_rel_pos_bias, "shared_rel_pos_bias": config.use_shared_rel_pos_bias,
                         "zero_k_bias": config.qkv_bias})
    case["simmim_config"] = reference_simmim.describe_config(config)
    case["num_params"] = reference_simmim.encoder_parameter_count(encoder)
    return case


def case_simmim(case_dir):
    """SimMIM's pre-training checkpoint of the released ViT-B recipe (simmim_pretrain__vit_base__img224__800ep:
    no absolute position embedding, one shared relative position bias, LayerScale, q/v biases, final norm)."""
    config = SimMIMConfig()
    model = reference_simmim.randomize_(SimMIMViT(config), seed=8)
    reference_simmim.save_simmim_pretrain_checkpoint(case_dir / "simmim_pretrain.pth", model, seed=81)
    x = make_input(32, seed=108)
    return simmim_case(case_dir, description="SimMIM pre-training checkpoint: shared relative position bias, no "
                       "pos_embed, LayerScale, q/v biases; encoder.* next to mask_token and decoder",
                       checkpoint="simmim_pretrain.pth", config=config, model=model, x=x,
                       ignored_keys=["model.encoder.mask_token", "model.decoder.0.weight", "model.decoder.0.bias"],
                       not_ignored_keys=["model.encoder.rel_pos_bias.relative_position_bias_table",
                                         "model.encoder.blocks.0.attn.q_bias", "model.encoder.blocks.0.gamma_1",
                                         "model.encoder.rel_pos_bias.relative_position_index"],
                       skipped_entries=["epoch", "config"], unwrap={"container": ["model"], "prefix": "encoder."})


def case_beit_finetuned(case_dir):
    """SimMIM's fine-tuning layout (simmim_finetune__vit_base: a relative position table per block, mean
    pooling with fc_norm and no final norm), here with an absolute pos_embed too and a 10-class head, as a
    flat state dict: the head reads fc_norm(mean of patches), so vitprobe must not use it."""
    config = SimMIMConfig(use_abs_pos_emb=True, use_rel_pos_bias=True, use_shared_rel_pos_bias=False,
                          use_mean_pooling=True, num_classes=10)
    model = reference_simmim.randomize_(SimMIMViT(config), seed=9, gamma_range=(1.5, 3.0))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, case_dir / "beit_finetuned.pth")
    x = make_input(32, seed=109)
    case = simmim_case(case_dir, description="BEiT / SimMIM fine-tuned layout: per-block relative position bias, "
                       "pos_embed, fc_norm + 10-class head (not used), no final norm",
                       checkpoint="beit_finetuned.pth", config=config, model=model, x=x,
                       ignored_keys=["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"],
                       not_ignored_keys=["blocks.0.attn.relative_position_bias_table", "pos_embed",
                                         "blocks.2.attn.relative_position_index"])
    return case


CASES = {"torchvision": case_torchvision, "mae": case_mae, "mae-safetensors": case_mae_safetensors,
         "ijepa": case_ijepa, "dinov2-registers": case_dinov2_registers, "resample": case_resample,
         "dino": case_dino, "mocov3": case_mocov3, "simmim": case_simmim, "beit-finetuned": case_beit_finetuned}


def write_cases(outdir, names=None):
    """Write the named cases (all by default) under outdir and merge them into outdir/cases.json."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    index_path = outdir / "cases.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"cases": {}}
    for name in names or CASES:
        case_dir = outdir / name
        case_dir.mkdir(exist_ok=True)
        index["cases"][name] = CASES[name](case_dir)
    index_path.write_text(json.dumps(index, indent=1))
    return index["cases"]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("cases", nargs="*", metavar="CASE", help="one of: " + ", ".join(CASES))
    options = parser.parse_args(argv)
    unknown = [name for name in options.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {list(CASES)}")
    torch.set_num_threads(1)
    for name in write_cases(options.outdir, options.cases or None):
        print(f"wrote {Path(options.outdir) / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
