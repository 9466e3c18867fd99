"""CLI end-to-end: help texts, unknown commands and options, `inspect` on the real ViT-Tiny.

Usage: check_cli.py help|unknown-subcommand|inspect-real   (no argument runs all)
"""
import json
import math
import re
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, describe_run, load_json, main_guard, run_vitprobe, shared_dir  # noqa: E402

FORWARD_OPTIONS = ["--model", "--input", "--out", "--blocks", "--attn", "--img-size", "--dtype", "--threads",
                   "--num-heads", "--format", "--mean", "--std", "--resize", "--crop", "--topk",
                   "--class-names", "--json"]
INSPECT_OPTIONS = ["--model", "--num-heads", "--json"]
# Defaults that forward --help must print, as CLI11 ("=fp32") or argparse-style ("default: fp32") text.
FORWARD_DEFAULTS = {"--dtype": "fp32", "--topk": "5", "--format": "auto"}
VIT_TINY_ENCODER_PARAMS = 5_524_416  # ViT-Ti/16 without its classifier head
PARAMS_TOLERANCE = 0.01
REAL_ARCH = {"embed_dim": 192, "depth": 12, "num_heads": 3, "patch_size": 16, "img_size": 224,
             "mlp_ratio": 4.0, "qkv_bias": True, "class_token": True, "num_registers": 0}


def one_line_error(report, name, result):
    lines = result.stderr.rstrip("\n").split("\n") if result.stderr.strip() else []
    report.check(name, "non-zero exit", result.returncode != 0, result.returncode, "!= 0")
    report.check(name, "exactly one line on stderr", len(lines) == 1, len(lines), 1)
    return lines[0] if lines else ""


def check_help(report):
    for args, must_show in [(["--help"], ["forward", "inspect"]),
                            (["forward", "--help"], FORWARD_OPTIONS),
                            (["inspect", "--help"], INSPECT_OPTIONS)]:
        name = "help: " + " ".join(args)
        result = run_vitprobe(args, timeout=60)
        report.check(name, "exit code", result.returncode == 0, result.returncode, 0)
        missing = [word for word in must_show if word not in result.stdout]
        if args[0] == "forward":
            missing += [f"{option} default {value}" for option, value in FORWARD_DEFAULTS.items()
                        if not shows_default(result.stdout, option, value)]
        report.check(name, "shows options and defaults", not missing, ",".join(missing) or "all", len(must_show))
        if result.returncode != 0 or missing:
            report.messages.append(f"[{name}]\n{describe_run(result)}")


def shows_default(help_text, option, value):
    """The help line of option (and the line after, where CLI11 wraps) shows value as its default."""
    lines = help_text.splitlines()
    for index, line in enumerate(lines):
        if re.search(rf"{re.escape(option)}\b", line):
            text = " ".join(lines[index:index + 2])
            if re.search(rf"(=|default:?\s*){re.escape(value)}\b", text, re.IGNORECASE):
                return True
    return False


def check_unknown(report):
    """An unknown subcommand, and an unknown option given with every required one, are named in one line."""
    required = ["--model", "m.pth", "--input", "x.npy", "--out", "out"]
    for args, offending in [(["frobnicate"], "frobnicate"),
                            (["forward", *required, "--no-such-option"], "--no-such-option")]:
        name = f"unknown: {args[0]} {offending if len(args) > 1 else ''}".rstrip()
        result = run_vitprobe(args, timeout=60)
        message = one_line_error(report, name, result)
        report.check(name, "names the offending word", offending in message, message[:50], offending)


def safetensors_shapes(path):
    """Tensor shapes from a safetensors header, without reading the data."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    return {key: info["shape"] for key, info in header.items() if key != "__metadata__"}


def check_inspect_real(report):
    name = "inspect real ViT-Ti"
    model = shared_dir() / "models" / "vit_tiny_patch16_224.in1k.safetensors"
    shapes = safetensors_shapes(model)
    expected_params = sum(math.prod(shape) for key, shape in shapes.items() if not key.startswith("head."))
    report.check(name, "expected count from the file (sanity)", expected_params == VIT_TINY_ENCODER_PARAMS,
                 expected_params, VIT_TINY_ENCODER_PARAMS)
    result = run_vitprobe(["inspect", "--model", model, "--json"], timeout=120)
    if not report.check(name, "exit code", result.returncode == 0, result.returncode, 0):
        report.fail(name, "vitprobe inspect failed\n" + describe_run(result))
        return
    try:
        info = load_json(result.stdout, "inspect --json output")
    except AssertionError as error:
        report.fail(name, str(error))
        return
    report.check(name, "format", info.get("format") == "safetensors", info.get("format"), "safetensors")
    report.check(name, "source", info.get("source") == "timm", info.get("source"), "timm")
    arch = info.get("arch") or {}
    wrong = [f"{field}={arch.get(field)!r} (want {value!r})" for field, value in REAL_ARCH.items()
             if arch.get(field) != value]
    report.check(name, f"arch ({len(REAL_ARCH)} fields)", not wrong, "; ".join(wrong) or "all match")
    num_params = info.get("num_params")
    ok = isinstance(num_params, int) and abs(num_params - expected_params) <= PARAMS_TOLERANCE * expected_params
    report.check(name, "num_params (encoder, no head)", ok, num_params, f"{expected_params} +-1%")
    ignored = info.get("ignored_keys") or []
    missing = [key for key in ("head.weight", "head.bias") if key not in ignored]
    report.check(name, "1000-class head listed as ignored", not missing, ",".join(missing) or "head.*")
    used = [key for key in ignored if not key.startswith("head.")]
    report.check(name, "nothing else ignored", not used, ",".join(used[:5]) or "none")


CHECKS = {"help": check_help, "unknown-subcommand": check_unknown, "inspect-real": check_inspect_real}


def run():
    names = sys.argv[1:] or list(CHECKS)
    if any(name not in CHECKS for name in names):
        print(f"usage: check_cli.py [{'|'.join(CHECKS)}]...", file=sys.stderr)
        return 1
    report = Report("vitprobe command line")
    for name in names:
        CHECKS[name](report)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
