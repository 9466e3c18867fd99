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
selection:  fair selection (issue 16) on the bundled MAE encoder, 5000 / 1000 Fashion-MNIST images, cached
            features, LARS over 0.3 .. 1000: 10% of the training split is held out (stratified); each pair's
            chosen epoch is the first with its best held-out top-1 and the reported top-1 is validation's there;
            each head's rate is the one with the best held-out top-1; k-NN's k likewise; no head's rate is at
            the grid's edge. A second run with --lrs cut to the grid's lower half flags exactly the heads whose
            chosen rate is now its top, in results.json and results.md and with one stderr line each.
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


MAE = Path(__file__).resolve().parents[2] / "models" / "fmnist_mae_vit_d192_p4.safetensors"
SELECTION_GRID = [0.3, 1, 3, 10, 30, 100, 300, 1000]


def selection_args(cache, out, lrs):
    return ["probe", "--model", MAE, "--data", "fashion-mnist", "--limit", "5000", "--val-limit", "1000",
            "--heads", "cls,mean,knn", "--features", "cached", "--epochs", "10", "--warmup-epochs", "2", "--batch", "128",
            "--lrs", ",".join(f"{lr:g}" for lr in lrs), "--cache-dir", cache, "--threads", "2", "--quiet",
            "--out", out, "--json"]


def first_argmax(values):
    return max(range(len(values)), key=lambda i: (values[i], -i))


def check_selection(report):
    work = work_dir(fresh=True)
    result = run_vitprobe(selection_args(work / "cache", work / "full", SELECTION_GRID), timeout=400)
    if not report.check("full grid", "exit code 0", result.returncode == 0, result.returncode):
        report.fail("full grid", describe_run(result))
        return
    results = load_json(result.stdout, "probe output")
    config = results["config"]
    report.check("holdout", "default: chosen on a held-out part of train", config["select_on"] == "train-holdout",
                 config["select_on"])
    report.check("holdout", "10% held out, the rest trains",
                 (config["holdout_items"], config["fit_items"], config["train_items"]) == (500, 4500, 5000),
                 (config["holdout_items"], config["fit_items"], config["train_items"]))
    chosen = {}
    for name in ("cls", "mean"):
        entry = head(results, name)
        ok = True
        for run in entry["runs"]:
            held = [m["top1"] for m in run["holdout"]]
            epoch = first_argmax(held)
            ok = ok and run["best_epoch"] == run["holdout"][epoch]["epoch"] and run["top1"] == run["val"][epoch]["top1"] \
                and run["holdout_top1"] == held[epoch] and len(run["val"]) == 10
        report.check(name, "each rate: epoch of the best held-out top-1, val top-1 reported there", ok)
        best = entry["runs"][first_argmax([r["holdout_top1"] for r in entry["runs"]])]
        report.check(name, "rate of the best held-out top-1; its val top-1 reported",
                     entry["best_lr"] == best["base_lr"] and entry["top1"] == best["top1"] and
                     entry["holdout_top1"] == best["holdout_top1"] and entry["selected_on"] == "train-holdout",
                     f"lr {entry['best_lr']:g}: held-out {entry['holdout_top1']:.2f}, val {entry['top1']:.2f}")
        report.check(name, "chosen rate inside the grid, not flagged",
                     entry["lr_at_grid_edge"] is False and min(SELECTION_GRID) < entry["best_lr"] < max(SELECTION_GRID),
                     entry["best_lr"])
        report.check(name, "far above chance (%)", entry["top1"] > FAR_ABOVE_CHANCE, f"{entry['top1']:.2f}")
        chosen[name] = entry["best_lr"]
    knn = head(results, "knn")
    best_k = knn["runs"][first_argmax([r["holdout_top1"] for r in knn["runs"]])]
    report.check("knn", "k of the best held-out top-1, val top-1 reported",
                 knn["best_k"] == best_k["k"] and knn["top1"] == best_k["top1"], f"k={knn['best_k']}")
    # A memory that held the held-out items would find each of them itself: near 100%.
    report.check("knn", "held-out items are not in the memory (held-out top-1 < 95)", knn["holdout_top1"] < 95,
                 f"{knn['holdout_top1']:.2f}")
    report.check("full grid", "no edge warning on stderr", "widen --lrs" not in result.stderr)
    markdown = (work / "full" / "results.md").read_text()
    report.check("full grid", "results.md says what chose and shows every rate",
                 "held-out 10% of the training split" in markdown and "## Top-1 per learning rate" in markdown)

    lower = SELECTION_GRID[:len(SELECTION_GRID) // 2]
    result = run_vitprobe(selection_args(work / "cache", work / "lower", lower), timeout=400)
    if not report.check("lower half", "exit code 0", result.returncode == 0, result.returncode):
        report.fail("lower half", describe_run(result))
        return
    results = load_json(result.stdout, "probe output")
    markdown = (work / "lower" / "results.md").read_text()
    flagged = []
    for name in ("cls", "mean"):
        entry = head(results, name)
        at_top = entry["best_lr"] == max(lower)
        report.check(name, f"flagged exactly when the chosen rate is the top of {lower}",
                     entry["lr_at_grid_edge"] is at_top, f"lr {entry['best_lr']:g}, flag {entry['lr_at_grid_edge']}")
        if at_top:
            flagged.append(name)
            warning = f"probe: {name}: best rate {max(lower):g} at the grid's edge"
            report.check(name, "one stderr line asks to widen --lrs",
                         sum(1 for line in result.stderr.splitlines() if line.startswith(warning) and "widen --lrs" in line) == 1,
                         result.stderr.strip()[:160])
            report.check(name, "results.md marks it", f"| {name} | {max(lower):g} (at the grid's edge)" in markdown)
    report.check("lower half", "the heads whose full-grid rate was above the cut are flagged",
                 flagged == [n for n in ("cls", "mean") if chosen[n] > max(lower)] and flagged,
                 ",".join(flagged) or "none")


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


CASES = {"e2e": check_e2e, "selection": check_selection, "bad-input": check_bad_input}


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
