"""Throughput of the probing workloads against the plain forward, on the same device, model and batch (issue 15's
GPU figures: attn-stats images/s, and 52 probe heads trained from one pass at >= 80% of the forward's images/s).

Usage: throughput.py VITPROBE WORK_DIR DATA_SPEC [--device cuda] [--arch vit_base_patch16] [--dtype bf16]
                     [--batch 250] [--epochs 3] [--workers 12] [--img-size 224] [--out FILE]

1. A ViT with random weights in timm's key names (torch only, no timm or safetensors package: the GPU machine has
   neither for sure), written as bf16 safetensors into WORK_DIR: vitprobe reads it as any timm checkpoint.
2. forward: `vitprobe bench --no-attention` on that architecture, batch and dtype: images/s of the plain forward.
3. attn-stats: every block's attention statistics over DATA_SPEC's training images, `images_per_second` of the
   pass alone (decoding, forwards, statistics; not the model load), from stats.json; the model is given twice
   and the second pass counts, so that the first CUDA calls (module loading, cuBLAS set-up) are not timed.
4. probe: `vitprobe probe --features online` with cls, mean, abmilp and ep:32 x 13 learning rates = 52 heads, every
   batch through the encoder with the training transform; images/s of the fastest training epoch (results.json's
   timing.epoch_seconds: without loading and evaluation; the whole batches of the epoch, as the loader drops a
   last partial one). --select-on val, so that every training image trains.
Writes {"forward_img_s", "attn_stats_img_s", "probe_52_img_s", "probe_52_over_forward", ...} to --out (default
WORK_DIR/throughput.json) after each stage, so that a stage killed by gpu-check's time limit keeps the figures
before it, and prints it. The goal (>= 0.8) is printed, not enforced: this is a measurement.
"""
import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import safetensors_file  # noqa: E402

ARCHS = {"vit_tiny_patch16": (192, 12, 3), "vit_small_patch16": (384, 12, 6), "vit_base_patch16": (768, 12, 12),
         "vit_large_patch16": (1024, 24, 16)}
GRID_52 = "cls,mean,abmilp,ep:32"  # x the default 13 learning rates


def random_vit(arch, img_size, patch=16, seed=0):
    """timm's VisionTransformer state dict (no classifier), initialised as timm does: truncated normal 0.02."""
    dim, depth, _ = ARCHS[arch]
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape, std=0.02):
        return (torch.randn(*shape, generator=generator) * std).clamp_(-2 * std, 2 * std)

    tokens = (img_size // patch) ** 2 + 1
    state = {"cls_token": normal(1, 1, dim, std=1e-6), "pos_embed": normal(1, tokens, dim),
             "patch_embed.proj.weight": normal(dim, 3, patch, patch), "patch_embed.proj.bias": torch.zeros(dim),
             "norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim)}
    for b in range(depth):
        p = f"blocks.{b}."
        for norm in ("norm1", "norm2"):
            state[p + norm + ".weight"], state[p + norm + ".bias"] = torch.ones(dim), torch.zeros(dim)
        for name, (rows, cols) in {"attn.qkv": (3 * dim, dim), "attn.proj": (dim, dim), "mlp.fc1": (4 * dim, dim),
                                   "mlp.fc2": (dim, 4 * dim)}.items():
            state[p + name + ".weight"], state[p + name + ".bias"] = normal(rows, cols), torch.zeros(rows)
    return state


def write_bf16_safetensors(state, path):
    tensors = [(name, "BF16", tensor.shape, tensor.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
               for name, tensor in state.items()]
    safetensors_file.write(path, tensors, {"format": "pt", "source": "scripts/gpu/throughput.py random weights"})


def vitprobe(binary, args, timeout):
    command = [str(binary)] + [str(a) for a in args]
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        sys.exit(f"throughput: vitprobe failed ({result.returncode}): {result.stderr.strip()[-1500:]}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vitprobe", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("data", help="a --data spec with a train split, e.g. fashion-mnist:.gpu-check/data/fashion-mnist")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default="vit_base_patch16", choices=sorted(ARCHS))
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--limit", type=int, default=0, help="training images (0: all of DATA's train split)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds each vitprobe command may take")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or args.work / "throughput.json"
    summary = {"device": args.device, "arch": args.arch, "dtype": args.dtype, "batch": args.batch,
               "img_size": args.img_size, "goal_probe_over_forward": 0.8}

    def save():
        out.write_text(json.dumps(summary, indent=1))
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.work / f"{args.arch}_random.safetensors"
    write_bf16_safetensors(random_vit(args.arch, args.img_size), model)
    heads = ARCHS[args.arch][2]
    common = ["--device", args.device, "--dtype", args.dtype]
    images = ["--data", args.data, "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--workers", args.workers]

    bench = json.loads(vitprobe(args.vitprobe, ["bench", "--arch", args.arch, "--batch", args.batch, "--img-size",
                                                args.img_size, "--no-attention", "--no-cuda-graphs", "--json",
                                                "--iterations", 5] + common, args.timeout))
    forward = summary["forward_img_s"] = bench["images_per_s"]
    save()

    stats_dir = args.work / "attn-stats"
    vitprobe(args.vitprobe, ["attn-stats", "--model", model, model, "--num-heads", heads, "--split", "train",
                             "--limit", args.limit, "--batch-size", args.batch, "--out", stats_dir, "--quiet"]
             + images + common, args.timeout)
    stats = json.loads((stats_dir / "stats.json").read_text())["models"][-1]  # the warm pass
    summary["attn_stats_img_s"], summary["attn_stats_images"] = stats["images_per_second"], stats["num_images"]
    save()

    probe_dir = args.work / "probe-52"
    results = json.loads(vitprobe(args.vitprobe, [
        "probe", "--model", model, "--num-heads", heads, "--limit", args.limit, "--val-limit", 100, "--features",
        "online", "--epochs", args.epochs, "--warmup-epochs", 0, "--batch", args.batch, "--heads", GRID_52,
        "--select-on", "val", "--quiet", "--json", "--out", probe_dir] + images + common, args.timeout))
    pairs = sum(len(h.get("runs", [])) for h in results["heads"])
    train_images = results["config"]["train_items"] // args.batch * args.batch  # whole batches per epoch
    epoch_seconds = results["timing"]["epoch_seconds"]
    probe = train_images / min(epoch_seconds)
    summary.update({"probe_heads": pairs, "probe_train_images": train_images, "probe_epoch_seconds": epoch_seconds,
                    "probe_52_img_s": probe, "probe_52_over_forward": probe / forward})
    ok = all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in
             (forward, summary["attn_stats_img_s"], probe)) and pairs == 52
    save()
    print(json.dumps(summary, indent=1))
    print(f"throughput: forward {forward:.1f} img/s, attn-stats {summary['attn_stats_img_s']:.1f} img/s, "
          f"{pairs} probe heads {probe:.1f} img/s = {probe / forward:.2f}x the forward (goal >= 0.8)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
