"""Helpers of the distributed tests: run vitprobe, read safetensors heads without the safetensors package."""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden"))
from harness import read_safetensors  # noqa: E402

BIN = os.environ.get("VITPROBE_BIN", "build/vitprobe")
WORK = os.environ.get("VITPROBE_WORK", "/tmp/vitprobe-dist-tests")
SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAE = os.path.join(SOURCE, "models", "fmnist_mae_vit_d192_p4.safetensors")


def run(args, env=None, check=True, timeout=900):
    """Runs vitprobe with `args`; returns the completed process (stdout and stderr captured)."""
    full_env = dict(os.environ)
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        full_env.pop(name, None)
    full_env.update(env or {})
    done = subprocess.run([BIN] + args, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        sys.exit(f"FAIL: vitprobe {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def heads_of(run_dir):
    """{head folder: {tensor: array}} of a probe run's saved heads."""
    heads = {}
    root = os.path.join(run_dir, "heads")
    for name in sorted(os.listdir(root)):
        heads[name] = read_safetensors(os.path.join(root, name, "head.safetensors"))
    return heads


def results_of(run_dir):
    with open(os.path.join(run_dir, "results.json")) as f:
        return json.load(f)


def weight_difference(reference_dir, other_dir):
    """Largest absolute difference over every tensor of every saved head of two runs."""
    a, b = heads_of(reference_dir), heads_of(other_dir)
    return max(float(np.max(np.abs(values - b[name][tensor]))) for name in a for tensor, values in a[name].items()
               if values.size)


def compare_runs(reference_dir, other_dir, tolerance, label):
    """Fails unless both runs chose the same lr per head with equal accuracy and weights within tolerance."""
    reference, other = results_of(reference_dir), results_of(other_dir)
    failures = []
    for a, b in zip(reference["heads"], other["heads"]):
        if a["head"] != b["head"]:
            failures.append(f"head order {a['head']} vs {b['head']}")
            continue
        for key in ("best_lr", "top1", "top5"):
            if key in a and a[key] != b.get(key):
                failures.append(f"{a['head']}: {key} {a[key]} vs {b.get(key)}")
    worst = 0.0
    reference_heads, other_heads = heads_of(reference_dir), heads_of(other_dir)
    if sorted(reference_heads) != sorted(other_heads):
        failures.append(f"saved heads {sorted(reference_heads)} vs {sorted(other_heads)}")
    for name, tensors in reference_heads.items():
        for tensor_name, values in tensors.items():
            difference = float(np.max(np.abs(values - other_heads[name][tensor_name]))) if values.size else 0.0
            worst = max(worst, difference)
            if difference > tolerance:
                failures.append(f"{name}/{tensor_name}: max abs diff {difference:.3g} > {tolerance}")
    print(f"{label}: max abs weight difference {worst:.3g} (limit {tolerance}), "
          f"{len(reference['heads'])} heads compared")
    if failures:
        sys.exit(f"FAIL {label}:\n  " + "\n  ".join(failures))
    return worst
