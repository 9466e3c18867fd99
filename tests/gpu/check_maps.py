"""gpu: `vitprobe maps` on CUDA against CPU, ViT-Ti/16 on 3 ImageNet photos, fp32.

cls_attention.npy (the last block's [cls] attention over the 14x14 patches, per head) within 5e-3 of the
largest value, the same top-1 class in maps.json, and the same grid images (size) written.
"""
import json

import numpy as np

from gpu_common import PHOTO_PREPROCESS, compare_arrays, main, photos, run_both, vit_tiny, work_dir


def check(report):
    work = work_dir(fresh=True)
    folder, files = photos(3)
    args = ["maps", "--model", vit_tiny(), "--dtype", "fp32", "--json",
            "--class-names", folder / "imagenet_class_names.txt"] + PHOTO_PREPROCESS
    for photo in files:
        args += ["--input", photo]
    if None in run_both(report, "fp32", args, work / "cpu", work / "cuda"):
        return
    cpu_maps, cuda_maps = np.load(work / "cpu" / "cls_attention.npy"), np.load(work / "cuda" / "cls_attention.npy")
    compare_arrays(report, "fp32", "cls_attention.npy", cpu_maps, cuda_maps, 5e-3)
    cpu, cuda = (json.loads((work / d / "maps.json").read_text()) for d in ("cpu", "cuda"))
    top1 = [[entry["top1"]["index"] for entry in summary["images"]] for summary in (cpu, cuda)]
    report.check("fp32", "top-1 classes equal", top1[0] == top1[1], f"{top1[1]} vs {top1[0]}")
    sizes = [[(entry["width"], entry["height"]) for entry in summary["images"]] for summary in (cpu, cuda)]
    report.check("fp32", "same grid images", sizes[0] == sizes[1] and len(sizes[1]) == len(files), sizes[1])
    report.check("fp32", "grid files written on cuda", all((work / "cuda" / e["file"]).is_file() for e in cuda["images"]))


if __name__ == "__main__":
    main("gpu: maps, cuda vs cpu", check)
