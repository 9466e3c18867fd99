"""Distributed attention statistics equal one process's within 1e-6 (issue 8): 2 ranks (vitprobe launch) and
3 ranks started by hand with torchrun's variables each run a shard; their merged statistics are compared with a
single-process run on every statistic, block and head (mean and std)."""
import json
import os
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dist_common import BIN, MAE, WORK, run  # noqa: E402

TOLERANCE = 1e-6
work = os.path.join(WORK, "stats")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)


def args(out):
    return ["attn-stats", "--model", MAE, "--data", "fashion-mnist", "--split", "val", "--limit", "203",
            "--batch-size", "32", "--dtype", "fp32", "--quiet", "--threads", "1", "--out", os.path.join(work, out)]


def load(out):
    with open(os.path.join(work, out, "stats.json")) as f:
        return json.load(f)


def flatten(x):
    return [z for y in x for z in flatten(y)] if isinstance(x, list) else [x]


def compare(reference, other, label):
    worst, failures = 0.0, []
    a, b = reference["models"][0], other["models"][0]
    if a["num_images"] != b["num_images"]:
        failures.append(f"num_images {a['num_images']} vs {b['num_images']}")
    for name, statistic in a["statistics"].items():
        for key, values in statistic.items():
            if not isinstance(values, list):
                continue
            xs, ys = flatten(values), flatten(b["statistics"][name][key])
            if len(xs) != len(ys):
                failures.append(f"{name}.{key}: {len(xs)} vs {len(ys)} values")
                continue
            for x, y in zip(xs, ys):
                if isinstance(x, (int, float)):
                    worst = max(worst, abs(x - y))
                    if abs(x - y) > TOLERANCE:
                        failures.append(f"{name}.{key}: {x} vs {y}")
                        break
    print(f"{label}: {a['num_images']} images, max abs difference {worst:.3g} (limit {TOLERANCE})")
    if failures:
        sys.exit(f"FAIL {label}:\n  " + "\n  ".join(failures[:20]))


run(args("single"))
reference = load("single")
run(["launch", "-n", "2", "--"] + args("two"))
compare(reference, load("two"), "2 ranks (launch) vs 1")

# 3 ranks started by hand, as on several hosts: RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env = dict(os.environ, WORLD_SIZE="3", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_WORLD_SIZE="3")
processes = [subprocess.Popen([BIN] + args("three"), env=dict(env, RANK=str(rank)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for rank in range(3)]
for rank, process in enumerate(processes):
    _, err = process.communicate(timeout=600)
    if process.returncode != 0:
        sys.exit(f"FAIL: rank {rank} exited {process.returncode}: {err[-2000:]}")
compare(reference, load("three"), "3 ranks (torchrun variables) vs 1")
print("PASS")
