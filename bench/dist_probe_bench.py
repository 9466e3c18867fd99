"""Benchmark: cached-feature probing with 1 and 2 processes (issue 8), and the communication per step.

Usage: dist_probe_bench.py VITPROBE_BIN [--images N] [--batch GLOBAL] [--epochs E] [--repeats R] [--out FILE]

The features of N Fashion-MNIST training images (bundled MAE encoder, 28 px) are extracted once into a
temporary cache (untimed). Then `vitprobe probe --features cached` trains 4 heads (cls, mean, abmilp, ep:32) x
DINOv2's 13 learning rates = 52 (head, lr) pairs for E epochs with the same global batch, as
  - 1 process, all cores as threads, and
  - `vitprobe launch -n 2`: 2 processes (each gets cores / 2 threads), every global batch split in two.
The time is the training epochs recorded in results.json (timing.train_seconds, no loading or evaluation);
runs alternate R times and the minimum of each is reported. Communication is what each rank all-reduced
(results.json "communication": bytes and collective calls) divided by the optimizer steps.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "fmnist_mae_vit_d192_p4.safetensors"


def probe_args(args, cache, out, ranks):
    return ["probe", "--model", str(MODEL), "--data", "fashion-mnist", "--limit", str(args.images),
            "--val-limit", "200", "--features", "cached", "--heads", "cls,mean,abmilp,ep:32",
            "--epochs", str(args.epochs), "--warmup-epochs", "1", "--batch", str(args.batch // ranks),
            "--cache-dir", str(cache), "--quiet", "--json", "--out", str(out)]


def run(binary, command):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    result = subprocess.run([str(binary)] + command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"vitprobe failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=256, help="global batch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        run(args.binary, ["extract", "--model", str(MODEL), "--data", "fashion-mnist", "--limit", str(args.images),
                          "--val-limit", "200", "--heads", "cls,mean,abmilp,ep:32", "--cache-dir", str(cache), "--quiet"])
        figures = {}
        for repeat in range(args.repeats):
            for ranks in (1, 2):
                out = Path(tmp) / f"run-{ranks}-{repeat}"
                command = probe_args(args, cache, out, ranks)
                if ranks > 1:
                    command = ["launch", "-n", str(ranks), "--"] + command
                run(args.binary, command)
                results = json.loads((out / "results.json").read_text())
                seconds = results["timing"]["train_seconds"]
                steps = args.epochs * (args.images // args.batch)
                entry = figures.setdefault(ranks, {"train_seconds": [], "steps": steps})
                entry["train_seconds"].append(seconds)
                communication = results.get("communication")
                if communication:
                    entry["bytes_per_step"] = communication["bytes_reduced_per_rank"] / steps
                    entry["collectives_per_step"] = communication["collectives"] / steps
        print(f"cached probing, {args.images} images x {args.epochs} epochs, global batch {args.batch}, "
              f"52 (head, lr) pairs, {os.cpu_count()} cores; minimum of {args.repeats} runs")
        base = min(figures[1]["train_seconds"])
        for ranks, entry in figures.items():
            best = min(entry["train_seconds"])
            entry["best_seconds"] = best
            entry["images_per_s"] = args.images * args.epochs / best
            entry["speedup"] = base / best
            line = (f"  {ranks} process(es): {best:.2f} s, {entry['images_per_s']:.0f} images/s, "
                    f"speed-up {entry['speedup']:.2f}x")
            if "bytes_per_step" in entry:
                line += (f", all-reduced {entry['bytes_per_step'] / 2**20:.2f} MiB and "
                         f"{entry['collectives_per_step']:.0f} collectives per step and rank")
            print(line)
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
