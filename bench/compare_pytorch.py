#!/usr/bin/env python3
"""vitprobe's encoder against PyTorch 2.x on the same machine and device, in alternating rounds.

PyTorch side (the Python environment of scripts/setup, or the GPU machine's python3): timm's VisionTransformer
with random weights, eval mode, inference_mode, fp32 or bf16 autocast (matrix products in bf16, softmax and
LayerNorm in fp32), in up to three variants:
  eager     timm's attention through F.scaled_dot_product_attention (flash / memory-efficient kernels on CUDA)
  maps      every block's attention probabilities returned: timm's Attention with fused_attn=False and a forward
            hook on attn_drop keeping its output, as a user's probing script does
  compile   torch.compile of the eager model (--compile [DTYPES]), timed once after the rounds (compiling once
            per batch and dtype takes tens of seconds); a failure to compile is reported, not fatal
vitprobe side: `vitprobe bench --json` with the same architecture, batch, dtype and device; its forward and
its forward returning all attention maps (`attention_forward_ms_median`) pair with eager and maps.
With --reference it also times `vitprobe bench --backend reference` (libtorch's own CPU or CUDA kernels, without
vitprobe's oneDNN fast path), the measurement that decides whether the fast path earns its place.
Timing: CUDA events on --device cuda (after a synchronize), perf_counter on the CPU; each figure is the median
of --iterations forwards after --warmup; each round runs every configuration once, PyTorch then vitprobe, and
the table gives medians over rounds and the ratios vitprobe / PyTorch (above 1: vitprobe is faster).

    python bench/compare_pytorch.py --vitprobe build/vitprobe [--device cpu|cuda] [--arch vit_base_patch16]
        [--batch 16[,256]] [--dtypes bf16,fp32] [--rounds 3] [--iterations 5] [--warmup 2] [--maps] [--compile [bf16]]
        [--json OUT.json]

The JSON is rewritten after every round, so a run stopped by a time limit keeps what it measured. Without a
vitprobe binary (missing file) only the PyTorch side runs.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import timm
import torch

ARCHS = {"vit_tiny_patch16": "vit_tiny_patch16_224", "vit_small_patch16": "vit_small_patch16_224",
         "vit_base_patch16": "vit_base_patch16_224", "vit_large_patch16": "vit_large_patch16_224"}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def median_seconds(fn, device, warmup, iterations):
    """Median wall time of fn() over `iterations` runs after `warmup` (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    seconds = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(iterations):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            seconds.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(iterations):
            begin = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - begin)
    return statistics.median(seconds)


class PyTorchViT:
    """timm's ViT on the device, with the eager, maps and compiled forwards."""

    def __init__(self, arch, device):
        self.device = device
        self.model = timm.create_model(ARCHS[arch], pretrained=False, num_classes=0).to(device).eval()
        self.attention = [m for m in self.model.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]
        self.maps = []
        self.compiled = {}
        self.compile_errors = {}

    def _set_fused(self, fused):
        for module in self.attention:
            module.fused_attn = fused

    def forward(self, model, images, dtype):
        with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16, enabled=(dtype == "bf16")):
            return model(images)

    def time_eager(self, images, dtype, warmup, iterations):
        self._set_fused(True)
        return median_seconds(lambda: self.forward(self.model, images, dtype), self.device, warmup, iterations)

    def time_maps(self, images, dtype, warmup, iterations):
        """Every block's probabilities kept (not copied to the host), as vitprobe's maps forward keeps them."""
        self._set_fused(False)
        hooks = [m.attn_drop.register_forward_hook(lambda module, inputs, output: self.maps.append(output))
                 for m in self.attention]

        def run():
            self.maps.clear()
            self.forward(self.model, images, dtype)
        try:
            seconds = median_seconds(run, self.device, warmup, iterations)
            if len(self.maps) != len(self.attention):
                raise RuntimeError(f"{len(self.maps)} attention maps captured, {len(self.attention)} blocks")
            return seconds
        finally:
            for hook in hooks:
                hook.remove()
            self.maps.clear()
            self._set_fused(True)

    def time_compiled(self, images, dtype, warmup, iterations):
        """torch.compile's forward, or None when it does not compile here (the error is kept)."""
        key = (tuple(images.shape), dtype)
        if key in self.compile_errors:
            return None
        try:
            if key not in self.compiled:
                self._set_fused(True)
                model = torch.compile(self.model)
                begin = time.perf_counter()
                self.forward(model, images, dtype)
                if self.device == "cuda":
                    torch.cuda.synchronize()
                self.compiled[key] = (model, time.perf_counter() - begin)
                print(f"  torch.compile {key}: {self.compiled[key][1]:.1f} s", flush=True)
            return median_seconds(lambda: self.forward(self.compiled[key][0], images, dtype), self.device, warmup,
                                  iterations)
        except Exception as error:  # noqa: BLE001 - reported in the table and the JSON
            self.compile_errors[key] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            print(f"  torch.compile {key} failed: {self.compile_errors[key]}", flush=True)
            return None


