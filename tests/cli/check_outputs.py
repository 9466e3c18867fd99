"""CLI end-to-end: outputs, locks and stored states (issue 18, "Leftovers" and "silent nonsense").

Usage: check_outputs.py CASE   (CTest registers one test per case; no argument runs them all)

Each case builds what it needs (the tiny MAE checkpoint of tests/golden/make_references.py, a 2-class image
folder of 32x32 PNGs), runs the binary and checks one promise:
  write-fails          a forward whose last write fails leaves none of its files (was: 14 .npy files left)
  no-leftovers         a finished forward leaves no temporary folder and no lock file beside --out
  stale-temporaries    *.tmp.<pid> files and folders of a dead process are removed at the next start, in the
                       output and the cache folders; those of a live process are kept
  out-is-file          --out naming an existing file is refused before any work (was: after the first epoch)
  out-inside-input     --out inside the dataset folder or the feature cache is refused, naming both paths
  out-locked           a second run on an --out a live process writes is refused with its pid; a lock left by
                       a dead process is taken over (was: both ran, the last one won)
  resume-epochs        a resume state claiming 100 or -3 completed epochs is refused (was: trusted)
  resume-checksum      a resume state whose tensors file changed is refused (checksum in state.json)
  resume-nan           a resume state holding NaN tensors (checksum made to match) is refused
  resume-trainer-incomplete   a 'trainer' object without its 'runs' names the file and the key
  cache-checksum       a feature cache whose features file changed is refused
  cache-nan            a feature cache overwritten with NaN (checksum made to match) is refused
  val-class-names      a val split with a class the train split lacks is refused, naming it (was: scored
                       against the wrong class, only the counts were compared)
  folder-as-image      a folder given as --input names the path (was: basic_filebuf::underflow, exit 4)
Every refusal must be one stderr line "vitprobe <command>: error: ..." with exit code 2 or 3.
"""
import hashlib
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, describe_run, files_under, main_guard, run_vitprobe, selected_cases, work_dir  # noqa: E402
from make_references import write_cases  # noqa: E402


def valid_files(folder):
    """The tiny MAE checkpoint and its (2, 3, 32, 32) float32 input."""
    root = folder / "refs"
    case = write_cases(root, ["mae"])["mae"]
    return root / case["checkpoint"], root / case["input"]


def image_folder(root, classes=None):
    """root/{train,val}/<class>/<i>.png, 4 grey 32x32 images per class."""
    classes = classes or {"train": ["a", "b"], "val": ["a", "b"]}
    for split, names in classes.items():
        for k, label in enumerate(names):
            (root / split / label).mkdir(parents=True)
            for i in range(4):
                shade = 40 * i + 100 * k
                Image.new("RGB", (32, 32), (shade, shade, shade)).save(root / split / label / f"{i}.png")
    return root


def probe_args(model, images, cache, out, epochs=2):
    return ["probe", "--model", model, "--num-heads", "4", "--data", f"imagefolder:{images}", "--heads", "cls",
            "--lrs", "0.1", "--epochs", str(epochs), "--batch", "4", "--crop", "32", "--resize", "32",
            "--features", "cached", "--cache-dir", cache, "--threads", "1", "--workers", "1", "--quiet", "--out", out]


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_refusal(report, name, result, words, exit_codes=(2, 3), command=None):
    """One stderr line with the command's prefix and `words` (case-insensitive), an exit code in `exit_codes`."""
    lines = result.stderr.rstrip("\n").split("\n") if result.stderr.strip() else []
    message = lines[0] if lines else ""
    ok = report.check(name, "exit code", result.returncode in exit_codes, result.returncode, exit_codes)
    ok &= report.check(name, "one stderr line", len(lines) == 1, len(lines), 1)
    if command:
        prefix = f"vitprobe {command}: error: "
        ok &= report.check(name, "prefix", message.startswith(prefix), message[:40], prefix)
    missing = [str(w) for w in words if str(w).lower() not in message.lower()]
    ok &= report.check(name, "names the problem", not missing, ",".join(missing) or "all words", "")
    ok &= report.check(name, "no library text", "json.exception" not in message and "basic_filebuf" not in message,
                       message[:100], "")
    if not ok:
        report.messages.append(f"[{name}]\n{describe_run(result)}")
    return ok


