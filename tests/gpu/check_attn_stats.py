"""gpu: `vitprobe attn-stats` on CUDA against CPU, ViT-Ti/16 on the 17 ImageNet photos.

Every statistic of stats.json (per-block mean and std, per-head means where the statistic has them): fp32 on
both devices within 1e-4 + 5e-3 |cpu| (as for the forward's tensors: cuDNN may run the patch embedding in
TF32); CUDA's default dtype (bf16 where the GPU has it) against CPU fp32 within 1e-2 + 3e-2 |cpu|. The statistics are reduced on the GPU; only these numbers come back.
"""
import json

from gpu_common import PHOTO_PREPROCESS, compare_numbers, main, photos, run_both, run_on, vit_tiny, work_dir

FIELDS = ["mean", "std", "head_mean", "head_std"]


def stats_args(extra=()):
    folder, _ = photos()
    return (["attn-stats", "--model", vit_tiny(), "--label", "vit-tiny", "--data", f"filelist:{folder}",
             "--batch-size", "8", "--quiet", "--json"] + PHOTO_PREPROCESS + list(extra))


def compare_statistics(report, subject, cpu, cuda, abs_tol, rel_tol):
    cpu_stats, cuda_stats = cpu["models"][0]["statistics"], cuda["models"][0]["statistics"]
    report.check(subject, "same statistics", sorted(cpu_stats) == sorted(cuda_stats), len(cuda_stats), len(cpu_stats))
    report.check(subject, "images", cuda["models"][0]["num_images"] == cpu["models"][0]["num_images"] == 17,
                 cuda["models"][0]["num_images"], 17)
    for name in sorted(set(cpu_stats) & set(cuda_stats)):
        for field in FIELDS:
            if field in cpu_stats[name]:
                compare_numbers(report, subject, f"{name}.{field}", sum_rows(cpu_stats[name][field]),
                                sum_rows(cuda_stats[name][field]), abs_tol, rel_tol)


def sum_rows(value):
    """Flattens a list of numbers or of lists of numbers."""
    return [x for row in value for x in (row if isinstance(row, list) else [row])]


def check(report):
    work = work_dir(fresh=True)
    results = run_both(report, "fp32", stats_args(["--dtype", "fp32"]), work / "cpu", work / "cuda")
    if None in results:
        return
    cpu = json.loads(results[0].stdout)
    compare_statistics(report, "fp32", cpu, json.loads(results[1].stdout), 1e-4, 5e-3)
    default = run_on(report, "default dtype", "cuda", stats_args() + ["--out", work / "cuda-default"])
    if default is not None:
        compare_statistics(report, "cuda default dtype vs cpu fp32", cpu, json.loads(default.stdout), 1e-2, 3e-2)


if __name__ == "__main__":
    main("gpu: attn-stats, cuda vs cpu", check)
