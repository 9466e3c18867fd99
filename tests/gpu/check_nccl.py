"""multi_gpu: 2 ranks on 2 GPUs through NCCL (`vitprobe launch -n 2`, rank i on cuda:LOCAL_RANK) against one
process on one GPU.

attn-stats: ViT-Ti/16 on the 17 photos, fp32; the ranks all-reduce their sums, so every statistic must equal the
    one-process value within 1e-5 + 1e-4 |value| (only the summation order differs).
probe: the bundled MAE encoder, 512 Fashion-MNIST images, cached features, heads cls and abmilp; batch 32 per rank
    against batch 64 in one process (the same global batch): training losses within 1e-3 + 1%, top-1 within 1 point.
With fewer than 2 CUDA devices the test fails and says so: it is labelled multi_gpu, and scripts/gpu-check runs
that label only where 2 GPUs are visible (recording it as not run otherwise).
"""
import json
import re

from check_attn_stats import compare_statistics, stats_args
from gpu_common import MAE_MODEL, REHEARSAL, REHEARSAL_ROW, compare_numbers, fashion_mnist, run_vitprobe, describe_run
from gpu_common import Report, main_guard, work_dir

RANKS = 2


def devices_visible():
    match = re.search(r"(\d+) CUDA device\(s\) visible", run_vitprobe(["--version"]).stdout)
    return int(match.group(1)) if match else 0


def run_json(report, subject, args):
    if REHEARSAL:
        args = ["cpu" if a == "cuda" else a for a in args] + ["--backend", "reference"]
    result = run_vitprobe(args, timeout=600)
    if result.returncode != 0:
        report.fail(subject, "vitprobe failed\n" + describe_run(result))
        return None
    return json.loads(result.stdout)


def check(report):
    work = work_dir(fresh=True)
    single = run_json(report, "attn-stats 1 process", stats_args(["--dtype", "fp32", "--device", "cuda", "--out",
                                                                   work / "stats-1"]))
    ranks = run_json(report, "attn-stats 2 ranks", ["launch", "-n", str(RANKS), "--"] + stats_args(
        ["--dtype", "fp32", "--device", "cuda", "--out", work / "stats-2"]))
    if single is not None and ranks is not None:
        compare_statistics(report, "attn-stats 2 ranks vs 1", single, ranks, 1e-5, 1e-4)

    probe = ["probe", "--model", MAE_MODEL, "--data", fashion_mnist(), "--limit", "512", "--val-limit", "256",
             "--heads", "cls,abmilp", "--features", "cached", "--lrs", "30", "--epochs", "2", "--warmup-epochs", "0",
             "--device", "cuda", "--quiet", "--json"]
    one = run_json(report, "probe 1 process", probe + ["--batch", "64", "--cache-dir", work / "c1", "--out", work / "p1"])
    two = run_json(report, "probe 2 ranks", ["launch", "-n", str(RANKS), "--"] + probe +
                   ["--batch", "32", "--cache-dir", work / "c2", "--out", work / "p2"])
    if one is not None and two is not None:
        for entry in one["heads"]:
            other = next(h for h in two["heads"] if h["head"] == entry["head"])
            compare_numbers(report, "probe 2 ranks vs 1", f"{entry['head']}: train loss per epoch",
                            entry["runs"][0]["train_loss"], other["runs"][0]["train_loss"], 1e-3, 1e-2)
            compare_numbers(report, "probe 2 ranks vs 1", f"{entry['head']}: top-1 (%)", entry["top1"], other["top1"], 1.0)


def run():
    report = Report(f"multi_gpu: NCCL, {RANKS} ranks vs 1 process")
    visible = devices_visible()
    if REHEARSAL:
        report.fail("cuda", REHEARSAL_ROW)
        check(report)
    elif visible < RANKS:
        report.fail("cuda", f"NOT RUN: {visible} CUDA device(s) visible, this multi_gpu test needs {RANKS} "
                    "(scripts/gpu-check runs the multi_gpu label only where 2 GPUs are visible)")
    else:
        try:
            check(report)
        except Exception as error:  # noqa: BLE001
            report.fail("error", f"{type(error).__name__}: {error}")
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
