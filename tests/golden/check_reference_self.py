"""Test the golden references themselves, without the vitprobe binary.

A golden test is only as good as its reference, so this checks that:
- reference_vit, given torchvision's weights mapped to timm names, reproduces the outputs taken from
  torchvision's VisionTransformer modules (an independent implementation) to 1e-5;
- every checkpoint make_references writes, unwrapped the way cases.json says, reproduces the expected
  outputs, and the decoy encoders (DINO student, MoCo momentum encoder, I-JEPA online encoder) do not;
- the sin-cos table has the documented ordering, resampling keeps prefix tokens and constants, registers
  carry no position, the safetensors writer/reader round-trips with an aligned header;
- the bf16 threshold used by check_forward (token cosine >= 0.999) is reachable by a bf16 PyTorch run.
"""
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch

from harness import Report, main_guard, max_abs_diff, min_token_cosine, work_dir
from make_references import write_cases
import reference_simmim
from reference_vit import (ReferenceViT, VitConfig, get_2d_sincos_pos_embed, read_safetensors,
                           resample_abs_pos_embed, state_dict_from_torchvision, write_safetensors)

TOLERANCE = 1e-5
BF16_MIN_COSINE = 0.999
DECOY_MIN_DIFF = 1e-2


def encoder_from_checkpoint(root, case, container=None):
    """The case's encoder state under timm names, found the way cases.json's "unwrap" describes."""
    path = root / case["checkpoint"]
    if case["format"] == "safetensors":
        return read_safetensors(path)
    # weights_only=False: the file was written by this test run (it holds an argparse.Namespace, as the official
    # MAE/DINO checkpoints do), and torch >= 2.6 would refuse that global by default.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    unwrap = case["unwrap"]
    if unwrap.get("torchvision"):
        return state_dict_from_torchvision(checkpoint)
    for key in container or unwrap["container"]:
        checkpoint = checkpoint[key]
    prefix = unwrap["prefix"]
    return {k[len(prefix):]: v for k, v in checkpoint.items() if k.startswith(prefix)}


def model_for(case, state):
    """A ReferenceViT of the case's config, loaded strictly from state (minus keys the encoder ignores); for
    SimMIM / BEiT cases the official-layout reference_simmim model, loaded strictly from the whole state."""
    if case.get("family") == "simmim":
        config = reference_simmim.SimMIMConfig(**case["simmim_config"])
        state = {k: v for k, v in state.items() if k != "mask_token"}
        return reference_simmim.model_from_state(config, state)
    config = VitConfig(**case["config"])
    if case["args"][:1] == ["--img-size"]:
        config.img_size = int(case["args"][1])
        state = dict(state)
        n_prefix = int(config.class_token)
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], (config.grid_size,) * 2, n_prefix)
    model = ReferenceViT(config).eval()
    wanted = set(model.state_dict())
    model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=True)
    return model


def run_model(model, root, case, dtype=torch.float32):
    x = torch.from_numpy(np.load(root / case["input"]))
    with torch.no_grad():
        outputs = model.to(dtype).forward_all(x.to(dtype))
    return {k: ([t.float().numpy() for t in v] if isinstance(v, list) else v.float().numpy())
            for k, v in outputs.items() if k != "magnitudes"}


def compare_outputs(report, name, outputs, root, case):
    expected = case["expected"]
    pairs = [("tokens", outputs["tokens"], expected["tokens"])]
    pairs += [(f"block{i}", t, p) for i, (t, p) in enumerate(zip(outputs["blocks"], expected["blocks"]))]
    pairs += [(f"attn{i}", t, p) for i, (t, p) in enumerate(zip(outputs["attentions"], expected["attn"]))]
    if expected["logits"]:
        pairs.append(("logits", outputs["logits"], expected["logits"]))
    worst = max(max_abs_diff(actual, np.load(root / path)) for _, actual, path in pairs)
    source = "torchvision's own modules" if case["source"] == "torchvision" else "expected"
    report.check(name, f"reference vs {source} ({len(pairs)} arrays)", worst <= TOLERANCE,
                 f"{worst:.2e}", TOLERANCE)


def check_cases(report, root, cases):
    decoys = {"dino": ["student"], "mocov3": ["state_dict"], "ijepa": ["encoder"]}
    for name, case in cases.items():
        model = model_for(case, encoder_from_checkpoint(root, case))
        outputs = run_model(model, root, case)
        compare_outputs(report, name, outputs, root, case)
        bf16 = run_model(model_for(case, encoder_from_checkpoint(root, case)), root, case, torch.bfloat16)
        cosine = min_token_cosine(bf16["tokens"], np.load(root / case["expected"]["tokens"]))
        report.check(name, "bf16 reference min token cosine", cosine >= BF16_MIN_COSINE, f"{cosine:.6f}",
                     f">= {BF16_MIN_COSINE}")
        if name in decoys:
            decoy_case = dict(case, unwrap=dict(case["unwrap"], prefix=_decoy_prefix(name)))
            decoy = model_for(case, encoder_from_checkpoint(root, decoy_case, decoys[name]))
            diff = max_abs_diff(run_model(decoy, root, case)["tokens"], outputs["tokens"])
            report.check(name, "decoy encoder gives other tokens", diff > DECOY_MIN_DIFF, f"{diff:.2e}",
                         f"> {DECOY_MIN_DIFF}")
        if case.get("family") == "simmim":
            check_timm_beit(report, name, root, case)
    resample = cases.get("resample")
    if resample:
        diff = max_abs_diff(np.load(root / resample["diagnostics"]["tokens_antialias"]),
                            np.load(root / resample["expected"]["tokens"]))
        report.check("resample", "antialias=True differs from expected", diff > 1e-3, f"{diff:.2e}", "> 1e-3")