def check_ran(report, name, result, what="runs"):
    ok = report.check(name, what, result.returncode == 0, result.returncode, 0)
    if not ok:
        report.messages.append(f"[{name}]\n{describe_run(result)}")
    return ok


def forward_args(model, batch, out):
    return ["forward", "--model", model, "--num-heads", "4", "--input", batch, "--blocks", "all", "--attn",
            "--out", out]


def case_write_fails(report, name, folder, model, batch):
    out = folder / "out"
    (out / "forward.json").mkdir(parents=True)  # the last write (forward.json) cannot replace a folder
    result = run_vitprobe(forward_args(model, batch, out))
    report.check(name, "exit code", result.returncode == 3, result.returncode, 3)
    left = [str(p.relative_to(out)) for p in files_under(out)]
    report.check(name, "no files left in --out", not left, ",".join(left[:4]) or "none", "none")
    report.check(name, "what was there stays", (out / "forward.json").is_dir(), "", "")


def case_no_leftovers(report, name, folder, model, batch):
    out = folder / "out"
    result = run_vitprobe(forward_args(model, batch, out))
    if not check_ran(report, name, result):
        return
    beside = sorted(p.name for p in folder.iterdir() if p.name.startswith("out"))
    report.check(name, "only --out beside it", beside == ["out"], beside, ["out"])
    report.check(name, "forward.json written", (out / "forward.json").is_file(), "", "")


def case_stale_temporaries(report, name, folder, model, batch):
    images = image_folder(folder / "images")
    out, cache = folder / "out", folder / "cache"
    gone, alive = dead_pid(), os.getpid()
    (folder / f"out.tmp.{gone}").mkdir()
    (folder / f"out.tmp.{gone}" / "tokens.npy").write_bytes(b"x")
    (out / "seed").mkdir(parents=True)
    (out / f"results.json.tmp.{gone}").write_text("{")
    (out / "seed" / f"head.safetensors.tmp.{gone}").write_text("x")
    (out / f"results.json.tmp.{alive}").write_text("{")
    (cache / "entry").mkdir(parents=True)
    (cache / "entry" / f"cls.bf16.tmp-{gone}").write_bytes(b"x")
    (cache / "entry" / f"manifest.json.tmp.{gone}").write_text("{")
    (cache / "entry" / f"labels.i64.tmp.{alive}").write_bytes(b"x")
    result = run_vitprobe(probe_args(model, images, cache, out, epochs=1))
    if not check_ran(report, name, result):
        return
    stale = [p.name for p in list(folder.rglob(f"*.tmp.{gone}")) + list(folder.rglob(f"*.tmp-{gone}"))]
    report.check(name, "dead process's temporaries removed", not stale, ",".join(stale) or "none", "none")
    live = [p.name for p in folder.rglob(f"*.tmp.{alive}")]
    report.check(name, "live process's temporaries kept", len(live) == 2, ",".join(live), 2)


def case_out_is_file(report, name, folder, model, batch):
    images = image_folder(folder / "images")
    out = folder / "results.txt"
    out.write_text("not a folder\n")
    result = run_vitprobe(probe_args(model, images, folder / "cache", out))
    check_refusal(report, name, result, [out, "not a folder"], (2,), "probe")
    report.check(name, "no work done (no cache written)", not (folder / "cache").exists(), "", "")


