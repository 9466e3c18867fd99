"""Golden test: encoders saved by `vitprobe pretrain` load in PyTorch and give vitprobe's forward.

For a short MAE and a short DINO run (and every bundled encoder in models/*.safetensors), read the file with
the pure-Python safetensors reader, build the independent ReferenceViT from the metadata (num_heads) and the
weight shapes, and compare its final tokens and attention on a shared input with `vitprobe forward`
(fp32: tokens <= 1e-4, attention <= 1e-5). Also checks the metadata the demo relies on (num_heads, img_size,
mean, std, resize, crop, interpolation, training) and that no key is left unused by the reference.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Report, describe_run, main_guard, max_abs_diff, run_vitprobe, work_dir  # noqa: E402
from reference_vit import ReferenceViT, VitConfig, read_safetensors  # noqa: E402

TOKENS_TOLERANCE = 1e-4
ATTENTION_TOLERANCE = 1e-5
REQUIRED_METADATA = ["num_heads", "img_size", "mean", "std", "resize", "crop", "interpolation", "training",
                     "objective", "epochs_done", "final_loss"]
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
TRAIN_TIMEOUT_S = 600


def read_metadata(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length)).get("__metadata__", {})


def reference_model(tensors, metadata):
    """ReferenceViT with the architecture read from the weights and the head count from the metadata."""
    patch = tensors["patch_embed.proj.weight"]
    depth = len({key.split(".")[1] for key in tensors if key.startswith("blocks.")})
    grid = int(round((tensors["pos_embed"].shape[1] - 1) ** 0.5))
    config = VitConfig(img_size=grid * patch.shape[2], patch_size=patch.shape[2], in_chans=patch.shape[1],
                       embed_dim=patch.shape[0], depth=depth, num_heads=int(metadata["num_heads"]),
                       mlp_ratio=tensors["blocks.0.mlp.fc1.weight"].shape[0] / patch.shape[0])
    model = ReferenceViT(config)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    return model.eval(), config, missing, unexpected


def check_encoder(report, name, path):
    metadata = read_metadata(path)
    for key in REQUIRED_METADATA:
        report.check(name, f"metadata {key}", key in metadata, metadata.get(key, "missing")[:40])
    if "training" in metadata:
        report.check(name, "training metadata is JSON", isinstance(json.loads(metadata["training"]), dict))
    tensors = read_safetensors(path)
    model, config, missing, unexpected = reference_model(tensors, metadata)
    report.check(name, "PyTorch load_state_dict: no missing keys", not missing, ",".join(missing))
    report.check(name, "PyTorch load_state_dict: no unexpected keys", not unexpected, ",".join(unexpected))

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, config.in_chans, config.img_size, config.img_size, generator=generator)
    out = work_dir(name, fresh=True)
    np.save(out / "input.npy", images.numpy())
    result = run_vitprobe(["forward", "--model", path, "--input", out / "input.npy", "--out", out / "fw",
                           "--attn", "--blocks", "last", "--threads", "2", "--json"])
    if result.returncode != 0:
        report.fail(name, "vitprobe forward failed\n" + describe_run(result))
        return
    with torch.no_grad():
        expected = model.forward_all(images)
    tokens = np.load(out / "fw" / "tokens.npy")
    last = config.depth - 1
    attention = np.load(out / "fw" / f"attn{last}.npy")
    report.check(name, "tokens max abs diff", max_abs_diff(tokens, expected["tokens"].numpy()) <= TOKENS_TOLERANCE,
                 f"{max_abs_diff(tokens, expected['tokens'].numpy()):.2e}", TOKENS_TOLERANCE)
    diff = max_abs_diff(attention, expected["attentions"][last].numpy())
    report.check(name, f"attn{last} max abs diff", diff <= ATTENTION_TOLERANCE, f"{diff:.2e}", ATTENTION_TOLERANCE)


def train(report, objective, extra):
    out = work_dir(f"train_{objective}", fresh=True)
    encoder = out / "encoder.safetensors"
    args = ["pretrain", objective, "--data", "fashion-mnist", "--limit", "128", "--batch-size", "32",
            "--epochs", "1", "--embed-dim", "64", "--depth", "2", "--num-heads", "4", "--threads", "2",
            "--quiet", "--out", encoder] + extra
    result = run_vitprobe(args, timeout=TRAIN_TIMEOUT_S)
    if result.returncode != 0:
        report.fail(objective, "vitprobe pretrain failed\n" + describe_run(result))
        return None
    return encoder


def run():
    report = Report("pretrained encoders: vitprobe forward vs PyTorch reference")
    encoders = []
    for objective, extra in [("mae", ["--decoder-dim", "32", "--decoder-depth", "1"]),
                             ("dino", ["--out-dim", "64", "--head-hidden-dim", "64", "--local-crops", "2"])]:
        encoder = train(report, objective, extra)
        if encoder:
            encoders.append((f"trained-{objective}", encoder))
    encoders += [(f"bundled-{path.stem}", path) for path in sorted(MODELS_DIR.glob("*.safetensors"))
                 if ".state." not in path.name]
    for name, path in encoders:
        check_encoder(report, name, path)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