def check_timm_beit(report, name, root, case):
    """timm's Beit, an independent implementation of the same layout, gives the expected tokens from the
    checkpoint's weights; and the official relative position index equals timm's."""
    from timm.models.beit import gen_relative_position_index

    config = reference_simmim.SimMIMConfig(**case["simmim_config"])
    state = {k: v for k, v in encoder_from_checkpoint(root, case).items() if k != "mask_token"}
    model = reference_simmim.timm_beit(config, state)
    tokens = reference_simmim.timm_beit_tokens(model, torch.from_numpy(np.load(root / case["input"]))).numpy()
    diff = max_abs_diff(tokens, np.load(root / case["expected"]["tokens"]))
    report.check(name, "timm Beit tokens vs expected", diff <= TOLERANCE, f"{diff:.2e}", TOLERANCE)
    grid = config.grid_size
    same = torch.equal(reference_simmim.relative_position_index(grid), gen_relative_position_index((grid, grid)))
    report.check(name, "relative position index equals timm's", same)


def _decoy_prefix(name):
    return {"dino": "module.backbone.", "mocov3": "module.momentum_encoder.", "ijepa": "module."}[name]


def check_sincos(report):
    """Token row * g + col holds [sin(col w), cos(col w), sin(row w), cos(row w)] (MAE ordering)."""
    dim, grid = 16, 5
    table = get_2d_sincos_pos_embed(dim, grid, cls_token=True)
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim // 4))
    worst = 0.0
    for row in range(grid):
        for col in range(grid):
            expected = np.concatenate([np.sin(col * omega), np.cos(col * omega),
                                       np.sin(row * omega), np.cos(row * omega)])
            worst = max(worst, float(np.abs(table[1 + row * grid + col] - expected).max()))
    ok = worst < 1e-12 and not table[0].any() and table.shape == (1 + grid * grid, dim)
    report.check("sincos", "2-D table ordering (col half first)", ok, f"{worst:.1e}", "1e-12")


def check_resample(report):
    generator = torch.Generator().manual_seed(0)
    pos_embed = torch.randn(1, 1 + 16, 8, generator=generator)
    same = resample_abs_pos_embed(pos_embed, (4, 4))
    report.check("resample", "same grid is identity", torch.equal(same, pos_embed))
    resized = resample_abs_pos_embed(pos_embed, (6, 6))
    report.check("resample", "prefix kept, shape (1,37,8)",
                 torch.equal(resized[:, :1], pos_embed[:, :1]) and resized.shape == (1, 37, 8))
    constant = resample_abs_pos_embed(torch.full((1, 16, 8), 0.75), (6, 6), num_prefix_tokens=0)
    diff = float((constant - 0.75).abs().max())
    report.check("resample", "constant grid stays constant", diff < 1e-6, f"{diff:.1e}", "1e-6")


def check_registers(report):
    config = VitConfig(num_registers=3)
    model = ReferenceViT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_()
        tokens = model.embed(torch.randn(2, 3, 32, 32))
    ok = tokens.shape == (2, 1 + 3 + 16, 64) and torch.equal(tokens[:, 1:4], model.register_tokens.expand(2, -1, -1))
    report.check("registers", "[cls], registers (no position), patches", ok)


def check_safetensors(report):
    tensors = {"a": torch.randn(3, 5), "b.bias": torch.arange(7, dtype=torch.float32),
               "c": torch.randn(2, 2).bfloat16(), "empty": torch.zeros(0)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.safetensors"
        write_safetensors(path, tensors, metadata={"format": "pt"})
        data = path.read_bytes()
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + header_len])
        back = read_safetensors(path)
    ok = (8 + header_len) % 8 == 0 and header["__metadata__"] == {"format": "pt"}
    ok = ok and list(back) == list(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    report.check("safetensors", "round trip, 8-byte aligned header", ok)


def run():
    torch.set_num_threads(2)
    report = Report("reference self-check")
    root = work_dir("refs", fresh=True)
    cases = write_cases(root)
    check_cases(report, root, cases)
    check_sincos(report)
    check_resample(report)
    check_registers(report)
    check_safetensors(report)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
