"""Benchmark: the cost of one online probing epoch with 1 head vs 4 heads x 13 learning rates (52 heads).

Usage: probe_bench.py VITPROBE_BIN [--model CKPT] [--images N] [--img-size S] [--batch B] [--repeats R]
                      [--threads T] [--head-threads H] [--out FILE]

Each run is `vitprobe probe --features online --epochs 1` on N Fashion-MNIST training images with the real
ViT-Tiny/16 of ../shared (every batch goes through the encoder with the train transform, as in the paper's
protocol); the time compared is the training epoch recorded in results.json (timing.epoch_seconds[0]), which
excludes model loading and the final evaluation. The 1-head and 52-head runs alternate R times; the minimum
of each is reported (the least disturbed by other work on the machine). The issue's bound: 52 heads must cost
at most 1.5x one head.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
GRID_52 = "cls,mean,abmilp,ep:32"  # x DINOv2's 13 learning rates


def run(binary, args, heads, lrs, out):
    command = [str(binary), "probe", "--model", str(args.model), "--data", "fashion-mnist",
               "--limit", str(args.images), "--val-limit", "20", "--img-size", str(args.img_size),
               "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--features", "online", "--epochs", "1",
               "--warmup-epochs", "0", "--batch", str(args.batch), "--heads", heads, "--threads", str(args.threads),
               "--workers", "2", "--head-threads", str(args.head_threads), "--quiet", "--out", str(out), "--json"] + lrs
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"vitprobe failed ({result.returncode}): {' '.join(command)}\n{result.stderr}")
    results = json.loads(result.stdout)
    pairs = sum(len(h["runs"]) for h in results["heads"])
    head_seconds = sum(h["seconds"] for h in results["heads"])
    return {"epoch_seconds": results["timing"]["epoch_seconds"][0], "pairs": pairs, "head_seconds": head_seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", type=Path)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "vit_tiny_patch16_224.in1k.safetensors")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--head-threads", type=int, default=1, help="vitprobe --head-threads (0: as --threads)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    single, grid = [], []
    with tempfile.TemporaryDirectory(prefix="vitprobe_bench_") as scratch:
        for repeat in range(args.repeats):
            single.append(run(args.binary, args, "cls", ["--blr", "0.1"], Path(scratch) / f"one-{repeat}"))
            grid.append(run(args.binary, args, GRID_52, [], Path(scratch) / f"grid-{repeat}"))
    one = min(single, key=lambda r: r["epoch_seconds"])
    many = min(grid, key=lambda r: r["epoch_seconds"])
    ratio = many["epoch_seconds"] / one["epoch_seconds"]
    summary = {"images": args.images, "img_size": args.img_size, "batch": args.batch, "threads": args.threads,
               "head_threads": args.head_threads,
               "one_head": one, "grid": {**many, "heads": GRID_52, "learning_rates": 13}, "ratio": ratio,
               "bound": 1.5, "within_bound": ratio <= 1.5,
               "all_epoch_seconds": {"one_head": [r["epoch_seconds"] for r in single],
                                     "grid": [r["epoch_seconds"] for r in grid]}}
    print(f"online epoch, {args.images} images at {args.img_size} px, batch {args.batch}, {args.threads} threads, "
          f"head threads {args.head_threads or args.threads}")
    print(f"  1 head  ({one['pairs']} pair):   {one['epoch_seconds']:.2f} s  "
          f"({args.images / one['epoch_seconds']:.1f} img/s), heads {one['head_seconds']:.2f} s")
    print(f"  52 heads ({many['pairs']} pairs): {many['epoch_seconds']:.2f} s  "
          f"({args.images / many['epoch_seconds']:.1f} img/s), heads {many['head_seconds']:.2f} s")
    print(f"  ratio {ratio:.3f} (bound 1.5): {'ok' if ratio <= 1.5 else 'OVER'}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
