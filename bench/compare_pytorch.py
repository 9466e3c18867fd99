#!/usr/bin/env python3
"""vitprobe's encoder against PyTorch eager on the same machine, in alternating rounds.

PyTorch side (Debian's python3-torch 1.13): torchvision's VisionTransformer (vit_b_16 / a ViT-S/16 built
with torchvision's class) in eval mode under no_grad, fp32 and bf16 autocast, all cores. vitprobe side:
`vitprobe bench --json` with the same architecture, batch and dtype. Each round runs every configuration
once; the table reports medians over rounds and the ratio vitprobe / PyTorch.

    /usr/bin/python3 bench/compare_pytorch.py --vitprobe build/vitprobe [--arch vit_base_patch16]
        [--batch 16] [--rounds 3] [--iterations 5] [--dtypes bf16,fp32] [--blas system|reference] [--json OUT.json]

PyTorch's fp32 products go to the system BLAS (libblas.so.3). `--blas system` keeps what the machine has:
OpenBLAS once scripts/setup has run. `--blas reference` points PyTorch (only) at Debian's netlib reference BLAS,
which is what libtorch gets on a Debian 12 machine without an OpenBLAS package; it is ~40x slower, so use
--rounds 1 --iterations 1 there. The table prints the sgemm rate PyTorch gets either way.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REFERENCE_BLAS_DIR = "/usr/lib/x86_64-linux-gnu/blas"  # Debian's libblas3 (netlib), behind the alternatives
REFERENCE_BLAS_MARK = "VITPROBE_COMPARE_SAVED_LD_LIBRARY_PATH"


def use_reference_blas():
    """Re-runs this script with libblas.so.3 resolved to the netlib reference BLAS (for PyTorch only)."""
    if REFERENCE_BLAS_MARK in os.environ:
        return
    if not os.path.exists(os.path.join(REFERENCE_BLAS_DIR, "libblas.so.3")):
        sys.exit(f"--blas reference: {REFERENCE_BLAS_DIR}/libblas.so.3 not found (Debian package libblas3)")
    env = dict(os.environ)
    env[REFERENCE_BLAS_MARK] = env.get("LD_LIBRARY_PATH", "")  # restored for the vitprobe runs
    env["LD_LIBRARY_PATH"] = REFERENCE_BLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


# Before torch is imported: the BLAS is chosen when libtorch is loaded.
if __name__ == "__main__" and ("--blas=reference" in sys.argv or
                               any(a == "--blas" and b == "reference" for a, b in zip(sys.argv, sys.argv[1:]))):
    use_reference_blas()

import torch  # noqa: E402 (after the BLAS choice)
import torchvision  # noqa: E402

ARCHS = {  # name -> torchvision VisionTransformer arguments
    "vit_small_patch16": dict(patch_size=16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536),
    "vit_base_patch16": dict(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072),
}


def pytorch_images_per_s(model, batch, dtype, iterations):
    images = torch.randn(batch, 3, 224, 224)
    # PyTorch 1.13's fused inference path of nn.MultiheadAttention checks only CUDA autocast and fails under
    # CPU bf16 autocast ("expected scalar type BFloat16 but found Float"). Its attention modules are put in
    # training mode for bf16: torchvision's ViT has dropout 0, so the math is the same, on the unfused path.
    for module in model.modules():
        if isinstance(module, torch.nn.MultiheadAttention):
            module.train(dtype == "bf16")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=(dtype == "bf16"))
    with torch.no_grad(), autocast:
        model(images)  # warm-up
        seconds = []
        for _ in range(iterations):
            start = time.perf_counter()
            model(images)
            seconds.append(time.perf_counter() - start)
    return batch / statistics.median(seconds), batch / min(seconds)


def vitprobe_images_per_s(binary, arch, batch, dtype, iterations):
    command = [binary, "bench", "--arch", arch, "--batch", str(batch), "--dtype", dtype,
               "--iterations", str(iterations), "--warmup", "1", "--no-attention", "--json"]
    # vitprobe runs with the machine's own libraries even when PyTorch was pointed at another BLAS.
    env = dict(os.environ)
    if REFERENCE_BLAS_MARK in env:
        saved = env.pop(REFERENCE_BLAS_MARK)
        if saved:
            env["LD_LIBRARY_PATH"] = saved
        else:
            env.pop("LD_LIBRARY_PATH", None)
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout)


def pytorch_sgemm_gflops(n=1024, repeats=3):
    """Best of `repeats` timed n^3 products after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vitprobe", default="build/vitprobe")
    parser.add_argument("--arch", default="vit_base_patch16", choices=sorted(ARCHS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--blas", default="system", choices=["system", "reference"],
                        help="BLAS for PyTorch's fp32 products: the machine's (system) or netlib's (reference)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.blas == "reference":
        use_reference_blas()  # no-op here: done before torch was imported

    torch.set_num_threads(os.cpu_count())
    sgemm = pytorch_sgemm_gflops()
    print(f"PyTorch fp32 BLAS ({args.blas}): {sgemm:.1f} GFLOP/s on a 1024^3 product", flush=True)
    model = torchvision.models.VisionTransformer(image_size=224, num_classes=1000, **ARCHS[args.arch]).eval()
    dtypes = args.dtypes.split(",")
    # Medians of each round's median forward; "best" rates come from the fastest single forward of any round,
    # which a shared machine's slow spells (seconds long, here) do not reach.
    figures = {dtype: {"pytorch": [], "vitprobe": [], "gemm_gflops": [], "vitprobe_gflops": [], "pytorch_best": [],
                       "vitprobe_best": []} for dtype in dtypes}
    for round_index in range(args.rounds):
        for dtype in dtypes:
            median_rate, best_rate = pytorch_images_per_s(model, args.batch, dtype, args.iterations)
            figures[dtype]["pytorch"].append(median_rate)
            figures[dtype]["pytorch_best"].append(best_rate)
            ours = vitprobe_images_per_s(args.vitprobe, args.arch, args.batch, dtype, args.iterations)
            figures[dtype]["vitprobe"].append(ours["images_per_s"])
            figures[dtype]["vitprobe_best"].append(args.batch / (ours["forward_ms_min"] / 1e3))
            figures[dtype]["gemm_gflops"].append(ours["gemm_gflops"])
            figures[dtype]["vitprobe_gflops"].append(ours["gflops"])
            print(f"round {round_index + 1}/{args.rounds} {dtype}: PyTorch {figures[dtype]['pytorch'][-1]:.1f} img/s, "
                  f"vitprobe {ours['images_per_s']:.1f} img/s", flush=True)

    print(f"\n{args.arch}, batch {args.batch}, 224 px, {os.cpu_count()} threads, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, medians of {args.rounds} rounds, PyTorch BLAS: {args.blas} ({sgemm:.1f} GFLOP/s sgemm)")
    print(f"{'dtype':6} {'PyTorch img/s':>14} {'vitprobe img/s':>15} {'ratio':>6} {'GFLOP/s':>8} {'GEMM ceiling':>13} "
          f"{'of ceiling':>10} {'best: PyTorch':>14} {'vitprobe':>9} {'ratio':>6}")
    summary = {"arch": args.arch, "batch": args.batch, "threads": os.cpu_count(), "torch": torch.__version__,
               "pytorch_blas": args.blas, "pytorch_sgemm_gflops": sgemm, "rows": {}}
    for dtype in dtypes:
        f = {key: statistics.median(values) for key, values in figures[dtype].items()}
        f["pytorch_best"], f["vitprobe_best"] = max(figures[dtype]["pytorch_best"]), max(figures[dtype]["vitprobe_best"])
        ratio = f["vitprobe"] / f["pytorch"]
        best_ratio = f["vitprobe_best"] / f["pytorch_best"]
        print(f"{dtype:6} {f['pytorch']:14.2f} {f['vitprobe']:15.2f} {ratio:5.2f}x {f['vitprobe_gflops']:8.0f} "
              f"{f['gemm_gflops']:13.0f} {f['vitprobe_gflops'] / f['gemm_gflops']:9.0%} "
              f"{f['pytorch_best']:14.2f} {f['vitprobe_best']:9.2f} {best_ratio:5.2f}x")
        summary["rows"][dtype] = dict(f, ratio=ratio, best_ratio=best_ratio)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(summary, out, indent=2)


if __name__ == "__main__":
    main()