def vitprobe_bench(binary, args, batch, dtype, backend="auto"):
    """vitprobe bench --json for one configuration (its attention-maps forward only with --maps)."""
    command = [binary, "bench", "--arch", args.arch, "--batch", str(batch), "--dtype", dtype, "--device", args.device,
               "--backend", backend, "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--json"]
    if not args.maps or backend != "auto":
        command.append("--no-attention")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


def matmul_tflops(device, dtype, n):
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n ** 3 / median_seconds(lambda: a @ b, device, 2, 5) / 1e12


def machine(device):
    info = {"device": device, "torch": torch.__version__, "timm": timm.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags"))
        info["cpu_flags"] = [flag for flag in CPU_FLAGS if flag in flags]
    except (OSError, StopIteration):
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def summarize(samples, batch):
    """Median seconds per configuration -> images/s and ratios vitprobe / PyTorch."""
    rate = {key: batch / statistics.median(values) for key, values in samples.items() if values}
    row = {f"{key}_img_s": value for key, value in rate.items()}
    for ours, theirs in (("vitprobe", "eager"), ("vitprobe_maps", "maps"), ("vitprobe", "compile"),
                         ("vitprobe", "vitprobe_reference")):
        if ours in rate and theirs in rate:
            row[f"ratio_{theirs.removeprefix('vitprobe_')}"] = rate[ours] / rate[theirs]
    if "vitprobe" in rate and "vitprobe_maps" in rate:
        row["vitprobe_maps_cost"] = rate["vitprobe"] / rate["vitprobe_maps"]
    if "eager" in rate and "maps" in rate:
        row["pytorch_maps_cost"] = rate["eager"] / rate["maps"]
    return row


def print_table(summary):
    print(f"\n{summary['arch']} on {summary['machine'].get('gpu') or summary['machine']['cpu']} "
          f"({summary['machine']['threads']} threads), torch {summary['machine']['torch']}, medians of "
          f"{summary['rounds_done']} rounds; ratio = vitprobe / PyTorch images/s")
    header = ["dtype", "batch", "eager", "vitprobe", "ratio", "maps", "vp maps", "ratio", "compile", "ratio",
              "vp maps cost", "pt maps cost", "vp libtorch", "vp/libtorch"]
    print(" ".join(f"{h:>12}" for h in header))
    for row in summary["rows"]:
        cells = [row["dtype"], row["batch"]] + [row.get(k) for k in (
            "eager_img_s", "vitprobe_img_s", "ratio_eager", "maps_img_s", "vitprobe_maps_img_s", "ratio_maps",
            "compile_img_s", "ratio_compile", "vitprobe_maps_cost", "pytorch_maps_cost", "vitprobe_reference_img_s",
            "ratio_reference")]
        print(" ".join(f"{c:>12.2f}" if isinstance(c, float) else f"{'-' if c is None else c:>12}" for c in cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vitprobe", default="build/vitprobe")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--arch", default="vit_base_patch16", choices=sorted(ARCHS))
    parser.add_argument("--batch", default="16", help="one batch size or several, comma-separated")
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--maps", action="store_true", help="also time the forwards returning all attention maps")
    parser.add_argument("--compile", nargs="?", const="all", default="",
                        help="also time torch.compile, for these dtypes (default: all), after the rounds")
    parser.add_argument("--reference", action="store_true",
                        help="also time vitprobe's --backend reference (libtorch's own kernels, no oneDNN fast path)")
    parser.add_argument("--json", help="write the figures here (after every round)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    batches = [int(b) for b in args.batch.split(",")]
    dtypes = args.dtypes.split(",")
    have_vitprobe = Path(args.vitprobe).is_file()
    if not have_vitprobe:
        print(f"compare_pytorch: {args.vitprobe} not found: PyTorch side only", flush=True)

    info = machine(args.device)
    info["matmul_tflops"] = {name: matmul_tflops(args.device, dt, 4096 if args.device == "cuda" else 1024)
                             for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"compare_pytorch: {json.dumps(info)}", flush=True)
    model = PyTorchViT(args.arch, args.device)
    configs = [(b, d) for b in batches for d in dtypes]
    samples = {config: {k: [] for k in ("eager", "maps", "compile", "vitprobe", "vitprobe_maps",
                                                               "vitprobe_reference")} for config in configs}
    errors = []
    summary = {"arch": args.arch, "machine": info, "rounds": args.rounds, "rounds_done": 0, "rows": [], "errors": errors}

    def save():
        summary["rows"] = [dict(batch=b, dtype=d, **summarize(samples[(b, d)], b)) for b, d in configs]
        summary["compile_errors"] = {f"{k[0][0]}x{k[1]}": v for k, v in model.compile_errors.items()}
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1))
    for round_index in range(args.rounds):
        for batch, dtype in configs:
            images = torch.randn(batch, 3, 224, 224, device=args.device)
            s = samples[(batch, dtype)]
            s["eager"].append(model.time_eager(images, dtype, args.warmup, args.iterations))
            if args.maps:
                s["maps"].append(model.time_maps(images, dtype, args.warmup, args.iterations))
            del images
            if have_vitprobe:
                try:
                    ours = vitprobe_bench(args.vitprobe, args, batch, dtype)
                    s["vitprobe"].append(ours["forward_ms_median"] / 1e3)
                    if "attention_forward_ms_median" in ours:
                        s["vitprobe_maps"].append(ours["attention_forward_ms_median"] / 1e3)
                    summary["vitprobe_machine"] = ours.get("machine")
                    if args.reference:
                        reference = vitprobe_bench(args.vitprobe, args, batch, dtype, backend="reference")
                        s["vitprobe_reference"].append(reference["forward_ms_median"] / 1e3)
                except (RuntimeError, ValueError, KeyError) as error:
                    errors.append(str(error))
                    print(f"  vitprobe: {error}", flush=True)
            line = ", ".join(f"{k} {batch / v[-1]:.1f}" for k, v in s.items() if v)
            print(f"round {round_index + 1}/{args.rounds} batch {batch} {dtype}: {line} img/s", flush=True)
        summary["rounds_done"] = round_index + 1
        save()
    compile_dtypes = dtypes if args.compile == "all" else [d for d in args.compile.split(",") if d]
    for batch, dtype in configs:
        if dtype in compile_dtypes:
            images = torch.randn(batch, 3, 224, 224, device=args.device)
            seconds = model.time_compiled(images, dtype, args.warmup, args.iterations)
            if seconds is not None:
                samples[(batch, dtype)]["compile"].append(seconds)
            save()
    print_table(summary)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