def case_out_inside_input(report, name, folder, model, batch):
    images = image_folder(folder / "images")
    cache = folder / "cache"
    for label, out in (("dataset", images / "heads"), ("cache", cache / "probe")):
        result = run_vitprobe(probe_args(model, images, cache, out))
        check_refusal(report, f"{name}:{label}", result, [out, "inside", images if label == "dataset" else cache],
                      (2,), "probe")
    report.check(name, "dataset untouched", not (images / "heads").exists(), "", "")


def case_out_locked(report, name, folder, model, batch):
    out = folder / "out"
    lock = folder / "out.lock"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        with open(lock, "w") as handle:
            handle.write(f"{holder.pid}\n")
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_EX)
            result = run_vitprobe(forward_args(model, batch, out))
            check_refusal(report, f"{name}:live", result, [out, f"being written by pid {holder.pid}"], (2, 3),
                          "forward")
    finally:
        holder.kill()
        holder.wait()
    report.check(name, "nothing written while locked", not files_under(out), "", "")
    lock.write_text(f"{dead_pid()}\n")  # left by a killed run: no flock held
    result = run_vitprobe(forward_args(model, batch, out))
    if check_ran(report, f"{name}:stale", result, "a dead holder's lock is taken over"):
        report.check(name, "lock released after the run", not lock.exists(), lock.exists(), False)


def stopped_probe(report, name, folder, model):
    """A probe run stopped after 1 of 2 epochs; returns (args, out) or None."""
    images = image_folder(folder / "images")
    out = folder / "out"
    args = probe_args(model, images, folder / "cache", out)
    stopped = run_vitprobe(args + ["--stop-after-epochs", "1"])
    if stopped.returncode != 0 or not (out / "resume" / "state.json").is_file():
        report.fail(name, f"the run to resume did not stop cleanly\n{describe_run(stopped)}")
        return None
    return args + ["--resume"], out


def case_resume_epochs(report, name, folder, model, batch):
    for claimed in (100, -3):
        (folder / str(claimed)).mkdir()
        stopped = stopped_probe(report, name, folder / str(claimed), model)
        if not stopped:
            return
        args, out = stopped
        state_file = out / "resume" / "state.json"
        state = json.loads(state_file.read_text())
        state["completed_epochs"] = claimed
        state_file.write_text(json.dumps(state))
        result = run_vitprobe(args)
        check_refusal(report, f"{name}:{claimed}", result, ["state.json", str(claimed)], (2,), "probe")


def tensors_file(out):
    state = json.loads((out / "resume" / "state.json").read_text())
    return out / "resume" / state["tensors"]


def case_resume_checksum(report, name, folder, model, batch):
    stopped = stopped_probe(report, name, folder, model)
    if not stopped:
        return
    args, out = stopped
    path = tensors_file(out)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor's last value
    path.write_bytes(bytes(data))
    result = run_vitprobe(args)
    check_refusal(report, name, result, [path.name, "checksum"], (2,), "probe")


def case_resume_nan(report, name, folder, model, batch):
    stopped = stopped_probe(report, name, folder, model)
    if not stopped:
        return
    args, out = stopped
    path = tensors_file(out)
    data = bytearray(path.read_bytes())
    (length,) = np.frombuffer(bytes(data[:8]), dtype="<u8")
    header = json.loads(bytes(data[8:8 + int(length)]))
    key = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32" and "head" in k)
    start = 8 + int(length) + header[key]["data_offsets"][0]
    data[start:start + 4] = np.array([np.nan], dtype="<f4").tobytes()
    path.write_bytes(bytes(data))
    state_file = out / "resume" / "state.json"
    state = json.loads(state_file.read_text())
    if "checksums" in state:  # the fixed format: make the checksum match, so that the values are what is checked
        state["checksums"][path.name] = sha256(path)
        state_file.write_text(json.dumps(state))
    result = run_vitprobe(args)
    check_refusal(report, name, result, [path.name, "non-finite"], (2,), "probe")


