"""gpu: `vitprobe forward` on CUDA against CPU, ViT-Ti/16 on 4 ImageNet photos.

fp32 on both devices: every block's output (rel 5e-3 of the largest value, row cosine >= 0.9999), every block's
attention probabilities (rel 5e-3), the final tokens and the logits (rel 5e-3) and the same top-1 class.
bf16 on CUDA against fp32 on CPU: final tokens (row cosine >= 0.99), last block's attention (rel 0.1), the
same top-1 class for every photo.
"""
import json

import numpy as np

from gpu_common import PHOTO_PREPROCESS, compare_arrays, main, photos, run_both, run_on, vit_tiny, work_dir

DEPTH = 12


def forward_args(dtype):
    _, files = photos(4)
    args = ["forward", "--model", vit_tiny(), "--blocks", "all", "--attn", "--dtype", dtype, "--json"]
    for photo in files:
        args += ["--input", photo]
    return args + PHOTO_PREPROCESS


def top1(folder):
    return np.load(folder / "logits.npy").argmax(-1).tolist()


def check(report):
    work = work_dir(fresh=True)
    cpu, cuda = work / "fp32-cpu", work / "fp32-cuda"
    if None in run_both(report, "fp32", forward_args("fp32"), cpu, cuda):
        return
    for block in range(DEPTH):
        compare_arrays(report, f"block {block}", "output", np.load(cpu / f"block{block}.npy"),
                       np.load(cuda / f"block{block}.npy"), 5e-3, min_cosine=0.9999)
        compare_arrays(report, f"block {block}", "attention", np.load(cpu / f"attn{block}.npy"),
                       np.load(cuda / f"attn{block}.npy"), 5e-3)
    compare_arrays(report, "fp32", "final tokens", np.load(cpu / "tokens.npy"), np.load(cuda / "tokens.npy"), 5e-3,
                   min_cosine=0.9999)
    compare_arrays(report, "fp32", "logits", np.load(cpu / "logits.npy"), np.load(cuda / "logits.npy"), 5e-3)
    report.check("fp32", "top-1 classes equal", top1(cpu) == top1(cuda), f"{top1(cuda)} vs {top1(cpu)}")

    bf16 = work / "bf16-cuda"
    if run_on(report, "bf16", "cuda", forward_args("bf16") + ["--out", bf16]) is None:
        return
    report.check("bf16", "forward.json says bf16", json.loads((bf16 / "forward.json").read_text()).get("dtype") == "bf16")
    compare_arrays(report, "bf16 vs fp32", "final tokens", np.load(cpu / "tokens.npy"), np.load(bf16 / "tokens.npy"),
                   0.25, min_cosine=0.99)
    compare_arrays(report, "bf16 vs fp32", "last attention", np.load(cpu / f"attn{DEPTH - 1}.npy"),
                   np.load(bf16 / f"attn{DEPTH - 1}.npy"), 0.1)
    report.check("bf16 vs fp32", "top-1 classes equal", top1(cpu) == top1(bf16), f"{top1(bf16)} vs {top1(cpu)}")


if __name__ == "__main__":
    main("gpu: forward, cuda vs cpu", check)
