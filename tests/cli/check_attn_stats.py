"""CLI end-to-end of `vitprobe attn-stats` on the real ViT-Tiny/16 and the 17 ImageNet photos, and the bad
inputs of the analysis commands (attn-stats, maps, embed).

Usage: check_attn_stats.py real|bad-inputs

real: stats.json, stats.csv and the figure (PNG + SVG) are written; the JSON has every statistic for 12 blocks
x 3 heads with finite values in their ranges; every CSV row equals its JSON value; the PNG is a valid image of
the size stats.json reports and not blank, the SVG parses with that width and height; --json prints stats.json.
bad-inputs: each case exits 2 (bad input; 3 for a missing file) with one line on stderr naming the problem, and
leaves no output folder.

The helpers at the top (figure checks, the real model and photos) are shared with check_maps.py and
check_embed.py.
"""
import csv
import json
import math
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, describe_run, load_json, main_guard, run_vitprobe, shared_dir, work_dir  # noqa: E402

REAL_MODEL = "models/vit_tiny_patch16_224.in1k.safetensors"
PHOTOS = "data/imagenet-sample"
# The preprocessing the real model was trained with (shared/README.md).
REAL_PREPROCESS = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--resize", "248", "--crop", "224"]
N_PHOTOS = 17
DEPTH, HEADS = 12, 3
CLS_STATISTICS = ["cls_cls_attention", "pos_self_attention", "cls_cls_attention_adj_for_cls",
                  "pos_self_attention_adj_for_cls", "cls_pos_attention", "pos_cls_attention", "cls_pos_entropy",
                  "pos_pos_entropy", "cls_magnitude", "pos_magnitude"]
PROBABILITIES = ["cls_cls_attention", "pos_self_attention", "cls_pos_attention", "pos_cls_attention"]
CSV_TOLERANCE = 1e-9


def real_model():
    return shared_dir() / REAL_MODEL


def photo_folder():
    return shared_dir() / PHOTOS


def photo_labels():
    """{file name: class index} from labels.txt."""
    labels = {}
    for line in (photo_folder() / "labels.txt").read_text().splitlines():
        if line.strip():
            name, index, _ = line.split()
            labels[name] = int(index)
    return labels


def check_png(report, subject, path, width, height):
    """A decodable PNG of exactly width x height that is not one flat colour."""
    if not path.exists():
        report.fail(subject, f"{path.name} was not written")
        return
    data = path.read_bytes()
    report.check(subject, f"{path.name} PNG signature", data[:8] == b"\x89PNG\r\n\x1a\n")
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            size = image.size
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    except Exception as error:  # noqa: BLE001 - any decoding failure is the finding
        report.fail(subject, f"{path.name} does not decode: {error}")
        return
    report.check(subject, f"{path.name} size", size == (width, height), f"{size[0]}x{size[1]}", f"{width}x{height}")
    report.check(subject, f"{path.name} is not blank", pixels.std() > 5, f"std {pixels.std():.1f}", "> 5")


def check_svg(report, subject, path, width, height):
    """A well-formed SVG document whose width/height attributes are the figure's size, with drawn content."""
    if not path.exists():
        report.fail(subject, f"{path.name} was not written")
        return
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        report.fail(subject, f"{path.name} is not well-formed XML: {error}")
        return
    report.check(subject, f"{path.name} root is <svg>", root.tag.endswith("svg"), root.tag)
    size = (root.get("width"), root.get("height"))
    report.check(subject, f"{path.name} size", size == (str(width), str(height)), f"{size[0]}x{size[1]}", f"{width}x{height}")
    n_paths = sum(1 for element in root.iter() if element.tag.endswith("path"))
    report.check(subject, f"{path.name} has drawn paths", n_paths > 20, n_paths, "> 20")


def check_no_temporaries(report, subject, folder):
    leftovers = [p.name for p in Path(folder).rglob("*") if ".tmp" in p.name]
    report.check(subject, "no temporary files left", not leftovers, ",".join(leftovers))


def one_line_error(report, subject, result, must_contain, exit_code=2):
    lines = result.stderr.strip().splitlines()
    report.check(subject, f"exit code {exit_code}", result.returncode == exit_code, result.returncode, exit_code)
    report.check(subject, "one line on stderr", len(lines) == 1, len(lines), 1)
    text = lines[0] if lines else ""
    report.check(subject, f"message names '{must_contain}'", must_contain in text, text[:90])


def check_json(report, summary):
    models = summary["models"]
    if len(models) != 1:
        report.fail("json", f"{len(models)} models in stats.json, expected 1")
        return None
    model = models[0]
    report.check("json", "images", model["num_images"] == N_PHOTOS, model["num_images"], N_PHOTOS)
    report.check("json", "blocks x heads", (model["depth"], model["num_heads"]) == (DEPTH, HEADS),
                 f"{model['depth']}x{model['num_heads']}")
    statistics = model["statistics"]
    report.check("json", "statistics", sorted(statistics) == sorted(CLS_STATISTICS), ",".join(sorted(statistics))[:60])
    for name, entry in statistics.items():
        mean, std = np.array(entry["mean"]), np.array(entry["std"])
        ok = mean.shape == (DEPTH,) and std.shape == (DEPTH,) and np.isfinite(mean).all() and (std >= 0).all()
        if entry["per_head"]:
            head_mean = np.array(entry["head_mean"])
            ok = ok and head_mean.shape == (DEPTH, HEADS) and np.allclose(head_mean.mean(1), mean, atol=1e-9)
        if name in PROBABILITIES:
            ok = ok and ((mean >= 0) & (mean <= 1)).all()
        if name.endswith("entropy"):
            ok = ok and ((mean >= 0) & (mean <= math.log(196) + 1e-6)).all()
        report.check("json", f"{name}: shapes, finite, in range", bool(ok))
    return model


