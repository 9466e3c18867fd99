#!/usr/bin/env python3
"""bench/compare_pytorch.py, the CPU anchor and the comparison scripts/gpu-check runs on the GPU machine, works end
to end on a tiny configuration, so that the one GPU run it gets does not fail on a script error.

One round of ViT-Ti/16 at batch 1, fp32, with --maps and --reference, against the vitprobe under test. Checks:
the script exits 0 with no errors recorded; its JSON names the machine (torch version, threads) and has one row
whose eager, maps, vitprobe, vitprobe maps and vitprobe-on-libtorch-kernels rates are all positive and finite,
with each ratio equal to the quotient of its two rates (so the table cannot pair the wrong columns); and with a
missing vitprobe binary it still measures the PyTorch side alone. Speed is not judged here (bench/, README).
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ["VITPROBE_BIN"]
WORK = Path(os.environ.get("VITPROBE_WORK", "/tmp/compare-pytorch"))
SCRIPT = ROOT / "bench" / "compare_pytorch.py"
TINY = ["--device", "cpu", "--arch", "vit_tiny_patch16", "--batch", "1", "--dtypes", "fp32", "--rounds", "1",
        "--iterations", "1", "--warmup", "0"]
failures = []


def check(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        failures.append(name)


def run(vitprobe, extra, out):
    result = subprocess.run([sys.executable, str(SCRIPT), "--vitprobe", vitprobe, *TINY, *extra, "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    print(result.stdout[-1500:])
    if result.returncode != 0:
        print(result.stderr[-2000:])
    return result.returncode


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / "compare.json"
    code = run(BIN, ["--maps", "--reference"], out)
    check("exit status", code == 0, f"rc {code}")
    if not out.is_file():
        check("json written", False, str(out))
        return 1
    summary = json.loads(out.read_text())
    check("no errors", summary.get("errors") == [], str(summary.get("errors")))
    check("machine", summary["machine"].get("torch", "").startswith("2.") and summary["machine"].get("threads", 0) >= 1,
          json.dumps(summary["machine"])[:200])
    rows = summary.get("rows", [])
    check("one row", len(rows) == 1 and rows[0].get("batch") == 1 and rows[0].get("dtype") == "fp32", str(rows)[:300])
    row = rows[0] if rows else {}
    rates = ("eager_img_s", "maps_img_s", "vitprobe_img_s", "vitprobe_maps_img_s", "vitprobe_reference_img_s")
    for key in rates:
        value = row.get(key)
        check(key, isinstance(value, float) and math.isfinite(value) and value > 0, str(value))
    for ratio, ours, theirs in (("ratio_eager", "vitprobe_img_s", "eager_img_s"),
                                ("ratio_maps", "vitprobe_maps_img_s", "maps_img_s"),
                                ("ratio_reference", "vitprobe_img_s", "vitprobe_reference_img_s")):
        if all(isinstance(row.get(k), float) for k in (ratio, ours, theirs)):
            expected = row[ours] / row[theirs]
            check(ratio, abs(row[ratio] - expected) <= 1e-9 * expected, f"{row[ratio]:.4f} vs {expected:.4f}")
        else:
            check(ratio, False, "missing")

    alone = WORK / "pytorch-only.json"
    code = run(str(WORK / "no-such-vitprobe"), [], alone)
    side = json.loads(alone.read_text()).get("rows", [{}])[0] if alone.is_file() else {}
    check("PyTorch side alone", code == 0 and side.get("eager_img_s", 0) > 0 and "vitprobe_img_s" not in side,
          f"rc {code}, {side}")
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
