"""End-to-end checks of `vitprobe probe`, `evaluate` and `extract` on real data.

Usage: check_probe.py CASE   (run through ctest: needs VITPROBE_BIN, VITPROBE_SHARED, VITPROBE_WORK)

e2e:        2000 Fashion-MNIST training images, 1000 validation images, the real ViT-Tiny/16 of ../shared at
            64 px (pos_embed resampled to 4x4), cached features. Heads cls, mean, abmilp and knn, LARS at 3 learning
            rates (LARS scales each step by 0.001 |w| / |g|, so a batch of 128 needs the large base rates that
            MAE's batch of 16384 reaches by scaling): the training loss falls and every head is far above chance
            (10 classes). One compute thread: the heads' small operations gain nothing from two on a shared
            machine. Then: the cache is
            reused, `evaluate` re-scores the saved heads, a run stopped after 2 epochs and resumed equals the
            uninterrupted run, --resume with other options is refused, --seeds reports mean and std, and
            `extract` finds the entries the probe stored; a short online run (encoder every batch) completes.
bad-input:  unknown heads and options fail with exit code 2 and one line naming the value.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "golden"))
from harness import Report, describe_run, load_json, main_guard, run_vitprobe, shared_dir, work_dir  # noqa: E402

CHANCE = 10.0
FAR_ABOVE_CHANCE = 50.0


def model_path():
    return shared_dir() / "models" / "vit_tiny_patch16_224.in1k.safetensors"


def common_args(cache_dir, limit=2000, val_limit=1000):
    return ["--model", model_path(), "--data", "fashion-mnist", "--limit", str(limit), "--val-limit", str(val_limit),
            "--img-size", "64", "--resize", "64", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
            "--cache-dir", cache_dir, "--threads", "1", "--workers", "2", "--quiet"]


def probe_args(cache_dir, out, heads="cls,mean,abmilp,knn", epochs=12, extra=()):
    return (["probe"] + common_args(cache_dir) +
            ["--heads", heads, "--features", "cached", "--lrs", "10,30,100", "--epochs", str(epochs),
             "--warmup-epochs", "2", "--batch", "128", "--out", out, "--json"] + list(extra))


def run_json(report, subject, args, timeout=600):
    result = run_vitprobe(args, timeout=timeout)
    if result.returncode != 0:
        report.fail(subject, f"vitprobe failed\n{describe_run(result)}")
        return None
    return load_json(result.stdout, f"{subject} output")


def head(results, name):
    return next(h for h in results["heads"] if h["head"] == name)


def check_e2e(report):
    work = work_dir(fresh=True)
    cache = work / "cache"
    out = work / "run"
    results = run_json(report, "probe", probe_args(cache, out))
    if results is None:
        return
    report.check("probe", "results.json, results.md written",
                 (out / "results.json").is_file() and (out / "results.md").is_file())
    report.check("probe", "no resume state left", not (out / "resume").exists())
    for name in ("cls", "mean", "abmilp"):
        entry = head(results, name)
        best = next(r for r in entry["runs"] if r["base_lr"] == entry["best_lr"])
        report.check(name, "train loss falls (first -> last epoch)", best["train_loss"][-1] < best["train_loss"][0],
                     f"{best['train_loss'][0]:.3f} -> {best['train_loss'][-1]:.3f}")
        report.check(name, "val top-1 far above chance (%)", entry["top1"] > FAR_ABOVE_CHANCE,
                     f"{entry['top1']:.2f} (best lr {entry['best_lr']:g})", f"> {FAR_ABOVE_CHANCE}")
        report.check(name, "one run per lr, val every epoch",
                     len(entry["runs"]) == 3 and all(len(r["val"]) == 12 for r in entry["runs"]))
        folder = out / entry["saved"]
        report.check(name, "head saved (safetensors + config)",
                     (folder / "head.safetensors").is_file() and (folder / "config.json").is_file())
    knn = head(results, "knn")
    report.check("knn", "top-1 far above chance (%)", knn["top1"] > FAR_ABOVE_CHANCE, f"{knn['top1']:.2f} (k={knn['best_k']})")
    abmilp_params = head(results, "abmilp")["trainable_parameters"]
    report.check("abmilp", "trainable parameters = scorer + linear", abmilp_params == 192 + 1 + 10 * 192 + 10, abmilp_params)
    extract_seconds = results["timing"]["extract_seconds"]
    report.check("probe", "extraction time recorded", extract_seconds > 0, f"{extract_seconds:.1f} s")

    # Same data, model, block and transform: the second run reads the cache.
    second = run_json(report, "cache reuse", probe_args(cache, work / "run-cls", heads="cls", epochs=2))
    if second is not None:
        report.check("cache reuse", "no new extraction (s)", second["timing"]["extract_seconds"] < 0.25 * extract_seconds,
                     f"{second['timing']['extract_seconds']:.2f}", f"< {0.25 * extract_seconds:.2f}")
        entries = [p for p in cache.iterdir() if p.is_dir()]
        report.check("cache reuse", "one entry per split", len(entries) == 2, len(entries))

    # extract finds the same cache entries (nothing to compute).
    extracted = run_json(report, "extract", ["extract"] + common_args(cache) + ["--heads", "cls,mean,abmilp,knn", "--json"])
    if extracted is not None:
        report.check("extract", "reuses the probe's cache entries",
                     extracted["splits"]["train"]["folder"] == results["config"]["cache"]["train"] and
                     extracted["splits"]["val"]["folder"] == results["config"]["cache"]["val"] and
                     extracted["splits"]["train"]["items"] == 2000,
                     f"{extracted['splits']['train']['seconds']:.2f} s")

    # evaluate re-scores the saved heads online (fp32 tokens; training read bf16 features).
    summary = run_json(report, "evaluate",
                       ["evaluate", "--heads", out, "--model", model_path(), "--data", "fashion-mnist",
                        "--limit", "1000", "--threads", "1", "--quiet", "--json"])
    if summary is not None:
        for entry in summary["heads"]:
            trained = head(results, entry["head"])["top1"]
            report.check("evaluate", f"{entry['head']} top-1 as when trained (%)", abs(entry["top1"] - trained) < 1.5,
                         f"{entry['top1']:.2f} vs {trained:.2f}", "+-1.5")
        report.check("evaluate", "every trained head scored", len(summary["heads"]) == 3, len(summary["heads"]))

    # Stopped after 2 epochs, then --resume: the same numbers as without the interruption.
    resumed_dir = work / "resumed"
    heads = "mean,abmilp"
    straight = run_json(report, "resume", probe_args(cache, work / "straight", heads=heads, epochs=4))
    stopped = run_vitprobe(probe_args(cache, resumed_dir, heads=heads, epochs=4, extra=["--stop-after-epochs", "2"]))
    report.check("resume", "stopped run exits 0, leaves no results", stopped.returncode == 0 and
                 not (resumed_dir / "results.json").exists() and (resumed_dir / "resume" / "state.json").is_file(),
                 stopped.returncode)
    other = run_vitprobe(probe_args(cache, resumed_dir, heads=heads, epochs=5, extra=["--resume"]))
    report.check("resume", "other options refused (exit 2)", other.returncode == 2 and "epochs" in other.stderr,
                 f"{other.returncode}: {other.stderr.strip()[:100]}")
    resumed = run_json(report, "resume", probe_args(cache, resumed_dir, heads=heads, epochs=4, extra=["--resume"]))
    if straight is not None and resumed is not None:
        for name in heads.split(","):
            a, b = head(straight, name), head(resumed, name)
            same = all(x["train_loss"] == y["train_loss"] and x["val"] == y["val"] for x, y in zip(a["runs"], b["runs"]))
            report.check("resume", f"{name}: losses and accuracies equal the uninterrupted run", same)

    # Online features: the encoder runs on every batch with the train transform.
    online = run_json(report, "online", ["probe"] + common_args(cache, limit=256, val_limit=100) +
                      ["--heads", "cls,abmilp", "--features", "online", "--blr", "30", "--epochs", "1",
                       "--warmup-epochs", "0", "--batch", "64", "--out", work / "online", "--json"])
    if online is not None:
        entry = head(online, "abmilp")
        report.check("online", "one epoch trained and evaluated, no extraction",
                     online["timing"]["extract_seconds"] == 0 and len(entry["runs"][0]["val"]) == 1 and
                     online["config"]["train_items"] == 256 and "cache" not in online["config"],
                     f"abmilp top-1 {entry['top1']:.1f}")

    # Seeds: mean and standard deviation over runs.
    seeds = run_json(report, "seeds", probe_args(cache, work / "seeds", heads="cls", epochs=2, extra=["--seeds", "0,1"]))
    if seeds is not None:
        entry = head(seeds, "cls")
        report.check("seeds", "mean and std over 2 seeds", seeds["seeds"] == [0, 1] and len(entry["top1_per_seed"]) == 2
                     and "top1_std" in entry, f"{entry['top1']:.2f} +- {entry['top1_std']:.2f}")
        report.check("seeds", "per-seed folders", all((work / "seeds" / f"seed-{s}" / "results.json").is_file()
                                                      for s in (0, 1)))


def check_bad_input(report):
    work = work_dir(fresh=True)
    cases = [
        ("unknown head", ["--heads", "cls,gem"], "unknown head 'gem'"),
        ("bad abmilp option", ["--heads", "abmilp:depth=0"], "'0'"),
        ("ep without size", ["--heads", "ep"], "needs a size"),
    ]
    for subject, extra, expected in cases:
        result = run_vitprobe(["probe", "--model", model_path(), "--data", "fashion-mnist", "--out", work / "x"] + extra)
        lines = result.stderr.strip().splitlines()
        report.check(subject, "exit 2, one line naming the value",
                     result.returncode == 2 and len(lines) == 1 and expected in result.stderr,
                     f"{result.returncode}: {result.stderr.strip()[:120]}")
    result = run_vitprobe(["evaluate", "--heads", work, "--model", model_path(), "--data", "fashion-mnist"])
    report.check("evaluate without heads", "exit 2", result.returncode == 2 and "no saved heads" in result.stderr,
                 f"{result.returncode}: {result.stderr.strip()[:120]}")
    result = run_vitprobe(["probe", "--help"])
    report.check("probe --help", "lists heads and defaults", result.returncode == 0 and "abmilp" in result.stdout
                 and "--blr" in result.stdout and "90" in result.stdout)


CASES = {"e2e": check_e2e, "bad-input": check_bad_input}


def main(argv):
    if len(argv) != 2 or argv[1] not in CASES:
        print(f"usage: check_probe.py {{{','.join(CASES)}}}", file=sys.stderr)
        return 2
    report = Report(f"probe {argv[1]}")
    try:
        CASES[argv[1]](report)
    except Exception as error:  # one table with whatever was checked, then the error
        report.fail(argv[1], f"{type(error).__name__}: {error}")
    return report.exit_code()


if __name__ == "__main__":
    main_guard(lambda: main(sys.argv))
