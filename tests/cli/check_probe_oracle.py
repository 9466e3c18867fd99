"""The dino oracle head (issue 16) end to end: `vitprobe probe --heads cls,dino --oracle-model ...`.

Usage: check_probe_oracle.py   (run through ctest: needs VITPROBE_BIN, VITPROBE_WORK)

The bundled MAE (models/fmnist_mae_vit_d192_p4.safetensors) is the probed encoder, the bundled DINO model the
oracle whose last-block [cls] attention weights the MAE's patches (both 28 px, patch 4: the same 7x7 grid).
  bad inputs: a dino head without --oracle-model, an oracle with another patch grid, an oracle without [cls],
              and --oracle-model without a dino head each fail with exit code 2 and one line naming the problem;
  probe:      Fashion-MNIST, 1000 training / 200 validation images, cached features, 2 epochs: both heads train,
              both above 30% top-1 (chance 10%: 10 classes); the run config and the dino head's config.json record the oracle
              (absolute path, SHA-256); only the dino head's config has one;
  cache key:  `extract --heads dino` with the same oracle reuses the probe's cache entries, with another oracle
              (the MAE itself) it makes new ones;
  evaluate:   re-scores the dino head with the oracle its config names (top-1 as when trained); refuses, in one
              line, once that file has changed, and once it is gone;
  maps:       --heads-dir of a run with attn-mean and dino draws attn-mean and skips dino with a note.
"""
import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, describe_run, load_json, main_guard, run_vitprobe, work_dir  # noqa: E402
from reference_vit import ReferenceViT, VitConfig, write_safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAE = ROOT / "models" / "fmnist_mae_vit_d192_p4.safetensors"
DINO = ROOT / "models" / "fmnist_dino_vit_d192_p4.safetensors"
FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
CHANCE = 10.0
ABOVE_CHANCE = 30.0


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tiny_oracle(path, **config):
    """A random 28 px ViT checkpoint (timm names) that the oracle checks must refuse."""
    model = ReferenceViT(VitConfig(img_size=28, in_chans=3, embed_dim=64, depth=1, num_heads=2, **config))
    write_safetensors(path, {k: v.detach() for k, v in model.state_dict().items()}, metadata={"num_heads": "2"})


def probe_args(cache, out, heads, oracle, extra=()):
    args = ["probe", "--model", MAE, "--data", "fashion-mnist", "--limit", "1000", "--val-limit", "200",
            "--heads", heads, "--features", "cached", "--epochs", "2", "--cache-dir", cache, "--threads", "1",
            # 2 epochs of 18 LARS steps: no warm-up, and the large base rates a small batch needs (check_probe.py).
            # Fewer steps leave dino at chance: its feature is ~1/N the size of a weighted mean, and BatchNorm's
            # running variance (starting at 1, momentum 0.1) needs ~30 steps to forget its start.
            "--batch", "50", "--warmup-epochs", "0", "--lrs", "10,30,100,300", "--quiet", "--out", out, "--json",
            *extra]
    return args + (["--oracle-model", oracle] if oracle else [])


def run_json(report, subject, args):
    result = run_vitprobe(args, timeout=600)
    if result.returncode != 0:
        report.fail(subject, f"vitprobe failed\n{describe_run(result)}")
        return None
    return load_json(result.stdout, f"{subject} output")


def check_refused(report, subject, args, expected):
    result = run_vitprobe(args)
    lines = result.stderr.strip().splitlines()
    report.check(subject, "exit 2, one line naming the problem",
                 result.returncode == 2 and len(lines) == 1 and expected in result.stderr,
                 f"{result.returncode}: {result.stderr.strip()[:160]}")


def check_bad_inputs(report, work):
    cache, out = work / "cache", work / "refused"
    tiny_oracle(work / "patch7.safetensors", patch_size=7)  # a 4x4 grid against the MAE's 7x7
    tiny_oracle(work / "no_cls.safetensors", patch_size=4, class_token=False)
    check_refused(report, "dino without --oracle-model", probe_args(cache, out, "cls,dino", None), "needs --oracle-model")
    check_refused(report, "oracle grid 4x4", probe_args(cache, out, "cls,dino", work / "patch7.safetensors"),
                  "patch grid 4x4 (28 px, patch 7) differs from the encoder's 7x7 (28 px, patch 4)")
    check_refused(report, "oracle without [cls]", probe_args(cache, out, "cls,dino", work / "no_cls.safetensors"),
                  "the oracle has no [cls] token")
    check_refused(report, "--oracle-model without dino", probe_args(cache, out, "cls", DINO), "only the dino head")
    check_refused(report, "extract: dino without --oracle-model",
                  ["extract", "--model", MAE, "--data", "fashion-mnist", "--heads", "dino", "--cache-dir", cache],
                  "needs --oracle-model")
    report.check("refusals", "nothing extracted", not cache.exists() or not any(cache.iterdir()))


