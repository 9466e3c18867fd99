"""Golden test of `vitprobe forward` and `vitprobe inspect` against the PyTorch references.

Usage: check_forward.py [CASE ...]   (all cases of make_references.py when none are named)

For each case: write the references into $VITPROBE_WORK, run
  vitprobe forward --model CKPT --input input.npy --out DIR --attn --blocks all --num-heads 4 [case args]
and compare every output in fp32 (tokens, block outputs, logits <= 1e-4; attention <= 1e-5; forward.json),
then run again with --dtype bf16 (per-token cosine to the fp32 reference >= 0.999), then check
`vitprobe inspect --json` (format, source, arch, parameter count, ignored keys, skipped entries).
"""
import os
import re

import numpy as np

from harness import (Report, describe_run, files_under, load_json, main_guard, max_abs_diff,
                     min_token_cosine, run_vitprobe, selected_cases, work_dir)
from make_references import CASES, write_cases

TOKENS_TOLERANCE = 1e-4
BLOCKS_TOLERANCE = 1e-4
ATTENTION_TOLERANCE = 1e-5
LOGITS_TOLERANCE = 1e-4
PROB_TOLERANCE = 1e-4
BF16_MIN_COSINE = 0.999
NUM_HEADS = "4"
DEFAULT_TOPK = 5


def load_output(report, name, path, expected_shape):
    """Load one .npy that vitprobe wrote; it must be float32 of the expected shape (else a failed row)."""
    if not path.exists():
        report.fail(name, f"{path.name} was not written")
        return None
    array = np.load(path)
    if array.dtype != np.float32 or array.shape != tuple(expected_shape):
        report.fail(name, f"{path.name} is {array.dtype} {array.shape}, expected float32 {tuple(expected_shape)}")
        return None
    return array


def compare_arrays(report, name, what, out_dir, expected_paths, root, limit):
    """Compare a group of outputs (e.g. all block{i}.npy); one row with the worst difference."""
    worst, worst_file = 0.0, ""
    for path in expected_paths:
        expected = np.load(root / path)
        actual = load_output(report, name, out_dir / path.split("/")[-1], expected.shape)
        if actual is None:
            return
        diff = max_abs_diff(actual, expected)
        if diff >= worst:
            worst, worst_file = diff, path.split("/")[-1]
    report.check(name, f"{what} max abs diff ({worst_file})", worst <= limit, f"{worst:.2e}", limit)


def expected_npy_names(case, blocks, attn):
    depth = case["arch"]["depth"]
    names = {"tokens.npy"} | {f"block{i}.npy" for i in blocks}
    if attn:
        names |= {f"attn{i}.npy" for i in (blocks or range(depth))}
    if case["expected"]["logits"]:
        names.add("logits.npy")
    return names


def check_written_files(report, name, out_dir, expected_names):
    """Exactly the .npy files the contract names, forward.json, and no leftover temporary files."""
    files = files_under(out_dir)
    written = {p.name for p in files if p.suffix == ".npy"}
    leftovers = [p.name for p in files if ".tmp" in p.name]
    report.check(name, "npy files written", written == expected_names,
                 ",".join(sorted(written ^ expected_names)) or "as expected")
    report.check(name, "no temporary files left", not leftovers, ",".join(leftovers))
    report.check(name, "forward.json written", (out_dir / "forward.json").exists())


def check_forward_json(report, name, out_dir, case, root, tokens_shape):
    path = out_dir / "forward.json"
    if not path.exists():
        return
    info = load_json(path.read_text(), "forward.json")
    report.check(name, "forward.json tokens_shape", list(info.get("tokens_shape", [])) == list(tokens_shape),
                 info.get("tokens_shape"), list(tokens_shape))
    report.check(name, "forward.json num_prefix_tokens", info.get("num_prefix_tokens") == case["num_prefix_tokens"],
                 info.get("num_prefix_tokens"), case["num_prefix_tokens"])
    if not case["expected"]["logits"]:
        report.check(name, "forward.json has no top-k without a classifier", not info.get("top"), info.get("top"))
        return
    logits = np.load(root / case["expected"]["logits"]).astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    top = info.get("top") or []
    ok = len(top) == len(logits)
    worst = 0.0
    for image, entries in enumerate(top[:len(logits)]):
        indices = [int(i) for i in np.argsort(-logits[image])[:DEFAULT_TOPK]]
        if [entry.get("index") for entry in entries] != indices:
            ok = False
            continue
        worst = max([worst] + [abs(float(entry.get("prob", -1.0)) - probs[image, index])
                               for entry, index in zip(entries, indices)])
    report.check(name, f"forward.json top-{DEFAULT_TOPK} indices and probs", ok and worst <= PROB_TOLERANCE,
                 f"{worst:.1e}", PROB_TOLERANCE)


