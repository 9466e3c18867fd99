"""PyTorch reference of the `dino` oracle aggregation, then the C++ side checked against it.

Usage: oracle_reference.py UNIT_TEST_BINARY OUTDIR

The official code (gmum/beyond_cls models_vit.py:337-350, VisionTransformer.forward_features with
return_features == "dino"), restated:
    fm = x_n_cl_d[:, 1:]                                   the probed block's patch tokens, no final norm
    _, _, _, (d_attn, _) = self.oracle.forward_features(orig_x, return_final_attn=True)
    d_attn = d_attn[:, :, 0, 1:].unsqueeze(3)              the oracle's LAST block: [cls] row -> patches
    ret = (fm.unsqueeze(1) * d_attn).mean(dim=[1, 2])      mean over heads and patches, not renormalised
The oracle is a second encoder run on the same normalised images. Here both are small random ViTs
(reference_vit.py), written as checkpoints vitprobe loads; where an encoder has registers they are prefix
tokens like [cls]: left out of fm, and out of the oracle's keys (the [cls] row to the patch tokens only).

Cases (OUTDIR/<case>/: encoder and oracle checkpoints, input.npy, dino.npy, oracle_weights.npy):
  cls_block1      encoder: timm safetensors, 32 px, patch 8, width 64, 4 heads, depth 3, probed block 1;
                  oracle: DINOv2 .pth, width 128, 2 heads (its width's convention), depth 2, 2 registers, LayerScale
  registers_last  encoder: DINOv2 .pth with 4 registers, probed block -1 (the last);
                  oracle: timm safetensors, width 128, 4 heads (from its metadata), depth 3
Then runs the unit-test binary's OracleReference.* tests with VITPROBE_ORACLE_REFERENCES=OUTDIR: the dino
feature within 1e-4 (the block-output tolerance of golden.forward) and the oracle's weights within 1e-5
(its attention tolerance), float32.
"""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_references import TINY, encoder_state, reference_model  # noqa: E402
from reference_vit import write_safetensors  # noqa: E402

BATCH = 3


def block_tokens(model, x, block):
    """forward_features up to return_block (models_vit.py: `if b_id == return_block: break`), no final norm."""
    tokens = model.embed(x)
    for b_id, blk in enumerate(model.blocks):
        tokens, attention = blk(tokens)
        if b_id == block:
            break
    return tokens, attention


def official_dino(encoder, oracle, x, block):
    tokens, _ = block_tokens(encoder, x, block)
    fm = tokens[:, encoder.config.num_prefix_tokens:]
    with torch.no_grad():
        _, d_attn = block_tokens(oracle, x, len(oracle.blocks) - 1)  # return_final_attn: the last block's
    d_attn = d_attn[:, :, 0, oracle.config.num_prefix_tokens:].unsqueeze(3)
    fm = fm.unsqueeze(1)
    ret = (fm * d_attn).mean(dim=[1, 2])
    return ret, d_attn.squeeze(3).mean(1)


def save_dinov2(path, model):
    """DINOv2's plain state dict (tokens, mask_token, then the rest), as make_references.case_dinov2_registers."""
    encoder = encoder_state(model)
    state = {"cls_token": encoder.pop("cls_token"), "pos_embed": encoder.pop("pos_embed")}
    if "register_tokens" in encoder:
        state["register_tokens"] = encoder.pop("register_tokens")
    state["mask_token"] = torch.zeros(1, model.config.embed_dim)
    state.update(encoder)
    torch.save(state, path)


def write_case(outdir, name, encoder_config, encoder_format, oracle_config, oracle_format, block, seed):
    folder = outdir / name
    folder.mkdir(parents=True, exist_ok=True)
    encoder = reference_model(encoder_config, seed)
    oracle = reference_model(oracle_config, seed + 1)
    files = {}
    for role, model, fmt in (("encoder", encoder, encoder_format), ("oracle", oracle, oracle_format)):
        if fmt == "timm":
            files[role] = f"{role}.safetensors"
            metadata = {"num_heads": str(model.config.num_heads)} if role == "oracle" else None
            write_safetensors(folder / files[role], encoder_state(model), metadata=metadata)
        else:
            files[role] = f"{role}.pth"
            save_dinov2(folder / files[role], model)
    x = torch.randn(BATCH, 3, encoder_config.img_size, encoder_config.img_size,
                    generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        dino, weights = official_dino(encoder, oracle, x, block % encoder_config.depth)
        # The inputs must make the answer non-trivial: weights far from uniform, and the near misses (the
        # oracle's first block, its registers kept in the keys, renormalised weights, the encoder's final norm)
        # far outside the C++ side's tolerances.
        spread = (weights.std(1) / weights.mean(1)).min().item()
        first_block = block_tokens(oracle, x, 0)[1][:, :, 0, oracle_config.num_prefix_tokens:].mean(1)
        misses = {"oracle block 0": (first_block - weights).abs().max().item(),
                  "renormalised": (weights / weights.sum(1, keepdim=True) - weights).abs().max().item()}
        if oracle_config.num_registers:
            shifted = block_tokens(oracle, x, len(oracle.blocks) - 1)[1][:, :, 0, 1:1 + weights.shape[1]].mean(1)
            misses["registers as patches"] = (shifted - weights).abs().max().item()
        tokens = block_tokens(encoder, x, block % encoder_config.depth)[0]
        normed = encoder.norm(tokens)[:, encoder_config.num_prefix_tokens:]
        misses["final norm"] = ((normed * weights.unsqueeze(2)).mean(1) - dino).abs().max().item()
    print(f"{name}: weight spread (std / mean) {spread:.2f}; near misses " +
          ", ".join(f"{k} {v:.1e}" for k, v in misses.items()))
    if spread < 0.1 or min(misses["final norm"], 1.0) < 1e-2 or min(
            v for k, v in misses.items() if k != "final norm") < 1e-3:
        raise SystemExit(f"{name}: the reference inputs are too uniform to test anything")
    np.save(folder / "input.npy", x.numpy().astype(np.float32))
    np.save(folder / "dino.npy", dino.numpy().astype(np.float32))
    np.save(folder / "oracle_weights.npy", weights.numpy().astype(np.float32))
    return {"encoder": f"{name}/{files['encoder']}", "oracle": f"{name}/{files['oracle']}",
            "input": f"{name}/input.npy", "dino": f"{name}/dino.npy", "oracle_weights": f"{name}/oracle_weights.npy",
            "block": block, "encoder_num_heads": encoder_config.num_heads, "oracle_num_heads": oracle_config.num_heads,
            "oracle_prefix_tokens": oracle_config.num_prefix_tokens}


def main(argv):
    if len(argv) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    binary, outdir = Path(argv[1]), Path(argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    oracle = replace(TINY, embed_dim=128, num_heads=2, depth=2, num_registers=2, layer_scale=True)
    cases = {
        "cls_block1": write_case(outdir, "cls_block1", TINY, "timm", oracle, "dinov2", 1, 300),
        "registers_last": write_case(outdir, "registers_last", replace(TINY, num_registers=4), "dinov2",
                                     replace(TINY, embed_dim=128, num_heads=4), "timm", -1, 310),
    }
    (outdir / "cases.json").write_text(json.dumps(cases, indent=2))
    env = dict(os.environ, VITPROBE_ORACLE_REFERENCES=str(outdir))
    result = subprocess.run([str(binary), "--gtest_filter=OracleReference.*"], env=env)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
