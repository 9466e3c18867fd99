#!/usr/bin/env python3
"""scripts/gpu/throughput.py, the step of scripts/gpu-check that measures attn-stats and 52-head probing against the
plain forward, works end to end on a CPU (ViT-Ti/16 at 32 px, 64 images, one epoch), so that the one GPU run it
gets does not fail on a script error. Checks: exit 0; the random checkpoint it writes loads in vitprobe with timm's
key names and the expected shapes (`vitprobe inspect`); 52 heads trained on all 64 images; every rate positive
and finite; the ratio equals probe images/s over forward images/s. Speed is not judged here.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ["VITPROBE_BIN"]
WORK = Path(os.environ.get("VITPROBE_WORK", "/tmp/gpu-throughput"))
failures = []


def check(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        failures.append(name)


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / "throughput.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(ROOT / "scripts" / "gpu" / "throughput.py"), BIN, str(WORK), "fashion-mnist",
               "--device", "cpu", "--arch", "vit_tiny_patch16", "--dtype", "fp32", "--batch", "32", "--epochs", "1",
               "--workers", "2", "--img-size", "32", "--limit", "64", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    print(result.stdout[-2000:], result.stderr[-2000:])
    check("exit status", result.returncode == 0, f"rc {result.returncode}")
    model = WORK / "vit_tiny_patch16_random.safetensors"
    inspect = subprocess.run([BIN, "inspect", "--model", str(model), "--json"], capture_output=True, text=True)
    check("checkpoint loads", inspect.returncode == 0, inspect.stderr.strip()[-300:])
    if inspect.returncode == 0:
        info = json.loads(inspect.stdout)
        arch = info["arch"]
        check("timm layout", info["source"] == "timm" and info["ignored_keys"] == [] and arch["depth"] == 12
              and arch["embed_dim"] == 192 and arch["num_heads"] == 3 and arch["num_tokens"] == 5,
              f"{info['source']}, ignored {info['ignored_keys']}, {arch['depth']} x {arch['embed_dim']}, "
              f"{arch['num_heads']} heads, {arch['num_tokens']} tokens")
    if not out.is_file():
        check("json written", False, str(out))
    else:
        summary = json.loads(out.read_text())
        check("52 heads", summary.get("probe_heads") == 52, str(summary.get("probe_heads")))
        check("all images trained", summary.get("probe_train_images") == 64 and summary.get("attn_stats_images") == 64,
              f"{summary.get('probe_train_images')} / {summary.get('attn_stats_images')}")
        rates = [summary.get(k) for k in ("forward_img_s", "attn_stats_img_s", "probe_52_img_s")]
        check("rates", all(isinstance(r, float) and math.isfinite(r) and r > 0 for r in rates), str(rates))
        if all(isinstance(r, float) and r > 0 for r in rates):
            expected = rates[2] / rates[0]
            check("ratio", abs(summary["probe_52_over_forward"] - expected) <= 1e-9 * expected,
                  f"{summary['probe_52_over_forward']:.4f} vs {expected:.4f}")
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
