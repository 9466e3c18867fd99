"""CLI end-to-end of `vitprobe embed` (t-SNE of features).

Usage: check_embed.py real|barnes-hut

real: the real ViT-Tiny/16 on the 17 ImageNet photos (filelist: data with ImageNet class names): exact t-SNE
with the perplexity lowered to 16/3; embedding.csv has one finite row per photo with its class name and file,
agreeing with embed.json; the scatter PNG/SVG are valid and of the reported size; features.npy holds the
[cls] token of the last block's output (no final norm, as the official code), equal to `vitprobe forward`'s
block11.npy.
barnes-hut: a tiny random-weight ViT on 2100 Fashion-MNIST test images (above the exact limit of 2000), so
the Barnes-Hut path runs (500 iterations to keep the test short); the 2-D map must keep much more class
structure than chance (10-NN agreement).
"""
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from check_attn_stats import (REAL_PREPROCESS, check_no_temporaries, check_png, check_svg, photo_folder,  # noqa: E402
                              photo_labels, real_model)
from harness import Report, describe_run, load_json, main_guard, run_vitprobe, work_dir  # noqa: E402
from make_references import write_cases  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
N_BARNES_HUT = 2100
MIN_NEIGHBOUR_AGREEMENT = 0.3  # chance is 0.1 for 10 balanced classes; this run gives 0.48


def read_points(report, subject, path, summary):
    rows = list(csv.DictReader(path.open()))
    report.check(subject, "csv columns", list(rows[0]) == ["index", "x", "y", "label", "class", "item"] if rows else False)
    report.check(subject, "one row per point", len(rows) == summary["num_points"], len(rows), summary["num_points"])
    points = np.array([[float(row["x"]), float(row["y"])] for row in rows])
    report.check(subject, "points finite and spread", bool(np.isfinite(points).all() and points.std(0).min() > 1e-3),
                 f"std {points.std(0).min():.3g}")
    return rows, points


def check_figures(report, subject, out, summary):
    figures = summary["figures"]
    check_png(report, subject, out / figures["png"]["file"], figures["png"]["width"], figures["png"]["height"])
    check_svg(report, subject, out / figures["svg"]["file"], figures["svg"]["width"], figures["svg"]["height"])


def check_real(report):
    out = work_dir("real", fresh=True) / "out"
    names = (photo_folder() / "imagenet_class_names.txt").read_text().splitlines()
    result = run_vitprobe(["embed", "--model", real_model(), "--data", f"filelist:{photo_folder()}", "--class-names",
                           photo_folder() / "imagenet_class_names.txt", "--features", "cls", "--dtype", "fp32",
                           "--save-features", "--json", "--out", out] + REAL_PREPROCESS)
    if result.returncode != 0:
        report.fail("run", "embed failed\n" + describe_run(result))
        return
    summary = load_json(result.stdout, "embed --json")
    report.check("run", "--json output equals embed.json", summary == json.loads((out / "embed.json").read_text()))
    report.check("run", "exact t-SNE for 17 points", summary["tsne"]["method"] == "exact", summary["tsne"]["method"])
    report.check("run", "perplexity lowered to (N-1)/3", abs(summary["tsne"]["perplexity"] - 16 / 3) < 1e-9,
                 summary["tsne"]["perplexity"])
    report.check("run", "17 classes in the legend", summary["num_classes_present"] == 17, summary["num_classes_present"])
    report.check("run", "progress bars on stderr", "t-SNE" in result.stderr and "17 img" in result.stderr)
    check_no_temporaries(report, "run", out)
    rows, _ = read_points(report, "csv", out / "embedding.csv", summary)
    labels = photo_labels()
    named = sum(row["class"] == names[labels[Path(row["item"]).name]] for row in rows)
    report.check("csv", "class names from --class-names", named == len(rows), named, len(rows))
    check_figures(report, "figure", out, summary)

    features = np.load(out / "features.npy")
    report.check("features", "shape", features.shape == (17, 192), features.shape)
    first = photo_folder() / rows[0]["item"]
    forward_out = work_dir("real") / "forward"
    result = run_vitprobe(["forward", "--model", real_model(), "--input", first, "--blocks", "last", "--dtype", "fp32",
                           "--out", forward_out] + REAL_PREPROCESS)
    if result.returncode != 0:
        report.fail("features", "forward failed\n" + describe_run(result))
        return
    expected = np.load(forward_out / "block11.npy")[0, 0]
    difference = float(np.abs(features[int(rows[0]["index"])] - expected).max())
    report.check("features", "[cls] of block 11 output (forward)", difference <= 1e-5, f"{difference:.1e}", 1e-5)


def check_barnes_hut(report):
    if not Path(FASHION_MNIST).exists():
        report.fail("setup", f"{FASHION_MNIST} missing (Debian package dataset-fashion-mnist)")
        return
    work = work_dir("barnes-hut", fresh=True)
    case = write_cases(work / "refs", ["mae"])["mae"]
    out = work / "out"
    result = run_vitprobe(["embed", "--model", work / "refs" / case["checkpoint"], "--num-heads", "4", "--data",
                           f"fashion-mnist:{FASHION_MNIST}", "--split", "val", "--limit", N_BARNES_HUT, "--features",
                           "mean", "--iterations", "500", "--dtype", "fp32", "--batch-size", "128", "--json", "--out", out])
    if result.returncode != 0:
        report.fail("run", "embed failed\n" + describe_run(result))
        return
    summary = load_json(result.stdout, "embed --json")
    report.check("run", "Barnes-Hut above 2000 points", summary["tsne"]["method"] == "barnes-hut", summary["tsne"]["method"])
    report.check("run", "points", summary["num_points"] == N_BARNES_HUT, summary["num_points"], N_BARNES_HUT)
    report.check("run", "10 classes", summary["num_classes_present"] == 10, summary["num_classes_present"])
    report.check("run", "t-SNE time (s)", True, f"{summary['seconds']['tsne']:.1f}")
    rows, points = read_points(report, "csv", out / "embedding.csv", summary)
    labels = np.array([int(row["label"]) for row in rows])
    distances = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    neighbours = np.argsort(distances, axis=1)[:, :10]
    agreement = float((labels[neighbours] == labels[:, None]).mean())
    report.check("csv", "10-NN class agreement in 2-D", agreement >= MIN_NEIGHBOUR_AGREEMENT, f"{agreement:.2f}",
                 f">= {MIN_NEIGHBOUR_AGREEMENT}")
    check_figures(report, "figure", out, summary)


CHECKS = {"real": check_real, "barnes-hut": check_barnes_hut}


def run():
    names = sys.argv[1:] or list(CHECKS)
    report = Report("vitprobe embed: " + ", ".join(names))
    for name in names:
        CHECKS[name](report)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
