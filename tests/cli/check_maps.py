"""CLI end-to-end of `vitprobe maps`.

Usage: check_maps.py real|layouts

real: the real ViT-Tiny/16 on the 17 ImageNet photos: one grid PNG per photo (valid, of the size maps.json
reports, 5 tiles: image, head mean, 3 heads), cls_attention.npy (17, 3, 14, 14) holding the last block's
[cls] attention over the patches (each map sums to at most 1, and is the [cls] row of `vitprobe forward
--attn` restricted to the patches), and the classifier's top-1 in maps.json equal to labels.txt for all 17.
layouts: tiny checkpoints of make_references.py with registers and without [cls] run too (registers left out
of the maps, patch attention received for the model without [cls]).
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from check_attn_stats import (REAL_PREPROCESS, check_no_temporaries, check_png, photo_folder, photo_labels,  # noqa: E402
                              real_model)
from harness import Report, describe_run, load_json, main_guard, run_vitprobe, work_dir  # noqa: E402
from make_references import write_cases  # noqa: E402

GRID, HEADS = 14, 3


def check_real(report):
    out = work_dir("real", fresh=True) / "out"
    photos = sorted(photo_folder().glob("*.JPEG"))
    args = ["maps", "--model", real_model(), "--dtype", "fp32", "--json", "--out", out,
            "--class-names", photo_folder() / "imagenet_class_names.txt"] + REAL_PREPROCESS
    for photo in photos:
        args += ["--input", photo]
    result = run_vitprobe(args)
    if result.returncode != 0:
        report.fail("run", "maps failed\n" + describe_run(result))
        return
    summary = load_json(result.stdout, "maps --json")
    report.check("run", "--json output equals maps.json", summary == json.loads((out / "maps.json").read_text()))
    report.check("run", "one entry per photo", len(summary["images"]) == len(photos), len(summary["images"]), len(photos))
    check_no_temporaries(report, "run", out)
    for entry in summary["images"]:
        check_png(report, Path(entry["file"]).stem, out / entry["file"], entry["width"], entry["height"])
    labels = photo_labels()
    correct = sum(entry["top1"]["index"] == labels[Path(entry["input"]).name] for entry in summary["images"])
    report.check("run", "top-1 in the titles matches labels.txt", correct == len(photos), correct, len(photos))
    # Tile layout: image + mean + one per head, in one row of 5 at 224 px.
    first = summary["images"][0]
    report.check("run", "grid width holds 5 tiles of 224", first["width"] == 8 + 5 * (224 + 8), first["width"], 8 + 5 * 232)

    maps = np.load(out / "cls_attention.npy")
    report.check("npy", "shape", maps.shape == (len(photos), HEADS, GRID, GRID), maps.shape)
    sums = maps.reshape(len(photos), HEADS, -1).sum(-1)
    report.check("npy", "maps are [cls] attention over patches (0 < sum <= 1)",
                 bool(((sums > 0) & (sums <= 1 + 1e-5)).all()), f"{sums.min():.3f}..{sums.max():.3f}")
    forward_out = work_dir("real") / "forward"
    result = run_vitprobe(["forward", "--model", real_model(), "--input", photos[0], "--blocks", "last", "--attn",
                           "--dtype", "fp32", "--out", forward_out] + REAL_PREPROCESS)
    if result.returncode != 0:
        report.fail("npy", "forward failed\n" + describe_run(result))
        return
    attention = np.load(forward_out / "attn11.npy")
    expected = attention[0, :, 0, 1:].reshape(HEADS, GRID, GRID)
    difference = float(np.abs(maps[0] - expected).max())
    report.check("npy", "equals forward --attn [cls] row", difference <= 1e-6, f"{difference:.1e}", 1e-6)


def check_layouts(report):
    work = work_dir("layouts", fresh=True)
    cases = write_cases(work / "refs", ["dinov2-registers", "ijepa"])
    photo = sorted(photo_folder().glob("*.JPEG"))[0]
    for case, description in [("dinov2-registers", "[cls] attention"), ("ijepa", "attention received from patches")]:
        out = work / case
        result = run_vitprobe(["maps", "--model", work / "refs" / cases[case]["checkpoint"], "--num-heads", "4",
                               "--input", photo, "--input", photo, "--dtype", "fp32", "--json", "--out", out])
        if result.returncode != 0:
            report.fail(case, "maps failed\n" + describe_run(result))
            continue
        summary = load_json(result.stdout, "maps --json")
        report.check(case, "map kind", summary["map"].startswith(description), summary["map"])
        names = [entry["file"] for entry in summary["images"]]
        report.check(case, "same stem twice gets two files", len(set(names)) == 2, ",".join(names))
        for entry in summary["images"]:
            check_png(report, case, out / entry["file"], entry["width"], entry["height"])
        maps = np.load(out / "cls_attention.npy")
        report.check(case, "maps cover the 4x4 patches only", maps.shape == (2, 4, 4, 4), maps.shape)


CHECKS = {"real": check_real, "layouts": check_layouts}


def run():
    names = sys.argv[1:] or list(CHECKS)
    report = Report("vitprobe maps: " + ", ".join(names))
    for name in names:
        CHECKS[name](report)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
