"""Golden test of `vitprobe attn-stats` against statistics computed in PyTorch/numpy from the reference ViTs.

Usage: attn_stats_parity.py [layouts | magnitude-before-layer-scale]   (layouts by default)

layouts: three tiny checkpoints of make_references.py compared in one run, covering every token layout:
  mae               [cls], no registers (the paper's case)
  dinov2-registers  [cls], 4 registers, LayerScale (registers reported apart)
  ijepa             no [cls] (patch statistics only)
magnitude-before-layer-scale: the SimMIM pre-training checkpoint (shared relative position bias, LayerScale
  gammas in [0.05, 0.35]) and the BEiT fine-tuned layout (per-block bias, gammas in [1.5, 3]), whose reference
  is reference_simmim, the official model's layout: the magnitude is |y| / (|x| + 1e-6) with y = attn(norm1(x))
  BEFORE gamma_1 (gmum/beyond_cls models_simmim.py:139-146, main_attention_stats.py:260-262); the ratio after
  LayerScale, |gamma_1 * y| / (|x| + 1e-6), must be reported apart as *_magnitude_after_layer_scale, and the two
  must differ (else the test could not tell them apart).
Inputs: six random 32x32 PNG photos listed in a labels.txt (vitprobe's filelist: data; no resizing happens, so
the input tensors are identical to torchvision's ToTensor + Normalize). The reference runs the models block by
block to get the attention probabilities and the norms of the attention branch (before and after LayerScale)
and of the residual it is added to, then computes every statistic per image and head with the formulas of
issue 5 / gmum/beyond_cls in float64, and the mean and population std over images of each head and of the head
mean. vitprobe runs in fp32 with --batch-size 4, so the accumulation over uneven batches (4 + 2) is exercised
too. Every value of stats.json must match within 1e-5 (relative to the value when it exceeds 1).
"""
import json
import sys

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

from check_reference_self import encoder_from_checkpoint, model_for
from harness import Report, describe_run, load_json, main_guard, run_vitprobe, work_dir
from make_references import write_cases
from reference_simmim import SimMIMViT

CASE_SETS = {"layouts": {"mae": "mae", "dinov2-registers": "dinov2-reg4", "ijepa": "ijepa"},
             "magnitude-before-layer-scale": {"simmim": "simmim", "beit-finetuned": "beit-ft"}}
MIN_LAYER_SCALE_EFFECT = 0.2  # |log(before / after)| of the mean [cls] magnitude, at least, in every block
N_IMAGES = 6
IMAGE_SIZE = 32
TOLERANCE = 1e-5
EPS = 1e-6  # the official constant


