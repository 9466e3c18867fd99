"""CLI end-to-end of `vitprobe pretrain`: help texts with defaults, bad inputs (one line on stderr, exit
code by kind), per-epoch files written atomically, and --resume giving the same encoder as one run.

Usage: check_pretrain.py
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, describe_run, files_under, load_json, main_guard, run_vitprobe, work_dir  # noqa: E402
from reference_vit import read_safetensors  # noqa: E402

TINY = ["--data", "fashion-mnist", "--limit", "96", "--batch-size", "32", "--embed-dim", "32", "--depth", "1",
        "--num-heads", "2", "--decoder-dim", "32", "--decoder-depth", "1", "--threads", "2", "--quiet"]
HELP_DEFAULTS = {
    "mae": ["--mask-ratio", "0.75", "--blr", "0.00015", "--weight-decay", "0.05", "--beta2", "0.95", "--epochs",
            "--resume", "--precision", "--img-size", "28", "--patch-size", "4", "--embed-dim", "192"],
    "dino": ["--teacher-temp", "0.04", "--student-temp", "0.1", "--momentum-teacher", "0.996", "--local-crops",
             "--center-momentum", "0.9", "--out-dim", "4096", "--resume"],
}


def one_line_error(report, name, result, code):
    lines = result.stderr.strip().split("\n") if result.stderr.strip() else []
    report.check(name, f"exit code {code}", result.returncode == code, result.returncode, code)
    report.check(name, "one line on stderr", len(lines) == 1, len(lines), 1)
    return lines[0] if lines else ""


def check_help(report):
    for objective, words in HELP_DEFAULTS.items():
        result = run_vitprobe(["pretrain", objective, "--help"])
        report.check(f"help {objective}", "exit 0", result.returncode == 0, result.returncode)
        missing = [word for word in words if word not in result.stdout]
        report.check(f"help {objective}", "options and defaults shown", not missing, ",".join(missing))


def check_bad_inputs(report, out):
    result = run_vitprobe(["pretrain", "mae"] + TINY)
    one_line_error(report, "no --out", result, 2)
    result = run_vitprobe(["pretrain", "byol", "--out", out / "x.safetensors"])
    one_line_error(report, "unknown objective", result, 2)
    result = run_vitprobe(["pretrain", "mae", "--out", out / "x.safetensors", "--data", "no-such-format:/x"] + TINY[2:])
    line = one_line_error(report, "unknown data", result, 2)
    report.check("unknown data", "message names the spec", "no-such-format" in line, line[:60])
    result = run_vitprobe(["pretrain", "mae", "--out", out / "none.safetensors", "--resume"] + TINY)
    line = one_line_error(report, "resume without state", result, 3)
    report.check("resume without state", "message names the state file", "none.state.safetensors" in line, line[:60])
    result = run_vitprobe(["pretrain", "mae", "--out", out / "x.safetensors", "--patch-size", "5"] + TINY)
    one_line_error(report, "patch not dividing image", result, 2)


def tensors_equal(a, b):
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def check_resume(report, out):
    whole = out / "whole.safetensors"
    part = out / "part.safetensors"
    result = run_vitprobe(["pretrain", "mae", "--out", whole, "--epochs", "2", "--json"] + TINY)
    if result.returncode != 0:
        report.fail("resume", "two-epoch run failed\n" + describe_run(result))
        return
    summary = load_json(result.stdout, "pretrain --json")
    report.check("resume", "two epochs done", summary["epochs_done"] == 2, summary["epochs_done"], 2)
    report.check("resume", "state written beside the encoder", (out / "whole.state.safetensors").exists())
    # Interrupted after its first epoch (96 images = 3 steps of 32), then resumed.
    first = run_vitprobe(["pretrain", "mae", "--out", part, "--epochs", "2", "--max-steps", "3"] + TINY)
    second = run_vitprobe(["pretrain", "mae", "--out", part, "--epochs", "2", "--resume", "--json"] + TINY)
    if first.returncode != 0 or second.returncode != 0:
        report.fail("resume", "interrupted run failed\n" + describe_run(first if first.returncode else second))
        return
    resumed = load_json(second.stdout, "pretrain --resume --json")
    report.check("resume", "epoch losses equal", resumed["epoch_losses"] == summary["epoch_losses"],
                 resumed["epoch_losses"], summary["epoch_losses"])
    report.check("resume", "encoder tensors bit-identical", tensors_equal(read_safetensors(whole),
                                                                        read_safetensors(part)))
    leftovers = [p.name for p in files_under(out) if ".tmp" in p.name]
    report.check("resume", "no temporary files left", not leftovers, ",".join(leftovers))
    changed = run_vitprobe(["pretrain", "mae", "--out", part, "--epochs", "3", "--resume", "--batch-size", "16"]
                           + TINY[:4] + TINY[6:])
    line = one_line_error(report, "resume with another batch size", changed, 2)
    report.check("resume with another batch size", "message names the option", "batch_size" in line, line[:70])
    done = run_vitprobe(["pretrain", "mae", "--out", part, "--epochs", "2", "--resume"] + TINY)
    one_line_error(report, "resume of a finished run", done, 2)


def run():
    report = Report("vitprobe pretrain CLI")
    out = work_dir("runs", fresh=True)
    check_help(report)
    check_bad_inputs(report, out)
    check_resume(report, out)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