def head(results, name):
    return next(h for h in results["heads"] if h["head"] == name)


def main():
    report = Report("probe --heads cls,dino --oracle-model")
    work = work_dir(fresh=True)
    check_bad_inputs(report, work)

    oracle = work / "oracle" / "dino.safetensors"  # a copy: evaluate's refusals change and remove it below
    oracle.parent.mkdir()
    shutil.copy(DINO, oracle)
    cache, out = work / "cache", work / "run"
    results = run_json(report, "probe", probe_args(cache, out, "cls,dino", oracle))
    if results is None:
        return report.exit_code()
    for name in ("cls", "dino"):
        entry = head(results, name)
        report.check(name, "val top-1 above chance (%)", entry["top1"] > ABOVE_CHANCE, f"{entry['top1']:.2f}",
                     f"> {ABOVE_CHANCE} (chance {CHANCE})")
    dino_entry = head(results, "dino")
    report.check("dino", "trainable parameters = linear only", dino_entry["trainable_parameters"] == 192 * 10 + 10,
                 dino_entry["trainable_parameters"])
    expected_oracle = {"model": str(oracle.resolve()), "model_sha256": sha256(DINO)}
    report.check("probe", "run config records the oracle", results["config"].get("oracle") == expected_oracle,
                 results["config"].get("oracle"))
    dino_config = json.loads((out / dino_entry["saved"] / "config.json").read_text())
    cls_config = json.loads((out / head(results, "cls")["saved"] / "config.json").read_text())
    report.check("probe", "dino head config records the oracle; cls's has none",
                 dino_config.get("oracle") == expected_oracle and "oracle" not in cls_config, dino_config.get("oracle"))

    # The cache key: the same oracle reuses the probe's entries, another oracle (the MAE itself) does not.
    extract = ["extract", "--model", MAE, "--data", "fashion-mnist", "--limit", "1000", "--val-limit", "200",
               "--heads", "dino", "--cache-dir", cache, "--threads", "1", "--quiet", "--json", "--oracle-model"]
    same = run_json(report, "extract, same oracle", extract + [oracle])
    if same is not None:
        report.check("cache key", "same oracle: the probe's entries",
                     same["splits"]["train"]["folder"] == results["config"]["cache"]["train"] and
                     same["splits"]["val"]["folder"] == results["config"]["cache"]["val"], same["splits"]["train"]["folder"])
    other = run_json(report, "extract, other oracle", extract + [MAE])
    if other is not None:
        report.check("cache key", "another oracle: new entries",
                     other["splits"]["train"]["folder"] != results["config"]["cache"]["train"] and
                     other["splits"]["val"]["folder"] != results["config"]["cache"]["val"], other["splits"]["train"]["folder"])

    evaluate = ["evaluate", "--heads", out / dino_entry["saved"], "--model", MAE, "--data", "fashion-mnist",
                "--limit", "200", "--threads", "1", "--quiet", "--json"]
    summary = run_json(report, "evaluate", evaluate)
    if summary is not None:
        scored = summary["heads"][0]
        report.check("evaluate", "dino top-1 as when trained (%)", abs(scored["top1"] - dino_entry["top1"]) <= 3.0,
                     f"{scored['top1']:.2f} vs {dino_entry['top1']:.2f}", "+-3")

    # maps: attn-mean drawn, dino skipped with a note.
    with gzip.open(FASHION) as f:
        image = np.frombuffer(f.read(), dtype=np.uint8, offset=16, count=28 * 28).reshape(28, 28)
    Image.fromarray(image).convert("RGB").save(work / "item.png")
    small = work / "run-attn"
    run_json(report, "probe attn-mean,dino",
             ["probe", "--model", MAE, "--data", "fashion-mnist", "--limit", "300", "--val-limit", "100",
              "--heads", "attn-mean,dino", "--features", "cached", "--epochs", "1", "--lrs", "1", "--cache-dir", cache,
              "--threads", "1", "--quiet", "--out", small, "--json", "--oracle-model", oracle])
    maps = run_json(report, "maps", ["maps", "--model", MAE, "--input", work / "item.png", "--heads-dir", small,
                                     "--out", work / "maps", "--threads", "1", "--json"])
    if maps is not None:
        drawn = [entry["head"] for entry in maps.get("pooling_heads", [])]
        notes = maps.get("notes", [])
        report.check("maps", "attn-mean drawn, dino skipped with a note",
                     drawn == ["attn-mean"] and len(notes) == 1 and "'dino' skipped" in notes[0], f"{drawn} {notes}")

    # evaluate refuses an oracle that changed since training, then one that is gone.
    with open(oracle, "ab") as f:
        f.write(b"\0")
    check_refused(report, "evaluate, oracle changed", evaluate, "has changed since the dino head was trained")
    oracle.unlink()
    check_refused(report, "evaluate, oracle gone", evaluate, "is gone")
    return report.exit_code()


if __name__ == "__main__":
    main_guard(main)
