"""gpu: `vitprobe bench --device cuda` against `--device cpu`: ViT-Ti/16, batch 16, fp32 on both, bf16 on CUDA.

The JSON names the device it ran on, the timings are finite and positive, the forward that returns all
attention maps was timed too, and CUDA is faster than this machine's CPU (an H200 against 16 cores: by far;
equal speed would mean the work stayed on the CPU).
"""
import json
import math

from gpu_common import main, run_on

ARGS = ["bench", "--arch", "vit_tiny_patch16", "--batch", "16", "--warmup", "1", "--iterations", "3", "--json"]


def check(report):
    results = {}
    for device, dtype in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16")):
        result = run_on(report, f"{dtype}", device, ARGS + ["--dtype", dtype])
        if result is None:
            continue
        bench = json.loads(result.stdout)
        results[(device, dtype)] = bench
        subject = f"{device} {dtype}"
        report.check(subject, "JSON names the device", bench["device"].startswith(device), bench["device"])
        rate = bench["images_per_s"]
        report.check(subject, "images/s finite, > 0", math.isfinite(rate) and rate > 0, f"{rate:.1f}")
        report.check(subject, "attention-maps forward timed", bench.get("attention_forward_ratio", 0) > 0,
                     bench.get("attention_forward_ratio"))
    cpu, cuda = results.get(("cpu", "fp32")), results.get(("cuda", "fp32"))
    if cpu and cuda:
        report.check("fp32", "cuda images/s > cpu images/s", cuda["images_per_s"] > cpu["images_per_s"],
                     f"{cuda['images_per_s']:.1f} vs {cpu['images_per_s']:.1f}")


if __name__ == "__main__":
    main("gpu: bench, cuda vs cpu", check)