def check_fp32(report, name, case, root, out_root):
    out_dir = out_root / "fp32"
    result = run_vitprobe(["forward", "--model", root / case["checkpoint"], "--input", root / case["input"],
                           "--out", out_dir, "--attn", "--blocks", "all", "--num-heads", NUM_HEADS, *case["args"]])
    if not report.check(name, "forward fp32 exit code", result.returncode == 0, result.returncode, 0):
        report.fail(name, "vitprobe forward failed\n" + describe_run(result))
        return
    expected = case["expected"]
    depth = case["arch"]["depth"]
    check_written_files(report, name, out_dir, expected_npy_names(case, range(depth), attn=True))
    compare_arrays(report, name, "tokens", out_dir, [expected["tokens"]], root, TOKENS_TOLERANCE)
    explain_resample_mismatch(report, name, case, root, out_dir)
    compare_arrays(report, name, "blocks", out_dir, expected["blocks"], root, BLOCKS_TOLERANCE)
    compare_arrays(report, name, "attention", out_dir, expected["attn"], root, ATTENTION_TOLERANCE)
    if expected["logits"]:
        compare_arrays(report, name, "logits", out_dir, [expected["logits"]], root, LOGITS_TOLERANCE)
    check_forward_json(report, name, out_dir, case, root, np.load(root / expected["tokens"]).shape)


def explain_resample_mismatch(report, name, case, root, out_dir):
    """When resampled tokens are off, say whether they match the antialiased variant instead."""
    diagnostic = case.get("diagnostics", {}).get("tokens_antialias")
    tokens_path = out_dir / "tokens.npy"
    if not diagnostic or not tokens_path.exists():
        return
    tokens = np.load(tokens_path)
    if max_abs_diff(tokens, np.load(root / case["expected"]["tokens"])) > TOKENS_TOLERANCE:
        diff = max_abs_diff(tokens, np.load(root / diagnostic))
        hint = "they match" if diff <= TOKENS_TOLERANCE else "they do not match either"
        report.fail(name, f"resampled tokens differ; compared with an antialias=True resampling {hint} "
                          f"(max diff {diff:.2e}); the contract is bicubic, align_corners=False, no antialias")


def check_block_selection(report, name, case, root, out_root):
    """--blocks I,J and --blocks last write exactly the named blocks (and attention only with --attn)."""
    depth = case["arch"]["depth"]
    selections = [(["--blocks", f"0,{depth - 1}", "--attn"], [0, depth - 1], True),
                  (["--blocks", "last"], [depth - 1], False)]
    for index, (args, blocks, attn) in enumerate(selections):
        out_dir = out_root / f"blocks{index}"
        result = run_vitprobe(["forward", "--model", root / case["checkpoint"], "--input", root / case["input"],
                               "--out", out_dir, "--num-heads", NUM_HEADS, *args])
        label = " ".join(args)
        if not report.check(name, f"forward {label} exit code", result.returncode == 0, result.returncode, 0):
            report.fail(name, "vitprobe forward failed\n" + describe_run(result))
            continue
        check_written_files(report, name, out_dir, expected_npy_names(case, blocks, attn))
        compare_arrays(report, name, f"{label}: block{depth - 1}", out_dir,
                       [case["expected"]["blocks"][depth - 1]], root, BLOCKS_TOLERANCE)


def cpu_flags_and_cap():
    """This CPU's flags (/proc/cpuinfo) and the ISA cap set for the run ('ALL' when none)."""
    flags = set()
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return flags, (os.environ.get("VITPROBE_MAX_CPU_ISA") or os.environ.get("ONEDNN_MAX_CPU_ISA") or "ALL").upper()


