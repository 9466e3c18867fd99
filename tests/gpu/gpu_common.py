"""What the gpu-labelled tests share: their inputs, the CUDA check that makes them fail loudly without a GPU, a
run of one command on both devices, and comparisons with stated tolerances.

Every test runs a vitprobe command twice on the same input, `--device cpu --backend reference` (libtorch's own
CPU path) and `--device cuda`, and compares the outputs. The CPU run is the reference. Tolerances depend on the dtype: fp32 on both sides differs by
summation order and by cuDNN's TF32 convolutions (the patch embedding), bf16 on CUDA against fp32 on CPU by
bf16's 8-bit mantissa. Inputs make the answers non-trivial: the real ViT-Ti/16 on ImageNet photos (197 tokens,
attention far from uniform) and the bundled MAE encoder on Fashion-MNIST.

Rehearsal on a machine without a GPU: VITPROBE_GPU_TEST_REHEARSAL=1 replaces --device cuda by --device cpu, so the
options, files and JSON keys a test reads are exercised before device time is spent; the test still fails, with
one row saying that nothing ran on a GPU (scripts/gpu-check --dry checks that it is the only failed row).

Inputs come from VITPROBE_GPU_DATA (.gpu-check/data, filled by scripts/gpu-prepare; the GPU machine has no
../shared), else from VITPROBE_SHARED and Debian's dataset-fashion-mnist on a developer's machine.
"""
import os
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, SetupError, describe_run, env_path, load_json, main_guard, run_vitprobe  # noqa: E402,F401
from harness import vitprobe_bin, work_dir  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
MAE_MODEL = REPO / "models" / "fmnist_mae_vit_d192_p4.safetensors"
PHOTO_PREPROCESS = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--resize", "248", "--crop", "224"]
NO_CUDA = "no CUDA device is visible"
REHEARSAL = os.environ.get("VITPROBE_GPU_TEST_REHEARSAL") == "1"
REHEARSAL_ROW = "REHEARSAL: --device cuda replaced by --device cpu, nothing ran on a GPU"


def _first_existing(what, candidates):
    for path in candidates:
        if path is not None and path.exists():
            return path
    raise SetupError(f"{what} not found in {', '.join(str(c) for c in candidates if c is not None)} "
                     "(run scripts/gpu-prepare)")


def _gpu_data():
    value = env_path("VITPROBE_GPU_DATA", must_exist=False)
    return value if value.exists() else None


def _shared():
    value = env_path("VITPROBE_SHARED", must_exist=False)
    return value if value.exists() else None


def vit_tiny():
    """ViT-Ti/16 (ImageNet-1k): bf16 weights from .gpu-check, or ../shared's fp32 file."""
    data, shared = _gpu_data(), _shared()
    return _first_existing("ViT-Ti/16", [data and data / "vit_tiny_patch16_224.in1k.bf16.safetensors",
                                         shared and shared / "models" / "vit_tiny_patch16_224.in1k.safetensors"])


def photos(count=None):
    data, shared = _gpu_data(), _shared()
    folder = _first_existing("the ImageNet sample photos", [data and data / "imagenet-sample",
                                                            shared and shared / "data" / "imagenet-sample"])
    files = sorted(folder.glob("*.JPEG"))
    return folder, files[:count] if count else files


def fashion_mnist():
    """The `--data` spec of a Fashion-MNIST folder (the 2000 + 500 subset, or Debian's full dataset)."""
    data = _gpu_data()
    folder = _first_existing("Fashion-MNIST", [data and data / "fashion-mnist",
                                               Path("/usr/share/datasets/fashion-mnist")])
    return f"fashion-mnist:{folder}"


def require_cuda(report):
    """True when vitprobe sees a CUDA device; else one failed check saying why, so that the test fails loudly
    (gpu-labelled tests are excluded from CPU runs by label, never skipped silently)."""
    if REHEARSAL:
        report.fail("cuda", REHEARSAL_ROW)
        return True
    result = run_vitprobe(["--version"])
    match = re.search(r"(\d+) CUDA device\(s\) visible", result.stdout)
    devices = int(match.group(1)) if match else 0
    if result.returncode != 0 or devices == 0:
        summary = next((line for line in result.stdout.splitlines() if "CUDA" in line), result.stdout.strip()[:200])
        report.fail("cuda", f"{NO_CUDA} to vitprobe ({summary}): this gpu-labelled test needs a GPU; CPU runs "
                    "exclude it with `ctest -LE gpu` (scripts/test), scripts/gpu-check runs it")
        return False
    report.check("cuda", "CUDA devices visible to vitprobe", True, devices)
    return True