def case_resume_trainer_incomplete(report, name, folder, model, batch):
    stopped = stopped_probe(report, name, folder, model)
    if not stopped:
        return
    args, out = stopped
    state_file = out / "resume" / "state.json"
    state = json.loads(state_file.read_text())
    del state["trainer"]["runs"][0]["best_top1"]
    state_file.write_text(json.dumps(state))
    result = run_vitprobe(args)
    check_refusal(report, name, result, ["state.json", "'best_top1'", "trainer"], (2,), "probe")


def cached_probe(report, name, folder, model):
    """A finished probe run with cached features; returns (args, the train split's cache entry) or None."""
    images = image_folder(folder / "images")
    cache = folder / "cache"
    args = probe_args(model, images, cache, folder / "out", epochs=1)
    first = run_vitprobe(args)
    if not check_ran(report, name, first, "the first run"):
        return None
    for manifest in cache.glob("*/manifest.json"):
        if json.loads(manifest.read_text())["key"]["split"] == "train":
            return args[:-1] + [folder / "out2"], manifest.parent
    report.fail(name, "no train cache entry written")
    return None


def case_cache_checksum(report, name, folder, model, batch):
    cached = cached_probe(report, name, folder, model)
    if not cached:
        return
    args, entry = cached
    path = entry / "cls.bf16"
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    result = run_vitprobe(args)
    check_refusal(report, name, result, ["cls.bf16", "checksum"], (2,), "probe")


def case_cache_nan(report, name, folder, model, batch):
    cached = cached_probe(report, name, folder, model)
    if not cached:
        return
    args, entry = cached
    path = entry / "cls.bf16"
    path.write_bytes(np.full(path.stat().st_size // 2, 0x7FC0, dtype="<u2").tobytes())  # bf16 NaN everywhere
    manifest_file = entry / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    if "sha256" in manifest["features"]["cls"]:  # the fixed format: make the checksum match
        manifest["features"]["cls"]["sha256"] = [sha256(path)]
        manifest_file.write_text(json.dumps(manifest))
    result = run_vitprobe(args)
    check_refusal(report, name, result, ["cls.bf16", "non-finite"], (2,), "probe")


def case_val_class_names(report, name, folder, model, batch):
    images = image_folder(folder / "images", {"train": ["a", "b"], "val": ["a", "c"]})
    result = run_vitprobe(probe_args(model, images, folder / "cache", folder / "out"))
    check_refusal(report, name, result, ["'c'"], (2,), "probe")


def case_folder_as_image(report, name, folder, model, batch):
    for label, path in (("folder", folder / "photos"), ("npy-folder", folder / "batch.npy")):
        path.mkdir()
        result = run_vitprobe(["forward", "--model", model, "--num-heads", "4", "--input", path, "--crop", "32",
                               "--resize", "32", "--out", folder / f"out-{label}"])
        check_refusal(report, f"{name}:{label}", result, [path, "folder"], (2, 3), "forward")


CASES = {"write-fails": case_write_fails, "no-leftovers": case_no_leftovers,
         "stale-temporaries": case_stale_temporaries, "out-is-file": case_out_is_file,
         "out-inside-input": case_out_inside_input, "out-locked": case_out_locked,
         "resume-epochs": case_resume_epochs, "resume-checksum": case_resume_checksum, "resume-nan": case_resume_nan,
         "resume-trainer-incomplete": case_resume_trainer_incomplete, "cache-checksum": case_cache_checksum,
         "cache-nan": case_cache_nan, "val-class-names": case_val_class_names,
         "folder-as-image": case_folder_as_image}


def run():
    names = selected_cases(CASES)
    if names is None:
        return 1
    folder = work_dir(fresh=True)
    model, batch = valid_files(folder)
    report = Report("outputs are all-or-nothing, locked, checked; stored states are verified")
    for name in names:
        case_folder = folder / name
        case_folder.mkdir()
        CASES[name](report, name, case_folder, model, batch)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
