"""`vitprobe maps --heads-dir` and `vitprobe embed --features abmilp` on heads trained by `vitprobe probe`.

A short probe run (bundled MAE encoder, Fashion-MNIST, heads cls, abmilp, ep:4) saves its heads; then
  - maps draws the pooling weights of abmilp (1 map) and ep:4 (4 maps) beside the [cls] attention (cls is
    skipped: it weights no patches); the saved maps have the right shapes and each sums to 1 over the 7x7
    patches; the abmilp map equals an independent numpy AbMILP (softmax of the saved scorer over the block-5
    patch tokens that `vitprobe forward` writes, without the final LayerNorm: the probe's default, as the official
    beyond_cls code) within 1e-5, and a head trained with --final-norm on equals the same AbMILP over the
    final-normed tokens;
  - embed --features abmilp embeds 192-dimensional AbMILP features and names the head it used.
"""
import gzip
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, describe_run, main_guard, read_safetensors, run_vitprobe, work_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAE = ROOT / "models" / "fmnist_mae_vit_d192_p4.safetensors"
DINO = ROOT / "models" / "fmnist_dino_vit_d192_p4.safetensors"
FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
TOLERANCE = 1e-5


def run(report, name, args):
    result = run_vitprobe(args)
    report.check(name, "exit code 0", result.returncode == 0, result.returncode)
    if result.returncode != 0:
        report.fail(name, describe_run(result))
    return result


