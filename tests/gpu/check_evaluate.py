"""gpu: `vitprobe evaluate` on CUDA against CPU: heads cls, mean and abmilp trained once on the CPU (the bundled
MAE encoder, 1000 Fashion-MNIST images, cached features), then re-scored on 500 validation images on each
device with an fp32 encoder. Same heads, same images: top-1 within 1 point (a few images at a decision boundary
may flip), every head scored on both, and above chance.
"""
import json

from gpu_common import MAE_MODEL, compare_numbers, fashion_mnist, main, run_on, work_dir


def check(report):
    work = work_dir(fresh=True)
    heads = work / "heads"
    trained = run_on(report, "train on cpu", "cpu", [
        "probe", "--model", MAE_MODEL, "--data", fashion_mnist(), "--limit", "1000", "--val-limit", "200",
        "--heads", "cls,mean,abmilp", "--features", "cached", "--lrs", "30", "--epochs", "3", "--warmup-epochs", "1",
        "--batch", "128", "--cache-dir", work / "cache", "--threads", "4", "--quiet", "--json", "--out", heads])
    if trained is None:
        return
    scores = {}
    for device in ("cpu", "cuda"):
        result = run_on(report, "evaluate", device, [
            "evaluate", "--heads", heads, "--model", MAE_MODEL, "--data", fashion_mnist(), "--split", "val",
            "--limit", "500", "--dtype", "fp32", "--quiet", "--json"])
        if result is None:
            return
        scores[device] = {entry["head"]: entry["top1"] for entry in json.loads(result.stdout)["heads"]}
    report.check("evaluate", "every head scored on both", sorted(scores["cpu"]) == sorted(scores["cuda"]) ==
                 ["abmilp", "cls", "mean"], ",".join(sorted(scores["cuda"])))
    for name in sorted(set(scores["cpu"]) & set(scores["cuda"])):
        compare_numbers(report, "evaluate", f"{name}: top-1 (%)", scores["cpu"][name], scores["cuda"][name], 1.0)
        report.check("evaluate", f"{name}: above chance on cuda", scores["cuda"][name] > 20.0, scores["cuda"][name], "> 20")


if __name__ == "__main__":
    main("gpu: evaluate, cuda vs cpu", check)
