#!/usr/bin/env python3
"""Golden test: vitprobe's image preprocessing against torchvision 0.14 + PIL.

For every photo in the ImageNet sample, both interpolations and several resize/crop/normalisation
settings, the C++ helper `image_tool` writes its (3, H, W) tensor as .npy and this script compares it
with transforms.Compose([Resize, CenterCrop, ToTensor, Normalize]) applied to
PIL.Image.open(f).convert('RGB'). A few synthetic files (PNG variants, grey and CMYK JPEG, PPM) made
here with PIL cover the colour conversions the photos do not.

Usage: $VENV/bin/python image_parity.py IMAGE_TOOL OUT_DIR
Exits non-zero when any case exceeds mean |diff| 0.01 or max |diff| 0.1 (normalised units).
"""
import glob
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

MEAN_ABS_LIMIT = 0.01
MAX_ABS_LIMIT = 0.1

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]

# (resize, crop, mean, std); the last one has crop > resize so CenterCrop pads.
SETTINGS = [
    (248, 224, HALF, HALF),
    (256, 224, IMAGENET_MEAN, IMAGENET_STD),
]
PADDING_SETTING = (221, 224, IMAGENET_MEAN, IMAGENET_STD)

INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def shared_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("VITPROBE_SHARED", os.path.join(here, "..", "..", "..", "shared"))


def reference(path, resize, crop, interpolation, mean, std):
    pipeline = transforms.Compose([
        transforms.Resize(resize, interpolation=INTERPOLATIONS[interpolation]),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    with Image.open(path) as image:
        return pipeline(image.convert("RGB")).numpy()


def out_path(out_dir, path, setting, interpolation):
    resize, crop, _, _ = setting
    return os.path.join(out_dir, f"{os.path.basename(path)}.{resize}.{crop}.{interpolation}.npy")


def run_tool_batch(tool, out_dir, jobs):
    """Runs image_tool once for all (path, setting, interpolation) jobs: one process start instead of ~100."""
    triple = lambda values: ",".join(repr(v) for v in values)
    lines = []
    for path, (resize, crop, mean, std), interpolation in jobs:
        out_file = out_path(out_dir, path, (resize, crop, mean, std), interpolation)
        lines.append("\t".join([path, out_file, str(resize), str(crop), interpolation, triple(mean), triple(std)]))
    result = subprocess.run([tool, "--batch"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"image_tool --batch failed ({result.returncode}): {result.stderr.strip()}")


def make_synthetic_images(out_dir, photo):
    """Writes small files in the colour layouts PIL converts specially; returns their paths."""
    with Image.open(photo) as source:
        rgb = source.convert("RGB").resize((160, 120), Image.Resampling.BILINEAR)
    rng = np.random.default_rng(0)
    made = []

    def save(image, name, **options):
        path = os.path.join(out_dir, name)
        image.save(path, **options)
        made.append(path)

    save(rgb.convert("L"), "grey.jpg", quality=90)
    save(rgb.convert("CMYK"), "cmyk.jpg", quality=90)
    save(rgb.convert("RGB"), "subsampled_420.jpg", quality=75, subsampling=2)
    save(rgb.convert("RGB"), "progressive.jpg", quality=85, progressive=True)
    save(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "palette.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (120, 160), dtype=np.uint8)))
    save(rgba, "rgba.png")
    save(rgb.convert("LA"), "grey_alpha.png")
    save(rgb.convert("1"), "bilevel.png")
    save(rgb, "rgb.png")
    save(rgb, "photo.ppm")
    save(rgb.convert("L"), "photo.pgm")
    sixteen = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 3).astype(np.uint16)
    save(Image.fromarray(sixteen), "grey16.png")
    return made


def compare(out_dir, path, setting, interpolation, failures):
    resize, crop, mean, std = setting
    name = os.path.basename(path)
    ours = np.load(out_path(out_dir, path, setting, interpolation))
    expected = reference(path, resize, crop, interpolation, mean, std)
    if ours.shape != expected.shape or ours.dtype != np.float32:
        failures.append(f"{name}: shape/dtype {ours.shape}/{ours.dtype}, expected {expected.shape}/float32")
        print(f"FAIL {failures[-1]}")
        return None
    diff = np.abs(ours.astype(np.float64) - expected.astype(np.float64))
    mean_abs, max_abs = float(diff.mean()), float(diff.max())
    exact = float((diff == 0).mean())
    ok = mean_abs <= MEAN_ABS_LIMIT and max_abs <= MAX_ABS_LIMIT
    print(f"{'ok  ' if ok else 'FAIL'} {name:28s} {interpolation:8s} resize {resize} crop {crop}: "
          f"mean|d| {mean_abs:.3g} max|d| {max_abs:.3g} exact {exact:.4%}")
    if not ok:
        failures.append(f"{name} {interpolation} {resize}/{crop}: mean {mean_abs:.4g} max {max_abs:.4g}")
    return mean_abs, max_abs


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    tool, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(2)
    photos = sorted(glob.glob(os.path.join(shared_dir(), "data", "imagenet-sample", "*.JPEG")))
    if not photos:
        print(f"no *.JPEG under {shared_dir()}/data/imagenet-sample")
        return 1
    synthetic = make_synthetic_images(out_dir, photos[0])

    failures = []
    summary = {name: [] for name in INTERPOLATIONS}
    cases = [(photo, setting) for photo in photos for setting in SETTINGS]
    cases += [(photo, PADDING_SETTING) for photo in photos[:3]]
    cases += [(path, SETTINGS[1]) for path in synthetic]
    run_tool_batch(tool, out_dir, [(path, setting, interpolation)
                                   for path, setting in cases for interpolation in INTERPOLATIONS])
    for path, setting in cases:
        for interpolation in INTERPOLATIONS:
            stats = compare(out_dir, path, setting, interpolation, failures)
            if stats:
                summary[interpolation].append(stats)

    for interpolation, stats in summary.items():
        if stats:
            print(f"{interpolation}: {len(stats)} cases, worst mean|d| {max(s[0] for s in stats):.3g}, "
                  f"worst max|d| {max(s[1] for s in stats):.3g}")
    if failures:
        print(f"{len(failures)} failure(s):")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("image parity: all cases within limits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