def check_csv(report, summary, path):
    rows = list(csv.DictReader(path.open()))
    per_head = sum(1 for entry in summary["models"][0]["statistics"].values() if entry["per_head"])
    expected_rows = per_head * DEPTH * (1 + HEADS) + (len(CLS_STATISTICS) - per_head) * DEPTH
    report.check("csv", "columns", list(rows[0]) == ["model", "block", "head", "statistic", "mean", "std"] if rows else False)
    report.check("csv", "rows", len(rows) == expected_rows, len(rows), expected_rows)
    models = {model["label"]: model for model in summary["models"]}
    worst = 0.0
    for row in rows:
        entry = models[row["model"]]["statistics"][row["statistic"]]
        block = int(row["block"])
        if row["head"] == "all":
            want = (entry["mean"][block], entry["std"][block])
        else:
            head = int(row["head"])
            want = (entry["head_mean"][block][head], entry["head_std"][block][head])
        for got, value in zip((float(row["mean"]), float(row["std"])), want):
            worst = max(worst, abs(got - value) / max(1.0, abs(value)))
    report.check("csv", "every row equals stats.json", worst <= CSV_TOLERANCE, f"{worst:.1e}", CSV_TOLERANCE)


def check_real(report):
    out = work_dir("real", fresh=True) / "out"
    result = run_vitprobe(["attn-stats", "--model", real_model(), "--label", "vit-tiny-in1k", "--data",
                           f"filelist:{photo_folder()}", "--batch-size", "8", "--dtype", "fp32", "--json", "--out",
                           out] + REAL_PREPROCESS)
    if result.returncode != 0:
        report.fail("run", "attn-stats failed\n" + describe_run(result))
        return
    summary = load_json(result.stdout, "attn-stats --json")
    written = json.loads((out / "stats.json").read_text())
    report.check("run", "--json output equals stats.json", summary == written)
    report.check("run", "progress reported on stderr", "17 img" in result.stderr, result.stderr.strip()[-60:])
    report.check("run", "files", sorted(p.name for p in out.iterdir()) ==
                 sorted(["stats.json", "stats.csv", "attention_stats.png", "attention_stats.svg"]))
    check_no_temporaries(report, "run", out)
    if check_json(report, summary) is None:
        return
    check_csv(report, summary, out / "stats.csv")
    figures = summary["figures"]
    report.check("figure", "one panel per statistic", figures["panels"] == len(CLS_STATISTICS), figures["panels"])
    check_png(report, "figure", out / figures["png"]["file"], figures["png"]["width"], figures["png"]["height"])
    check_svg(report, "figure", out / figures["svg"]["file"], figures["svg"]["width"], figures["svg"]["height"])


def check_bad_inputs(report):
    work = work_dir("bad", fresh=True)
    model, photos = real_model(), photo_folder()
    photo = photos / "n01514668_10054.JPEG"
    # (name, arguments, text the message must contain, exit code)
    cases = [
        ("labels-count", ["attn-stats", "--model", model, "--model", model, "--label", "one", "--data",
                          f"filelist:{photos}"], "--label given 1 times for 2 --model"),
        ("unknown-data", ["attn-stats", "--model", model, "--data", "nosuchformat:/x"], "unknown dataset format"),
        ("missing-filelist", ["attn-stats", "--model", model, "--data", f"filelist:{work / 'none'}"], "no such file", 3),
        ("crop-mismatch", ["attn-stats", "--model", model, "--data", f"filelist:{photos}", "--crop", "200"],
         "does not match the model's input size"),
        ("maps-heads-dir", ["maps", "--model", model, "--input", photo, "--heads-dir", work], "no saved heads"),
        ("maps-bad-block", ["maps", "--model", model, "--input", photo, "--block", "12"], "--block 12"),
        ("maps-not-an-image", ["maps", "--model", model, "--input", photos / "labels.txt"], "labels.txt"),
        ("embed-abmilp", ["embed", "--model", model, "--data", f"filelist:{photos}", "--features", "abmilp"],
         "needs --heads-dir"),
        ("embed-abmilp-heads", ["embed", "--model", model, "--data", f"filelist:{photos}", "--features", "abmilp",
                                "--heads-dir", work], "no saved heads"),
        ("embed-too-few", ["embed", "--model", model, "--data", f"filelist:{photos}", "--limit", "2"],
         "at least 3 images"),
    ]
    for name, args, must_contain, *exit_code in cases:
        out = work / name
        result = run_vitprobe(args + ["--out", out, "--quiet"] if args[0] != "maps" else args + ["--out", out])
        one_line_error(report, name, result, must_contain, *exit_code)
        report.check(name, "no output written", not out.exists())


CHECKS = {"real": check_real, "bad-inputs": check_bad_inputs}


def run():
    names = sys.argv[1:] or list(CHECKS)
    report = Report("vitprobe attn-stats: " + ", ".join(names))
    for name in names:
        CHECKS[name](report)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