def device_args(args, device):
    """ARGS + --device; on the CPU also --backend reference: CUDA is compared with libtorch's reference path, not
    with the oneDNN fast path (which has tests of its own against that reference). pretrain has no --backend."""
    device = "cpu" if REHEARSAL else device
    args = list(args) + ["--device", device]
    if device == "cpu" and args[0] not in ("pretrain", "launch") and "--backend" not in args:
        args += ["--backend", "reference"]
    return args


def run_on(report, subject, device, args, timeout=600):
    """Runs `vitprobe ARGS --device DEVICE`; the CompletedProcess, or None after recording the failure."""
    result = run_vitprobe(device_args(args, device), timeout=timeout)
    if result.returncode != 0:
        report.fail(f"{subject} ({device})", "vitprobe failed\n" + describe_run(result))
        return None
    return result


def run_both(report, subject, args, out_cpu=None, out_cuda=None, timeout=600):
    """The same command on cpu and cuda (each with its own --out when given): (cpu result, cuda result), either
    None when that run failed."""
    results = []
    for device, out in (("cpu", out_cpu), ("cuda", out_cuda)):
        extra = ["--out", out] if out is not None else []
        results.append(run_on(report, subject, device, list(args) + extra, timeout))
    return tuple(results)


def compare_arrays(report, subject, what, cpu, cuda, rel_tol, min_cosine=None):
    """CUDA against CPU: same shape, finite, max |cuda - cpu| <= rel_tol * max |cpu|, and (when given) the
    smallest cosine similarity between corresponding rows of the last axis >= min_cosine."""
    cpu, cuda = np.asarray(cpu, dtype=np.float64), np.asarray(cuda, dtype=np.float64)
    if cpu.shape != cuda.shape:
        report.fail(subject, f"{what}: shape {cuda.shape} on cuda, {cpu.shape} on cpu")
        return False
    ok = report.check(subject, f"{what}: finite on cuda", bool(np.isfinite(cuda).all()))
    scale = max(float(np.abs(cpu).max()), 1e-30)
    error = float(np.abs(cuda - cpu).max()) / scale
    ok &= report.check(subject, f"{what}: max|cuda-cpu| / max|cpu|", error <= rel_tol, f"{error:.1e}", rel_tol)
    if min_cosine is not None:
        a, b = cpu.reshape(-1, cpu.shape[-1]), cuda.reshape(-1, cuda.shape[-1])
        cosine = float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-30)).min())
        ok &= report.check(subject, f"{what}: min row cosine", cosine >= min_cosine, f"{cosine:.6f}", min_cosine)
    return ok


def compare_numbers(report, subject, what, cpu, cuda, abs_tol, rel_tol=0.0):
    """|cuda - cpu| <= abs_tol + rel_tol * |cpu| for two numbers (or equal-length lists of numbers)."""
    cpu, cuda = np.atleast_1d(np.asarray(cpu, dtype=np.float64)), np.atleast_1d(np.asarray(cuda, dtype=np.float64))
    if cpu.shape != cuda.shape:
        report.fail(subject, f"{what}: {cuda.shape} values on cuda, {cpu.shape} on cpu")
        return False
    excess = np.abs(cuda - cpu) - (abs_tol + rel_tol * np.abs(cpu))
    worst = int(np.argmax(excess))
    value = f"{cuda[worst]:.5g} vs {cpu[worst]:.5g}" if cpu.size == 1 else \
        f"worst {cuda[worst]:.5g} vs {cpu[worst]:.5g} of {cpu.size}"
    return report.check(subject, what, bool((excess <= 0).all() and np.isfinite(cuda).all()), value,
                        f"{abs_tol:g}" + (f" + {rel_tol:g}|cpu|" if rel_tol else ""))


def main(title, run):
    """Runs run(report) after the CUDA check; exceptions become a failed row, so the table is always printed."""
    def body():
        report = Report(title)
        if require_cuda(report):
            try:
                run(report)
            except Exception as error:  # noqa: BLE001 - the table shows what was checked before
                report.fail("error", f"{type(error).__name__}: {error}")
        return report.exit_code()
    main_guard(body)
