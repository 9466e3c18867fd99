"""golden: the pretraining references of bench/ (dino_reference.py, mae_reference.py) run, and agree with
`vitprobe pretrain` where they must, so the README's reference-vs-vitprobe table can be rerun at any time.

1. `vitprobe pretrain dino` and the reference DINO, same options (tiny: 256 images, 4 steps of 64, 2 local
   crops, 256 prototypes) take the same number of steps; their first-step losses agree within 8% and their
   teacher entropies within 0.5 nats, below ln 256 (same head shapes, temperatures, centering; the initial
   weights differ, as the two draw them from different generators: 4 seeds of the reference spread its
   first-step loss by about 3%).
2. MAE: the same step count, and both first-step losses between 1 and 4 (norm_pix_loss against an untrained
   decoder: 1 + the prediction's variance, 2.0-2.8 over 4 seeds of the reference, so no closer check is fair).
3. The reference evaluator reads vitprobe's encoder file strictly (timm keys, its mean/std metadata) and its
   k-NN of [cls] after the final norm (eval_knn.py's features) on 1,000 / 300 images lies within 6 points of
   `vitprobe probe --heads knn --final-norm on` on the same encoder. Not the same number: vitprobe draws its own
   1,000-image memory, keeps 10% of it to choose k (the reference: k = 20), so sampling alone moves the two by a
   few points (300 queries: one standard error is ~2.7 points).
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ["VITPROBE_BIN"]
WORK = Path(os.environ.get("VITPROBE_WORK", "/tmp/pretrain-references"))
PY = sys.executable
TINY = ["--limit", "256", "--epochs", "1", "--batch-size", "64", "--seed", "0", "--threads", "2"]
DINO = ["--local-crops", "2", "--out-dim", "256", "--head-hidden-dim", "256"]
failures = []


def check(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        failures.append(name)


def run(args):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(map(str, args))}\n{result.stderr[-3000:]}")
    return result.stdout


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    # 1. DINO.
    vp = json.loads(run([BIN, "pretrain", "dino", "--data", "fashion-mnist", *TINY, *DINO, "--quiet", "--json",
                         "--out", WORK / "dino.safetensors"]))
    run([PY, ROOT / "bench/dino_reference.py", "train", *TINY, *DINO, "--knn-train", "500", "--knn-test", "100",
         "--out", WORK / "dino_ref.json"])
    ref = json.load(open(WORK / "dino_ref.json"))
    first_vp, first_ref = vp["step_losses"][0], ref["step_losses"][0]
    check("dino steps", len(vp["step_losses"]) == len(ref["step_losses"]) == 4,
          f"vitprobe {len(vp['step_losses'])}, reference {len(ref['step_losses'])}")
    check("dino first-step losses agree", abs(first_vp - first_ref) <= 0.08 * first_ref,
          f"vitprobe {first_vp:.4f}, reference {first_ref:.4f}")
    entropies = vp["step_metrics"]["teacher_entropy"][0], ref["teacher_entropy"][0]
    check("dino teacher entropies agree", abs(entropies[0] - entropies[1]) <= 0.5 and max(entropies) < math.log(256),
          f"vitprobe {entropies[0]:.4f}, reference {entropies[1]:.4f}, ln 256 = {math.log(256):.4f}")
    # 2. MAE.
    vp = json.loads(run([BIN, "pretrain", "mae", "--data", "fashion-mnist", *TINY, "--quiet", "--json",
                         "--out", WORK / "mae.safetensors"]))
    run([PY, ROOT / "bench/mae_reference.py", "train", *TINY, "--knn-train", "500", "--knn-test", "100",
         "--out", WORK / "mae_ref.json"])
    ref = json.load(open(WORK / "mae_ref.json"))
    check("mae steps", len(vp["step_losses"]) == len(ref["step_losses"]) == 4,
          f"vitprobe {len(vp['step_losses'])}, reference {len(ref['step_losses'])}")
    check("mae first-step losses plausible", all(1 <= x[0] <= 4 for x in (vp["step_losses"], ref["step_losses"])),
          f"vitprobe {vp['step_losses'][0]:.4f}, reference {ref['step_losses'][0]:.4f}")
    # 3. The shared evaluator on the bundled MAE against vitprobe's own k-NN.
    model = ROOT / "models/fmnist_mae_vit_d192_p4.safetensors"
    run([PY, ROOT / "bench/dino_reference.py", "eval", model, "--knn-train", "1000", "--knn-test", "300",
         "--out", WORK / "eval.json"])
    reference_knn = json.load(open(WORK / "eval.json"))["knn"]["cls"]
    results = json.loads(run([BIN, "probe", "--model", model, "--data", "fashion-mnist", "--heads", "knn",
                              "--final-norm", "on", "--features", "cached", "--limit", "1000", "--val-limit", "300", "--json",
                              "--out", WORK / "knn"]))
    vitprobe_knn = [h["top1"] for h in results["heads"] if h["head"] == "knn"][0]
    check("k-NN: reference evaluator vs vitprobe probe", abs(reference_knn - vitprobe_knn) <= 6,
          f"reference {reference_knn:.2f} (k=20), vitprobe {vitprobe_knn:.2f}")
    if failures:
        sys.exit(f"{len(failures)} check(s) failed: {failures}")
    print("all checks passed")


if __name__ == "__main__":
    main()
