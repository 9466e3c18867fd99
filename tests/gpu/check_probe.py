"""gpu: `vitprobe probe` on CUDA against CPU, the bundled MAE encoder on Fashion-MNIST, heads trained on the
device.

cached: 1000 training and 500 validation images, heads cls, mean, abmilp x learning rates 10 and 30, 4 epochs.
    For every head and learning rate, the training loss of each epoch within 0.02 + 3% of the CPU's; every
    head's validation top-1 within 3 points of the CPU's and far above chance (10 classes) on both.
online: 512 training and 256 validation images through the encoder every batch (train transform), heads cls
    and abmilp, one epoch: training loss within 0.05 + 5%, top-1 within 6 points.
The bounds are loose on purpose: the two devices sum in different orders, and a training run amplifies that.
"""
import json

from gpu_common import MAE_MODEL, compare_numbers, fashion_mnist, main, run_on, work_dir

FAR_ABOVE_CHANCE = 40.0


def common(work, limit, val_limit, device_cache):
    return ["probe", "--model", MAE_MODEL, "--data", fashion_mnist(), "--limit", str(limit), "--val-limit",
            str(val_limit), "--cache-dir", work / device_cache, "--threads", "4", "--workers", "2", "--quiet", "--json"]


def compare_runs(report, subject, cpu, cuda, loss_abs, loss_rel, top1_points):
    for entry in cpu["heads"]:
        name = entry["head"]
        other = next((h for h in cuda["heads"] if h["head"] == name), None)
        if other is None:
            report.fail(subject, f"head {name} missing on cuda")
            continue
        for run, run_cuda in zip(entry["runs"], other["runs"]):
            compare_numbers(report, subject, f"{name} lr {run['base_lr']:g}: train loss per epoch", run["train_loss"],
                            run_cuda["train_loss"], loss_abs, loss_rel)
        compare_numbers(report, subject, f"{name}: val top-1 (%)", entry["top1"], other["top1"], top1_points)
        report.check(subject, f"{name}: top-1 far above chance on both",
                     min(entry["top1"], other["top1"]) > FAR_ABOVE_CHANCE,
                     f"{other['top1']:.1f} / {entry['top1']:.1f}", f"> {FAR_ABOVE_CHANCE}")


def probe_both(report, subject, work, limit, val_limit, extra):
    """The probe on cpu then cuda, each with its own cache folder (so the CUDA run extracts on the GPU too)."""
    results = []
    for device in ("cpu", "cuda"):
        args = common(work, limit, val_limit, f"cache-{subject}-{device}") + extra + ["--out", work / f"{subject}-{device}"]
        result = run_on(report, subject, device, args)
        if result is None:
            return None
        results.append(json.loads(result.stdout))
    return results


def check(report):
    work = work_dir(fresh=True)
    cached = probe_both(report, "cached", work, 1000, 500, [
        "--heads", "cls,mean,abmilp", "--features", "cached", "--lrs", "10,30", "--epochs", "4", "--warmup-epochs", "1",
        "--batch", "128"])
    if cached is not None:
        compare_runs(report, "cached", *cached, 0.02, 0.03, 3.0)
    online = probe_both(report, "online", work, 512, 256, [
        "--heads", "cls,abmilp", "--features", "online", "--blr", "30", "--epochs", "1", "--warmup-epochs", "0",
        "--batch", "64"])
    if online is not None:
        compare_runs(report, "online", *online, 0.05, 0.05, 6.0)


if __name__ == "__main__":
    main("gpu: probe (cached and online), cuda vs cpu", check)
