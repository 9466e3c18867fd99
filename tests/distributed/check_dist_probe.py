"""Distributed probing equals one process (issue 8).

With the same global batch and seed, 2 and 3 ranks (Gloo on 127.0.0.1, started by `vitprobe launch`) must
choose the same learning rate per head with the same val accuracy, and save head weights within 1e-4 of a
single-process run, in cached mode (features read from one cache) and online mode (the encoder runs on each
rank's shard). Also: features extracted by 2 ranks (one shard file per rank) are read by 1 and 3 ranks with the
same results, and a run interrupted after one epoch with 1 process resumes with 2.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dist_common import MAE, WORK, compare_runs, results_of, run, weight_difference  # noqa: E402

TOLERANCE = 1e-4
work = os.path.join(WORK, "probe")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
GLOBAL_BATCH = 48


def probe_args(out, mode, ranks, cache, extra=()):
    return ["probe", "--model", MAE, "--data", "fashion-mnist", "--limit", "480", "--val-limit", "200",
            "--features", mode, "--heads", "cls,mean,abmilp,ep:4,knn", "--lrs", "0.05,0.5", "--epochs", "2",
            "--warmup-epochs", "1", "--batch", str(GLOBAL_BATCH // ranks), "--cache-dir", cache, "--quiet",
            "--threads", "1", "--out", os.path.join(work, out), *extra]


def probe(out, mode, ranks, cache, extra=()):
    args = probe_args(out, mode, ranks, cache, extra)
    run(args if ranks == 1 else ["launch", "-n", str(ranks), "--"] + args)
    return os.path.join(work, out)


cache = os.path.join(work, "cache")
# Cached features: one extraction, read by every run.
single = probe("cached-1", "cached", 1, cache)
for ranks in (2, 3):
    other = probe(f"cached-{ranks}", "cached", ranks, cache)
    compare_runs(single, other, TOLERANCE, f"cached, {ranks} ranks vs 1")
    communication = results_of(other)["communication"]
    assert communication["world_size"] == ranks, communication
    assert communication["bytes_reduced_per_rank"] > 0, communication

# The comparison can fail: one process with half the global batch trains other weights.
half = os.path.join(work, "cached-half-batch")
run(probe_args("cached-half-batch", "cached", 2, cache))  # batch 24 on ONE process: global batch 24
control = weight_difference(single, half)
print(f"control: global batch 24 vs 48 on one process: max abs weight difference {control:.3g}")
if control < 100 * TOLERANCE:
    sys.exit("FAIL: the control run with another global batch is within 100x the tolerance; the comparison "
             "cannot tell runs apart")

# Online: every rank runs the encoder on its shard of each global batch.
online_single = probe("online-1", "online", 1, cache)
online_two = probe("online-2", "online", 2, cache)
compare_runs(online_single, online_two, TOLERANCE, "online, 2 ranks vs 1")

# Extraction by 2 ranks writes one shard per rank; 1 and 3 ranks read it and match the 1-rank cache's run.
sharded_cache = os.path.join(work, "cache-sharded")
run(["launch", "-n", "2", "--", "extract", "--model", MAE, "--data", "fashion-mnist", "--limit", "480", "--val-limit",
     "200", "--heads", "cls,mean,abmilp,ep:4", "--cache-dir", sharded_cache, "--quiet", "--threads", "1"])
shards = [name for root, _, files in os.walk(sharded_cache) for name in files if "-of-2" in name]
assert shards, f"no shard files in {sharded_cache}"
print(f"extract with 2 ranks wrote {len(shards)} shard files")
# 3 ranks on the complete cache: nothing to extract, no collective after joining; all must still succeed.
before = sorted(name for _, _, files in os.walk(sharded_cache) for name in files)
run(["launch", "-n", "3", "--", "extract", "--model", MAE, "--data", "fashion-mnist", "--limit", "480", "--val-limit",
     "200", "--heads", "cls,mean,abmilp,ep:4", "--cache-dir", sharded_cache, "--quiet", "--threads", "1"])
assert before == sorted(name for _, _, files in os.walk(sharded_cache) for name in files), "a complete cache changed"
for ranks in (1, 3):
    other = probe(f"sharded-{ranks}", "cached", ranks, sharded_cache)
    compare_runs(single, other, TOLERANCE, f"cache extracted by 2 ranks, read by {ranks}")

# Resume with another world size: 1 process stops after epoch 1, 2 ranks finish the run.
probe("resume", "cached", 1, cache, ["--stop-after-epochs", "1"])
assert os.path.exists(os.path.join(work, "resume", "resume", "state.json")), "no resume state after epoch 1"
probe("resume", "cached", 2, cache, ["--resume"])
compare_runs(single, os.path.join(work, "resume"), TOLERANCE, "1 epoch with 1 process, resumed with 2 ranks")
print("PASS")