def write_photos(folder):
    """Six random RGB PNGs in two classes, listed as 'file label name' in labels.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(7)
    lines = []
    for index in range(N_IMAGES):
        pixels = generator.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        name = f"photo{index}.png"
        Image.fromarray(pixels).save(folder / name)
        lines.append(f"{name} {index % 2} {'even' if index % 2 == 0 else 'odd'}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    return [folder / f"photo{index}.png" for index in range(N_IMAGES)]


def reference_batch(paths):
    transform = T.Compose([T.Resize(IMAGE_SIZE, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(IMAGE_SIZE),
                           T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    return torch.stack([transform(Image.open(path).convert("RGB")) for path in paths])


def attention_and_norms(model, images):
    """Per block: attention (B, H, T, T), branch norms before LayerScale (B, T), residual norms (B, T) and
    branch norms after LayerScale (B, T), all float64 numpy."""
    blocks = []
    with torch.no_grad():
        if isinstance(model, SimMIMViT):  # the official SimMIM layout returns its magnitudes itself
            outputs = model.forward_all(images)
            for attention, norms in zip(outputs["attentions"], outputs["magnitudes"]):
                blocks.append((attention.double().numpy(), norms["branch"].double().numpy(),
                               norms["residual"].double().numpy(), norms["branch_after_layer_scale"].double().numpy()))
            return blocks
        tokens = model.embed(images)
        for block in model.blocks:
            attended, attention = block.attn(block.norm1(tokens))
            branch = block.ls1(attended)
            blocks.append((attention.double().numpy(), attended.norm(dim=-1).double().numpy(),
                           tokens.norm(dim=-1).double().numpy(), branch.norm(dim=-1).double().numpy()))
            tokens = tokens + branch
            tokens = tokens + block.ls2(block.mlp(block.norm2(tokens)))
    return blocks


def image_statistics(attention, branch_norms, residual_norms, class_token, n_registers, scaled_norms=None):
    """Every statistic per image: (B, H) for attention statistics, (B,) for magnitudes; with scaled_norms (the
    branch after LayerScale) also the *_magnitude_after_layer_scale ratios."""
    first_register = 1 if class_token else 0
    first_patch = first_register + n_registers
    to_patches = attention[..., first_patch:]
    patch_sum = to_patches.sum(-1)
    renormalised = to_patches / (patch_sum[..., None] + EPS)
    entropy = -(renormalised * np.log(renormalised + EPS)).sum(-1)
    self_attention = np.diagonal(attention, axis1=2, axis2=3)
    ratio = branch_norms / (residual_norms + EPS)
    out = {
        "pos_self_attention": self_attention[..., first_patch:].mean(-1),
        "pos_self_attention_adj_for_cls": (self_attention[..., first_patch:] / (patch_sum[..., first_patch:] + EPS)).mean(-1),
        "pos_pos_entropy": entropy[..., first_patch:].mean(-1),
        "pos_magnitude": ratio[:, first_patch:].mean(-1),
    }
    if class_token:
        out.update({
            "cls_cls_attention": attention[:, :, 0, 0],
            "cls_cls_attention_adj_for_cls": attention[:, :, 0, 0] / (patch_sum[:, :, 0] + EPS),
            "cls_pos_attention": attention[:, :, 0, first_patch:].mean(-1),
            "pos_cls_attention": attention[:, :, first_patch:, 0].mean(-1),
            "cls_pos_entropy": entropy[:, :, 0],
            "cls_magnitude": ratio[:, 0],
        })
    if n_registers:
        to_registers = attention[..., first_register:first_patch].sum(-1)
        if class_token:
            out["cls_reg_attention"] = to_registers[:, :, 0]
        out["pos_reg_attention"] = to_registers[..., first_patch:].mean(-1)
        out["reg_self_attention"] = self_attention[..., first_register:first_patch].mean(-1)
        out["reg_magnitude"] = ratio[:, first_register:first_patch].mean(-1)
    if scaled_norms is not None:
        scaled = scaled_norms / (residual_norms + EPS)
        out["pos_magnitude_after_layer_scale"] = scaled[:, first_patch:].mean(-1)
        if class_token:
            out["cls_magnitude_after_layer_scale"] = scaled[:, 0]
        if n_registers:
            out["reg_magnitude_after_layer_scale"] = scaled[:, first_register:first_patch].mean(-1)
    return out


def reference_statistics(model, images, class_token, n_registers, layer_scale):
    """name -> {mean, std: [block], head_mean, head_std: [block][head]} over the images."""
    summary = {}
    for block, (attention, branch, residual, scaled) in enumerate(attention_and_norms(model, images)):
        values_of = image_statistics(attention, branch, residual, class_token, n_registers,
                                     scaled if layer_scale else None)
        for name, values in values_of.items():
            entry = summary.setdefault(name, {"mean": [], "std": [], "head_mean": [], "head_std": []})
            head_average = values.mean(1) if values.ndim == 2 else values
            entry["mean"].append(head_average.mean())
            entry["std"].append(head_average.std(ddof=0))
            if values.ndim == 2:
                entry["head_mean"].append(values.mean(0))
                entry["head_std"].append(values.std(0, ddof=0))
    return summary


def compare(report, label, actual, expected):
    if set(actual) != set(expected):
        report.fail(label, f"statistics {sorted(actual)} != expected {sorted(expected)}")
        return
    report.check(label, f"statistics present ({len(expected)})", True)
    worst, where = 0.0, ""
    for name, reference in expected.items():
        for key in ("mean", "std", "head_mean", "head_std"):
            want = np.asarray(reference[key], dtype=np.float64)
            if want.size == 0:
                if key in actual[name]:
                    report.fail(label, f"{name} has {key} but has no heads")
                continue
            got = np.asarray(actual[name].get(key, []), dtype=np.float64)
            if got.shape != want.shape:
                report.fail(label, f"{name}.{key} has shape {got.shape}, expected {want.shape}")
                continue
            error = float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))
            if error >= worst:
                worst, where = error, f"{name}.{key}"
    report.check(label, f"max error vs reference ({where})", worst <= TOLERANCE, f"{worst:.2e}", TOLERANCE)


def check_layer_scale_effect(report, label, statistics):
    """The before- and after-LayerScale [cls] magnitudes differ in every block (the gammas are far from 1)."""
    before = np.asarray(statistics.get("cls_magnitude", {}).get("mean", []), dtype=np.float64)
    after = np.asarray(statistics.get("cls_magnitude_after_layer_scale", {}).get("mean", []), dtype=np.float64)
    if before.size == 0 or before.shape != after.shape:
        report.fail(label, "cls_magnitude and cls_magnitude_after_layer_scale missing or of different lengths")
        return
    effect = float(np.min(np.abs(np.log(before / after))))
    report.check(label, "|log(before / after LayerScale)| in every block", effect >= MIN_LAYER_SCALE_EFFECT,
                 f"{effect:.3f}", f">= {MIN_LAYER_SCALE_EFFECT}")


def run():
    names = sys.argv[1:] or ["layouts"]
    if len(names) != 1 or names[0] not in CASE_SETS:
        print(f"usage: attn_stats_parity.py [{' | '.join(CASE_SETS)}]", file=sys.stderr)
        return 1
    cases_of_set = CASE_SETS[names[0]]
    report = Report(f"attn-stats parity with the PyTorch reference (fp32): {names[0]}")
    work = work_dir(fresh=True)
    cases = write_cases(work / "refs", list(cases_of_set))
    photos = write_photos(work / "photos")
    images = reference_batch(photos)

    args = ["attn-stats", "--data", f"filelist:{work / 'photos'}", "--num-heads", "4", "--dtype", "fp32",
            "--resize", IMAGE_SIZE, "--crop", IMAGE_SIZE, "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
            "--batch-size", "4", "--workers", "2", "--threads", "2", "--quiet", "--json", "--out", work / "out"]
    for case, label in cases_of_set.items():
        args += ["--model", work / "refs" / cases[case]["checkpoint"], "--label", label]
    result = run_vitprobe(args)
    if result.returncode != 0:
        report.fail("run", "attn-stats failed\n" + describe_run(result))
        return report.exit_code()
    summary = load_json(result.stdout, "attn-stats --json output")
    written = json.loads((work / "out" / "stats.json").read_text())
    report.check("run", "--json output equals stats.json", summary == written)
    report.check("run", "images counted", summary["config"]["num_images"] == N_IMAGES, summary["config"]["num_images"], N_IMAGES)

    by_label = {model["label"]: model for model in summary["models"]}
    torch.set_num_threads(2)
    for case, label in cases_of_set.items():
        if label not in by_label:
            report.fail(label, "model missing from stats.json")
            continue
        config = cases[case]["config"]
        model = model_for(cases[case], encoder_from_checkpoint(work / "refs", cases[case]))
        expected = reference_statistics(model, images, config["class_token"], config["num_registers"],
                                        config["layer_scale"])
        entry = by_label[label]
        report.check(label, "num_images", entry["num_images"] == N_IMAGES, entry["num_images"], N_IMAGES)
        report.check(label, "layout", (entry["class_token"], entry["num_registers"]) ==
                     (config["class_token"], config["num_registers"]),
                     f"cls={entry['class_token']} reg={entry['num_registers']}")
        compare(report, label, entry["statistics"], expected)
        if config["layer_scale"] and names[0] == "magnitude-before-layer-scale":
            check_layer_scale_effect(report, label, entry["statistics"])
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