def avx512_core_allowed():
    """True when this CPU has AVX512_CORE (avx512f/bw/vl/dq) and no ISA cap below it is set for the run."""
    flags, cap = cpu_flags_and_cap()
    return {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags and cap not in ("SSE41", "AVX", "AVX2", "AVX2_VNNI")


def native_bf16_allowed():
    """True when this CPU has avx512_bf16 or amx_bf16 and no ISA cap below AVX512_CORE_BF16 is set for the run."""
    flags, cap = cpu_flags_and_cap()
    return bool({"avx512_bf16", "amx_bf16"} & flags) and avx512_core_allowed() and \
        cap not in ("AVX512_CORE", "AVX512_CORE_VNNI")


def check_bf16(report, name, case, root, out_root):
    out_dir = out_root / "bf16"
    result = run_vitprobe(["forward", "--model", root / case["checkpoint"], "--input", root / case["input"],
                           "--out", out_dir, "--dtype", "bf16", "--num-heads", NUM_HEADS, *case["args"]])
    if not report.check(name, "forward bf16 exit code", result.returncode == 0, result.returncode, 0):
        report.fail(name, "vitprobe forward --dtype bf16 failed\n" + describe_run(result))
        return
    path_lines = [line for line in result.stderr.splitlines() if line.startswith("vitprobe: bf16 products run ")]
    if native_bf16_allowed():  # the native path goes without a word
        report.check(name, "no stderr line on the native bf16 path", not path_lines, path_lines, "none")
    else:
        report.check(name, "one stderr line names the bf16 path", len(path_lines) == 1, path_lines, "one line")
    if path_lines and not avx512_core_allowed():
        report.check(name, "bf16 below AVX512_CORE runs fp32 on bf16-rounded values",
                     "fp32 with bf16-rounded" in path_lines[0], path_lines[0], "fp32 with bf16-rounded ...")
    expected = np.load(root / case["expected"]["tokens"])
    tokens = load_output(report, name, out_dir / "tokens.npy", expected.shape)
    if tokens is not None:
        cosine = min_token_cosine(tokens, expected)
        report.check(name, "bf16 min token cosine", cosine >= BF16_MIN_COSINE, f"{cosine:.6f}",
                     f">= {BF16_MIN_COSINE}")


def key_reported(expected_key, ignored, skipped):
    """A key counts as reported when ignored_keys has its full path ('model.decoder_embed.weight') or its
    path inside the encoder's container ('decoder_embed.weight'), or when its whole top-level container
    (a DINO student, an I-JEPA predictor) is reported as unused in ignored_keys or skipped_entries."""
    if any(key == expected_key or expected_key.endswith("." + key) for key in ignored):
        return True
    container = expected_key.split(".")[0]
    return any(entry_named(entry, container) and not str(entry).startswith(container + ".")
               for entry in list(ignored) + list(skipped))


def used_key_forms(key, case):
    """A used encoder key as ignored_keys could spell it: full path, or inside its container."""
    container = ".".join(case["unwrap"].get("container", []))
    forms = {key}
    if container and key.startswith(container + "."):
        forms.add(key[len(container) + 1:])
    return forms


def entry_named(entry, name):
    text = entry if isinstance(entry, str) else str(entry)
    return re.search(rf"(^|[^A-Za-z0-9_]){re.escape(name)}([^A-Za-z0-9_]|$)", text) is not None


def arch_value_matches(value, expected):
    """Booleans compare by truth (layer_scale may be reported as its init value), floats to 1e-6."""
    if isinstance(expected, bool):
        return value is not None and bool(value) == expected
    if isinstance(expected, float):
        return isinstance(value, (int, float)) and abs(value - expected) < 1e-6
    return value == expected


def check_inspect(report, name, case, root):
    result = run_vitprobe(["inspect", "--model", root / case["checkpoint"], "--num-heads", NUM_HEADS, "--json"])
    if not report.check(name, "inspect exit code", result.returncode == 0, result.returncode, 0):
        report.fail(name, "vitprobe inspect failed\n" + describe_run(result))
        return
    try:
        info = load_json(result.stdout, "inspect --json output")
    except AssertionError as error:
        report.fail(name, str(error))
        return
    report.check(name, "inspect format", info.get("format") == case["format"], info.get("format"), case["format"])
    report.check(name, "inspect source", info.get("source") == case["source"], info.get("source"), case["source"])
    arch = info.get("arch") or {}
    wrong = [f"{field}={arch.get(field)!r} (want {expected!r})" for field, expected in case["arch"].items()
             if not arch_value_matches(arch.get(field), expected)]
    report.check(name, f"inspect arch ({len(case['arch'])} fields)", not wrong, "; ".join(wrong) or "all match")
    report.check(name, "inspect arch.pos_embed present", "pos_embed" in arch, arch.get("pos_embed"))
    report.check(name, "inspect num_params", info.get("num_params") == case["num_params"],
                 info.get("num_params"), case["num_params"])
    ignored = [str(key) for key in info.get("ignored_keys") or []]
    skipped = info.get("skipped_entries") or []
    missing = [key for key in case["ignored_keys"] if not key_reported(key, ignored, skipped)]
    report.check(name, "inspect ignored_keys lists decoder/heads/...", not missing, ",".join(missing) or "all")
    wrongly = [key for key in case["not_ignored_keys"] if used_key_forms(key, case) & set(ignored)]
    report.check(name, "inspect ignored_keys omits used encoder keys", not wrongly, ",".join(wrongly) or "none")
    absent = [entry for entry in case["skipped_entries"] if not any(entry_named(e, entry) for e in skipped)]
    report.check(name, "inspect skipped_entries", not absent, ",".join(absent) or "all")


def run():
    names = selected_cases(CASES)
    if names is None:
        return 1
    root = work_dir("refs", fresh=True)
    cases = write_cases(root, names)
    report = Report("vitprobe forward / inspect vs PyTorch references")
    for name in names:
        out_root = work_dir(f"out/{name}", fresh=True)
        check_fp32(report, name, cases[name], root, out_root)
        if name == "mae":
            check_block_selection(report, name, cases[name], root, out_root)
        check_bf16(report, name, cases[name], root, out_root)
        check_inspect(report, name, cases[name], root)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
