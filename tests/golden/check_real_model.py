"""Golden test on real weights: the ImageNet ViT-Tiny/16 in ../shared classifies the 17 sample photos.

Usage: check_real_model.py images|tensor

Both parts compute a PyTorch reference: the safetensors loaded with reference_vit's own reader into
reference_vit (dim 192, depth 12, 3 heads), photos preprocessed by torchvision exactly as the model was
trained (Resize(248, bicubic), CenterCrop(224), ToTensor, Normalize(0.5, 0.5)); it must get top-1 17/17.
- images: vitprobe decodes and preprocesses the photos itself (--resize 248 --crop 224 --mean/--std 0.5);
  it must get 17/17 with the right names in forward.json, and its logits must agree with the reference
  within 1e-2 (its resize and JPEG decoding may differ slightly from PIL's).
- tensor: vitprobe gets the reference's preprocessed batch as input.npy, so only the model is compared,
  tightly (fp32: the reference itself is within 2e-5 of an fp64 run on logits, 3e-4 on tokens).
"""
import sys

import numpy as np
import torch
import torch.utils.mkldnn
import torchvision.transforms as T
from PIL import Image

from harness import (Report, describe_run, load_json, main_guard, max_abs_diff, run_vitprobe, shared_dir,
                     work_dir)
from reference_vit import ReferenceViT, VitConfig, read_safetensors

IMAGE_LOGITS_TOLERANCE = 1e-2
TENSOR_LOGITS_TOLERANCE = 1e-3
TENSOR_TOKENS_TOLERANCE = 5e-3
MODEL_NAME = "vit_tiny_patch16_224.in1k.safetensors"
VIT_TINY = VitConfig(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3, num_classes=1000)
TOPK = 5


def sample_set(shared):
    """[(photo path, class index)] in labels.txt order, and the 1000 class names."""
    folder = shared / "data" / "imagenet-sample"
    samples = []
    for line in (folder / "labels.txt").read_text().splitlines():
        if line.strip():
            name, index, _ = line.split()
            samples.append((folder / name, int(index)))
    names = (folder / "imagenet_class_names.txt").read_text().splitlines()
    return samples, names


def reference_outputs(model_path, samples):
    """Preprocessed batch, reference logits and tokens.

    Debian's torch multiplies with the netlib reference BLAS (~10x slower than oneDNN here), so the
    reference runs its Linear/Conv layers through oneDNN (torch.utils.mkldnn); this changes the result by
    about 1e-5, far below the tolerances.
    """
    transform = T.Compose([T.Resize(248, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                           T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    batch = torch.stack([transform(Image.open(path).convert("RGB")) for path, _ in samples])
    model = ReferenceViT(VIT_TINY).eval()
    model.load_state_dict(read_safetensors(model_path), strict=True)
    model = torch.utils.mkldnn.to_mkldnn(model)
    with torch.no_grad():
        outputs = model.forward_all(batch)
    return batch.numpy(), outputs["logits"].numpy(), outputs["tokens"].numpy()


def count_correct(logits, samples):
    return int((logits.argmax(1) == np.array([index for _, index in samples])).sum())


def run_forward(report, part, inputs, out_dir, extra):
    args = ["forward", "--model", shared_dir() / "models" / MODEL_NAME, "--out", out_dir, *extra]
    for path in inputs:
        args += ["--input", path]
    result = run_vitprobe(args)
    ok = report.check(part, "forward exit code", result.returncode == 0, result.returncode, 0)
    if not ok:
        report.fail(part, "vitprobe forward failed\n" + describe_run(result))
    return ok


def load_logits(report, part, out_dir, count):
    path = out_dir / "logits.npy"
    if not path.exists():
        report.fail(part, "logits.npy was not written")
        return None
    logits = np.load(path)
    ok = report.check(part, "logits.npy float32 (17, 1000)", logits.dtype == np.float32 and logits.shape == (count, 1000),
                      f"{logits.dtype} {logits.shape}")
    return logits if ok else None


def check_top_names(report, part, out_dir, samples, class_names):
    info = load_json((out_dir / "forward.json").read_text(), "forward.json")
    top = info.get("top") or []
    wrong = []
    for (path, index), entries in zip(samples, top):
        names = [entry.get("name") for entry in entries]
        if len(entries) != TOPK or names[0] != class_names[index]:
            wrong.append(f"{path.name}: {names[:1]} (want {class_names[index]!r}, {TOPK} entries)")
    ok = len(top) == len(samples) and not wrong
    report.check(part, "forward.json top-1 names", ok, "; ".join(wrong[:3]) or f"{len(top)} images ok")


def check_images(report, samples, class_names, reference_logits):
    part = "images"
    out_dir = work_dir("out_images", fresh=True)
    extra = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--resize", "248", "--crop", "224",
             "--class-names", shared_dir() / "data" / "imagenet-sample" / "imagenet_class_names.txt"]
    if not run_forward(report, part, [path for path, _ in samples], out_dir, extra):
        return
    logits = load_logits(report, part, out_dir, len(samples))
    if logits is None:
        return
    correct = count_correct(logits, samples)
    report.check(part, "vitprobe top-1", correct == len(samples), f"{correct}/{len(samples)}", "17/17")
    diff = max_abs_diff(logits, reference_logits)
    report.check(part, "logits vs reference (own preprocessing)", diff <= IMAGE_LOGITS_TOLERANCE, f"{diff:.2e}",
                 IMAGE_LOGITS_TOLERANCE)
    check_top_names(report, part, out_dir, samples, class_names)


def check_tensor(report, samples, batch, reference_logits, reference_tokens):
    part = "tensor"
    folder = work_dir("tensor_input", fresh=True)
    np.save(folder / "batch.npy", batch.astype(np.float32))
    out_dir = work_dir("out_tensor", fresh=True)
    if not run_forward(report, part, [folder / "batch.npy"], out_dir, []):
        return
    logits = load_logits(report, part, out_dir, len(samples))
    if logits is None:
        return
    correct = count_correct(logits, samples)
    report.check(part, "vitprobe top-1", correct == len(samples), f"{correct}/{len(samples)}", "17/17")
    diff = max_abs_diff(logits, reference_logits)
    report.check(part, "logits vs reference (same input)", diff <= TENSOR_LOGITS_TOLERANCE, f"{diff:.2e}",
                 TENSOR_LOGITS_TOLERANCE)
    tokens = np.load(out_dir / "tokens.npy")
    ok = tokens.shape == reference_tokens.shape
    diff = max_abs_diff(tokens, reference_tokens) if ok else float("inf")
    report.check(part, "tokens vs reference (same input)", diff <= TENSOR_TOKENS_TOLERANCE,
                 f"{diff:.2e} {tokens.shape}", TENSOR_TOKENS_TOLERANCE)


def run():
    parts = sys.argv[1:] or ["images", "tensor"]
    if any(part not in ("images", "tensor") for part in parts):
        print("usage: check_real_model.py [images|tensor]...", file=sys.stderr)
        return 1
    torch.set_num_threads(2)
    report = Report("real ViT-Tiny/16 on the ImageNet sample")
    samples, class_names = sample_set(shared_dir())
    batch, reference_logits, reference_tokens = reference_outputs(shared_dir() / "models" / MODEL_NAME, samples)
    correct = count_correct(reference_logits, samples)
    report.check("reference", "PyTorch reference top-1", correct == len(samples), f"{correct}/{len(samples)}", "17/17")
    if "images" in parts:
        check_images(report, samples, class_names, reference_logits)
    if "tensor" in parts:
        check_tensor(report, samples, batch, reference_logits, reference_tokens)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
