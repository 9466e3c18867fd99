"""gpu: `vitprobe extract` on CUDA against CPU: the bundled MAE encoder on 1000 + 500 Fashion-MNIST images, fp32
encoder, features of the cls, mean and abmilp heads (the [cls] token, the mean patch token, all patch tokens).

Both runs make the same cache entry (same key: the device is not part of it) with the same manifest; every
feature file, stored as bf16, agrees within 2^-7 of the largest value (a bf16 rounding step, where CUDA's
and the CPU's fp32 results fall on the two sides of a rounding boundary) and row cosine >= 0.9999.
"""
import json
from pathlib import Path

import numpy as np

from gpu_common import MAE_MODEL, compare_arrays, fashion_mnist, main, run_on, work_dir


def bf16_file(path):
    return (np.fromfile(path, dtype="<u2").astype(np.uint32) << 16).view(np.float32)


def check(report):
    work = work_dir(fresh=True)
    folders = {}
    for device in ("cpu", "cuda"):
        result = run_on(report, "extract", device,
                        ["extract", "--model", MAE_MODEL, "--data", fashion_mnist(), "--limit", "1000", "--val-limit",
                         "500", "--heads", "cls,mean,abmilp", "--dtype", "fp32", "--cache-dir", work / device,
                         "--quiet", "--json"])
        if result is None:
            return
        folders[device] = {split: Path(entry["folder"]) for split, entry in json.loads(result.stdout)["splits"].items()}
    for split in ("train", "val"):
        cpu, cuda = folders["cpu"][split], folders["cuda"][split]
        cpu_manifest, cuda_manifest = (json.loads((f / "manifest.json").read_text()) for f in (cpu, cuda))
        report.check(split, "same cache key (entry folder name)", cpu.name == cuda.name, cuda.name[:12])
        report.check(split, "same manifest", cpu_manifest == cuda_manifest)
        labels_equal = (cpu / "labels.i64").read_bytes() == (cuda / "labels.i64").read_bytes()
        report.check(split, "same labels", labels_equal)
        files = sorted(p.name for p in cpu.glob("*.bf16"))
        report.check(split, "feature files", files == sorted(p.name for p in cuda.glob("*.bf16")) and len(files) >= 2,
                     ",".join(files))
        for name in files:
            a, b = bf16_file(cpu / name), bf16_file(cuda / name)
            width = a.size // cpu_manifest["num_items"]
            compare_arrays(report, split, name, a.reshape(-1, width), b.reshape(-1, width), 2 ** -7, min_cosine=0.9999)


if __name__ == "__main__":
    main("gpu: extract, cuda vs cpu", check)
