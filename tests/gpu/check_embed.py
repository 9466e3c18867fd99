"""gpu: `vitprobe embed` on CUDA against CPU, ViT-Ti/16 on the 17 ImageNet photos, fp32, [cls] features.

features.npy (the [cls] token of the last block, --save-features) within 5e-3 of the largest value and row
cosine >= 0.9999; both runs embed 17 points with finite coordinates. The t-SNE itself runs on the CPU in both
runs, so its coordinates are not compared (tiny feature differences move its local optimum).
"""
import csv
import json

import numpy as np

from gpu_common import PHOTO_PREPROCESS, compare_arrays, main, photos, run_both, vit_tiny, work_dir


def check(report):
    work = work_dir(fresh=True)
    folder, _ = photos()
    args = ["embed", "--model", vit_tiny(), "--data", f"filelist:{folder}", "--class-names",
            folder / "imagenet_class_names.txt", "--features", "cls", "--dtype", "fp32", "--save-features",
            "--quiet", "--json"] + PHOTO_PREPROCESS
    if None in run_both(report, "fp32", args, work / "cpu", work / "cuda"):
        return
    compare_arrays(report, "fp32", "features.npy", np.load(work / "cpu" / "features.npy"),
                   np.load(work / "cuda" / "features.npy"), 5e-3, min_cosine=0.9999)
    summary = json.loads((work / "cuda" / "embed.json").read_text())
    report.check("cuda", "17 points embedded", summary["num_points"] == 17, summary["num_points"], 17)
    rows = list(csv.DictReader((work / "cuda" / "embedding.csv").open()))
    points = np.array([[float(row["x"]), float(row["y"])] for row in rows])
    report.check("cuda", "coordinates finite", len(rows) == 17 and bool(np.isfinite(points).all()), len(rows))


if __name__ == "__main__":
    main("gpu: embed, cuda vs cpu", check)