def main():
    report = Report("vitprobe maps --heads-dir / embed --features abmilp")
    work = work_dir("pooling", fresh=True)
    # Three test images as PNG files.
    with gzip.open(FASHION) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    inputs = []
    for i in range(3):
        path = work / f"item{i}.png"
        Image.fromarray(images[i]).convert("RGB").save(path)
        inputs.append(str(path))

    probe_dir = work / "probe"
    run(report, "probe", ["probe", "--model", MAE, "--data", "fashion-mnist", "--limit", "300", "--val-limit", "100",
                          "--heads", "cls,abmilp,ep:4,attn-mean", "--features", "cached", "--epochs", "2", "--warmup-epochs", "1",
                          "--lrs", "3", "--batch", "50", "--cache-dir", work / "cache", "--quiet", "--out", probe_dir])
    maps_dir = work / "maps"
    # --block 0: the [cls] attention tiles come from block 0, the heads' maps from their own block 5.
    # --dtype fp32: maps defaults to bf16 on CPUs with native bf16, and the maps are compared with an fp32 numpy
    # reference below.
    result = run(report, "maps", ["maps", "--model", MAE, "--dtype", "fp32", "--input", *inputs, "--heads-dir", probe_dir, "--block", "0",
                                  "--out", maps_dir])
    if result.returncode != 0:
        return report.exit_code()
    summary = json.loads((maps_dir / "maps.json").read_text())
    heads = {entry["head"]: entry for entry in summary.get("pooling_heads", [])}
    report.check("maps", "pooling heads drawn (cls skipped)", sorted(heads) == ["abmilp", "attn-mean", "ep:4"],
                 sorted(heads))
    report.check("maps", "no mismatch notes (same checkpoint and preprocessing)", summary.get("notes") == [],
                 summary.get("notes"))
    for head, n_maps in (("abmilp", 1), ("ep:4", 4), ("attn-mean", 1)):
        if head not in heads:
            continue
        maps = np.load(maps_dir / heads[head]["file"])
        report.check(head, "saved maps shape (3, maps, 7, 7)", maps.shape == (3, n_maps, 7, 7), maps.shape)
        sums = maps.reshape(3, n_maps, -1).sum(-1)
        report.check(head, "each map sums to 1", np.allclose(sums, 1, atol=1e-5), float(np.abs(sums - 1).max()), 1e-5)
        report.check(head, "per-image entropies in maps.json",
                     all(len(entry["pooling"][list(heads).index(head)]["entropy"]) == n_maps for entry in summary["images"]))
    # Heads drawn on another checkpoint of the same layout: allowed, but maps.json says so.
    other_dir = work / "maps-other"
    run(report, "maps-other-model", ["maps", "--model", DINO, "--input", inputs[0], "--heads-dir", probe_dir,
                                     "--out", other_dir])
    if (other_dir / "maps.json").exists():
        notes = json.loads((other_dir / "maps.json").read_text()).get("notes", [])
        # (the DINO checkpoint's metadata also has other normalisation statistics: a second note per head)
        checkpoint_notes = [note for note in notes if "another checkpoint" in note]
        report.check("maps-other-model", "a note per head names the other checkpoint", len(checkpoint_notes) == 3,
                     len(checkpoint_notes), 3)
    plain_dir = work / "maps-plain"
    run(report, "maps-plain", ["maps", "--model", MAE, "--input", inputs[0], "--out", plain_dir])
    with_heads = Image.open(maps_dir / "item0.png").size
    without = Image.open(plain_dir / "item0.png").size
    report.check("maps", "the grid has more tiles with --heads-dir", with_heads[0] * with_heads[1] > without[0] * without[1],
                 f"{with_heads} vs {without}")

    # Independent AbMILP map: softmax(patch tokens @ w + b) over the block-5 patch tokens as the head saw them:
    # raw by default (beyond_cls models_vit.py never applies the final norm to probed tokens), normed with
    # --final-norm on.
    normed_dir = work / "probe-normed"
    run(report, "probe --final-norm on", ["probe", "--model", MAE, "--data", "fashion-mnist", "--limit", "300",
                                          "--val-limit", "100", "--heads", "abmilp", "--features", "cached", "--epochs", "2",
                                          "--warmup-epochs", "1", "--lrs", "3", "--batch", "50", "--final-norm", "on",
                                          "--cache-dir", work / "cache", "--quiet", "--out", normed_dir])
    normed_maps = work / "maps-normed"
    run(report, "maps (normed head)", ["maps", "--model", MAE, "--dtype", "fp32", "--input", *inputs, "--heads-dir", normed_dir,
                                       "--out", normed_maps])
    forward_dir = work / "forward"
    run(report, "forward", ["forward", "--model", MAE, "--input", *inputs, "--blocks", "5", "--out", forward_dir])
    comparable = report.check("abmilp", "head drawn and forward's block-5 tokens written",
                              "abmilp" in heads and (forward_dir / "block5.npy").exists())
    if comparable:
        tokens = np.load(forward_dir / "block5.npy").astype(np.float64)
        encoder = read_safetensors(MAE)
        mean = tokens.mean(-1, keepdims=True)
        var = tokens.var(-1, keepdims=True)
        normed = (tokens - mean) / np.sqrt(var + 1e-6) * encoder["norm.weight"] + encoder["norm.bias"]

        def abmilp_map(folder, seen):
            head = read_safetensors(folder / "heads" / "abmilp" / "head.safetensors")
            scores = seen[:, 1:] @ head["pool.scorer.0.weight"].T + head["pool.scorer.0.bias"]  # (3, 49, 1)
            weights = np.exp(scores - scores.max(1, keepdims=True))
            return (weights / weights.sum(1, keepdims=True))[..., 0]

        config = json.loads((probe_dir / "heads" / "abmilp" / "config.json").read_text())
        report.check("abmilp", "default head config: final norm off", config["encoder"]["final_norm"] is False,
                     config["encoder"]["final_norm"])
        weights = abmilp_map(probe_dir, tokens)
        drawn = np.load(maps_dir / heads["abmilp"]["file"]).reshape(3, -1)
        difference = float(np.abs(drawn - weights).max())
        report.check("abmilp", "map equals numpy AbMILP on forward's raw tokens", difference <= TOLERANCE,
                     f"{difference:.2g}", TOLERANCE)
        report.check("abmilp", "map is not uniform (the head learned something)", float(weights.std()) > 1e-4,
                     f"{float(weights.std()):.3g}")
        normed_summary = maps_dir.parent / "maps-normed" / "maps.json"
        if normed_summary.exists():
            entry = next(e for e in json.loads(normed_summary.read_text())["pooling_heads"] if e["head"] == "abmilp")
            drawn = np.load(normed_maps / entry["file"]).reshape(3, -1)
            difference = float(np.abs(drawn - abmilp_map(normed_dir, normed)).max())
            report.check("abmilp --final-norm on", "map equals numpy AbMILP on final-normed tokens",
                         difference <= TOLERANCE, f"{difference:.2g}", TOLERANCE)

    embed_dir = work / "embed"
    result = run(report, "embed", ["embed", "--model", MAE, "--data", "fashion-mnist", "--split", "val", "--limit", "60",
                                   "--features", "abmilp", "--heads-dir", probe_dir, "--quiet", "--out", embed_dir])
    if result.returncode == 0:
        embed = json.loads((embed_dir / "embed.json").read_text())
        report.check("embed", "feature dims 192", embed["feature_dims"] == 192, embed["feature_dims"])
        report.check("embed", "names the abmilp head", (embed.get("pooling_head") or {}).get("head") == "abmilp",
                     embed.get("pooling_head"))
    return report.exit_code()


if __name__ == "__main__":
    main_guard(main)
