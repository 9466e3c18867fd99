"""CLI end-to-end: every kind of bad input is refused cleanly.

Usage: check_bad_inputs.py CASE   (CTest registers one test per case; no argument runs them all)

For each case the run must: exit with the contract's code (2 bad input, 3 I/O), print exactly one line on
stderr that starts with "vitprobe <command>: error: ", contains the case's words (case-insensitive) and
the name of the offending file, and leave no file in --out. The valid model and input are the tiny
MAE-style checkpoint of tests/golden/make_references.py, so only the one broken thing differs.

Option cases (issue 18, OPTION_CASES): a numeric option given NaN, inf, a negative or out-of-range value, or a
size beyond what the machine holds, must fail before any work with exit code 2 and one short stderr line
(under 200 characters: CLI11's own range checks printed DBL_MAX in full) naming the option and the value.
Small-metadata cases (a bad crop in checkpoint metadata, a probe resume state without 'trainer', an empty
.npy batch) must give one line naming the file instead of a library message; an allocation that fails one
naming the size options (out-of-memory).
"""
import json
import pickletools
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, describe_run, files_under, main_guard, run_vitprobe, selected_cases, work_dir  # noqa: E402
from PIL import Image  # noqa: E402
from make_references import encoder_state, mae_model, save_mae_checkpoint, write_cases  # noqa: E402
from reference_vit import write_safetensors  # noqa: E402

EXIT_BAD_INPUT = 2
EXIT_IO_ERROR = 3


def valid_files(folder):
    """The tiny MAE checkpoint and its (2, 3, 32, 32) float32 input."""
    root = folder / "refs"
    case = write_cases(root, ["mae"])["mae"]
    return root / case["checkpoint"], root / case["input"]


def torch_zip(path, members):
    """A zip laid out like torch.save's (stored, not compressed)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def malicious_pickle(command):
    """Protocol-2 pickle of os.system(command), written opcode by opcode (never unpickled here):
    PROTO 2, GLOBAL 'os system', BINUNICODE command, TUPLE1, REDUCE, STOP (with BINPUT memo ops)."""
    text = command.encode()
    payload = (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(text)) + text
               + b"q\x01\x85q\x02Rq\x03.")
    globals_used = [arg for op, arg, _ in pickletools.genops(payload) if op.name == "GLOBAL"]
    assert globals_used == ["os system"], globals_used
    return payload


def case_truncated(folder, model, image):
    path = folder / "truncated.pth"
    data = model.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return dict(model=path, input=image, words=["vitprobe forward: error:"], file=path)


def case_random_bytes(folder, model, image):
    path = folder / "random_bytes.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return dict(model=path, input=image, words=["not a checkpoint"], file=path)


def case_zip_without_data_pkl(folder, model, image):
    path = folder / "no_data_pkl.pth"
    torch_zip(path, {"archive/version": "3\n"})
    return dict(model=path, input=image, words=["data.pkl"], file=path)


def case_unknown_global(folder, model, image):
    marker = folder / "payload_ran.marker"
    path = folder / "os_system.pth"
    torch_zip(path, {"archive/data.pkl": malicious_pickle(f"touch {marker}"), "archive/version": "3\n"})
    return dict(model=path, input=image, words=["unknown global", "os.system"], file=path, marker=marker)


def case_safetensors_lying_header(folder, model, image):
    """The header promises 4 MB of data; the file holds 16 bytes."""
    path = folder / "lying_header.safetensors"
    header = b'{"patch_embed.proj.weight":{"dtype":"F32","shape":[1000,1000],"data_offsets":[0,4000000]}}'
    header += b" " * (-(8 + len(header)) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    return dict(model=path, input=image, words=["safetensors"], file=path)


def case_wrong_architecture_missing(folder, model, image):
    path = folder / "missing_fc2.pth"
    encoder = encoder_state(mae_model())
    del encoder["blocks.1.mlp.fc2.weight"]
    save_mae_checkpoint(path, encoder)
    return dict(model=path, input=image, words=["missing", "blocks.1.mlp.fc2.weight"], file=path)


def case_wrong_architecture_shape(folder, model, image):
    path = folder / "bad_qkv_shape.safetensors"
    encoder = encoder_state(mae_model())
    encoder["blocks.1.attn.qkv.weight"] = torch.randn(3 * 64, 32)
    write_safetensors(path, encoder)
    return dict(model=path, input=image, words=["shape", "blocks.1.attn.qkv.weight"], file=path)


def case_image_not_decoding(folder, model, image):
    path = folder / "not_a_photo.JPEG"
    path.write_text("This file is plain text, not a JPEG image.\n")
    return dict(model=model, input=path, words=["decode"], file=path)


def case_npy_wrong_shape(folder, model, image):
    path = folder / "three_dims.npy"
    np.save(path, np.zeros((2, 3, 32), dtype=np.float32))
    return dict(model=model, input=path, words=["shape"], file=path)


def case_npy_wrong_dtype(folder, model, image):
    path = folder / "int64_input.npy"
    np.save(path, np.zeros((2, 3, 32, 32), dtype=np.int64))
    return dict(model=model, input=path, words=["dtype"], file=path)


def case_missing_model(folder, model, image):
    path = folder / "no_such_checkpoint.pth"
    return dict(model=path, input=image, words=[], file=path, exit_code=EXIT_IO_ERROR)


def case_inspect_random_bytes(folder, model, image):
    path = folder / "random_bytes.pth"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    return dict(model=path, words=["not a checkpoint"], file=path, command="inspect")


def png_input(folder):
    path = folder / "input.png"
    Image.new("RGB", (40, 40), (120, 60, 30)).save(path)
    return path


def case_metadata_bad_crop(folder, model, image):
    """Checkpoint metadata whose crop is not a number (was: std::stoi's 'stoi', exit 4)."""
    path = folder / "bad_crop_metadata.safetensors"
    write_safetensors(path, encoder_state(mae_model()), metadata={"crop": "thirty-two"})
    return dict(model=path, input=png_input(folder), words=["crop", "thirty-two"], file=path)


def case_empty_npy_batch(folder, model, image):
    """A (0, 3, 32, 32) batch (was: libtorch's reshape message, exit 4)."""
    path = folder / "empty_batch.npy"
    np.save(path, np.zeros((0, 3, 32, 32), dtype=np.float32))
    return dict(model=model, input=path, words=["empty"], file=path)


CASES = {"truncated": case_truncated, "random-bytes": case_random_bytes,
         "zip-without-data-pkl": case_zip_without_data_pkl, "unknown-global": case_unknown_global,
         "safetensors-lying-header": case_safetensors_lying_header,
         "wrong-architecture-missing": case_wrong_architecture_missing,
         "wrong-architecture-shape": case_wrong_architecture_shape,
         "image-not-decoding": case_image_not_decoding, "npy-wrong-shape": case_npy_wrong_shape,
         "npy-wrong-dtype": case_npy_wrong_dtype, "missing-model": case_missing_model,
         "inspect-random-bytes": case_inspect_random_bytes, "metadata-bad-crop": case_metadata_bad_crop,
         "empty-npy-batch": case_empty_npy_batch}


# Option cases: (command and options before the bad one, the bad option, its value). Parsing must refuse the
# value before any work, so the other paths need not exist ({model}: the tiny checkpoint, {missing}: no file).
PROBE = ["probe", "--model", "{model}", "--data", "imagefolder:{missing}", "--heads", "cls", "--out", "{out}"]
FORWARD = ["forward", "--model", "{model}", "--input", "{image}", "--out", "{out}", "--num-heads", "4"]
DATA = ["data", "--data", "imagefolder:{missing}", "--verify"]
OPTION_CASES = {
    # one validator for every numeric option: NaN, inf and negative values refused where they make no sense
    "lrs-inf": (PROBE, "--lrs", "1,inf"),
    "momentum-nan": (PROBE, "--momentum", "nan"),
    "warmup-epochs-nan": (PROBE, "--warmup-epochs", "nan"),
    "min-lr-nan": (PROBE, "--min-lr", "nan"),
    "blr-nan": (PROBE, "--blr", "nan"),
    "weight-decay-negative": (PROBE, "--weight-decay", "-1"),
    "mean-nan": (FORWARD, "--mean", "nan,0.4,0.4"),
    "std-inf": (FORWARD, "--std", "0.2,inf,0.2"),
    "alpha-nan": (["maps", "--model", "{model}", "--input", "{image}", "--out", "{out}"], "--alpha", "nan"),
    "pretrain-min-lr-nan": (["pretrain", "mae", "--data", "imagefolder:{missing}", "--out", "{out}/e.safetensors"],
                            "--min-lr", "nan"),
    # k-NN and seeds
    "knn-k-zero": (PROBE, "--knn-k", "0"),
    "knn-k-negative": (PROBE, "--knn-k", "10,-3"),
    "knn-temperature-zero": (PROBE, "--knn-temperature", "0"),
    "seeds-duplicate": (PROBE, "--seeds", "0,0"),
    # sizes bounded by what the machine can hold (--threads 100000 used to hang in at::set_num_threads)
    "threads-huge": (FORWARD, "--threads", "100000"),
    "workers-huge": (PROBE, "--workers", "100000"),
    "batch-huge": (PROBE, "--batch", "1000000"),
    "img-size-huge": (PROBE, "--img-size", "100000"),
    "resize-huge": (DATA, "--resize", "100000"),
    "crop-huge": (DATA, "--crop", "100000"),
    # range errors in a short line (--batch 0 printed DBL_MAX in full: 399 characters)
    "batch-zero": (PROBE, "--batch", "0"),
}
MAX_LINE = 200


def check_option_case(report, name, folder, model, image):
    base, option, value = OPTION_CASES[name]
    fill = dict(model=model, image=image, out=folder / "out", missing=folder / "missing")
    args = [str(a).format(**fill) for a in base] + [f"{option}={value}"]
    result = run_vitprobe(args, timeout=120)
    failures_before = sum(row[-1] == "FAIL" for row in report.rows)
    report.check(name, "exit code", result.returncode == EXIT_BAD_INPUT, result.returncode, EXIT_BAD_INPUT)
    lines = result.stderr.rstrip("\n").split("\n") if result.stderr.strip() else []
    report.check(name, "exactly one line on stderr", len(lines) == 1, len(lines), 1)
    message = lines[0] if lines else ""
    report.check(name, "names the option", option in message, "yes" if option in message else "no", option)
    shown = value.split(",")[-1] if name not in ("seeds-duplicate", "knn-k-zero") else value.split(",")[0]
    report.check(name, "names the value", shown in message.replace(option, ""), "yes" if shown in message else "no",
                 shown)
    report.check(name, "short line", len(message) < MAX_LINE, len(message), f"< {MAX_LINE}")
    left = [str(p.relative_to(fill["out"])) for p in files_under(fill["out"])]
    report.check(name, "no files left in --out", not left, ",".join(left) or "none")
    if sum(row[-1] == "FAIL" for row in report.rows) > failures_before:
        report.messages.append(f"[{name}]\n{describe_run(result)}")


def check_resume_without_trainer(report, name, folder, model, image):
    """A probe resume state whose JSON lacks 'trainer' (was: [json.exception.out_of_range.403], exit 4)."""
    for split in ("train", "val"):
        for label in ("a", "b"):
            (folder / "images" / split / label).mkdir(parents=True)
            for i in range(4):
                shade = 40 * i + (100 if label == "b" else 0)
                Image.new("RGB", (32, 32), (shade, shade, shade)).save(folder / "images" / split / label / f"{i}.png")
    out = folder / "out"
    args = ["probe", "--model", model, "--num-heads", "4", "--data", f"imagefolder:{folder / 'images'}",
            "--heads", "cls", "--lrs", "0.1", "--epochs", "2", "--batch", "4", "--crop", "32", "--resize", "32",
            "--features", "cached", "--cache-dir", folder / "cache", "--threads", "1", "--workers", "1", "--quiet",
            "--out", out]
    stopped = run_vitprobe(args + ["--stop-after-epochs", "1"])
    state_file = out / "resume" / "state.json"
    if stopped.returncode != 0 or not state_file.is_file():
        report.fail(name, f"the run to resume did not stop cleanly\n{describe_run(stopped)}")
        return
    state = json.loads(state_file.read_text())
    del state["trainer"]
    state_file.write_text(json.dumps(state))
    result = run_vitprobe(args + ["--resume"])
    failures_before = sum(row[-1] == "FAIL" for row in report.rows)
    report.check(name, "exit code", result.returncode == EXIT_BAD_INPUT, result.returncode, EXIT_BAD_INPUT)
    lines = result.stderr.rstrip("\n").split("\n") if result.stderr.strip() else []
    report.check(name, "exactly one line on stderr", len(lines) == 1, len(lines), 1)
    message = lines[0] if lines else ""
    report.check(name, "names the file and the key", "state.json" in message and "'trainer'" in message,
                 message[:120], "state.json, 'trainer'")
    report.check(name, "no library text", "json.exception" not in message, message[:120], "no json.exception")
    if sum(row[-1] == "FAIL" for row in report.rows) > failures_before:
        report.messages.append(f"[{name}]\n{describe_run(result)}")


def check_out_of_memory(report, name, folder, model, image):
    """An allocation no machine can satisfy (a 52 TB input batch fails at once, no memory is touched): exit 2 and
    the size options named (was: libtorch's "DefaultCPUAllocator: can't allocate memory" with exit 4, and
    "std::bad_alloc" for a failed C++ allocation)."""
    result = run_vitprobe(["bench", "--arch", "vit_tiny_patch16", "--dtype", "fp32", "--batch", "65536",
                           "--img-size", "8192", "--warmup", "0", "--iterations", "1", "--threads", "1"], timeout=120)
    failures_before = sum(row[-1] == "FAIL" for row in report.rows)
    report.check(name, "exit code", result.returncode == EXIT_BAD_INPUT, result.returncode, EXIT_BAD_INPUT)
    lines = result.stderr.rstrip("\n").split("\n") if result.stderr.strip() else []
    report.check(name, "exactly one line on stderr", len(lines) == 1, len(lines), 1)
    message = lines[0] if lines else ""
    ok = message.startswith("vitprobe bench: error: out of memory") and "--batch" in message
    report.check(name, "says out of memory, names --batch", ok, message[:120], "out of memory, --batch")
    report.check(name, "short line", len(message) < MAX_LINE, len(message), f"< {MAX_LINE}")
    if sum(row[-1] == "FAIL" for row in report.rows) > failures_before:
        report.messages.append(f"[{name}]\n{describe_run(result)}")


SPECIAL_CASES = {"resume-without-trainer": check_resume_without_trainer, "out-of-memory": check_out_of_memory}


def check_case(report, name, folder, model, image):
    spec = CASES[name](folder, model, image)
    failures_before = sum(row[-1] == "FAIL" for row in report.rows)
    command = spec.get("command", "forward")
    out_dir = folder / "out"
    args = [command, "--model", spec["model"], "--num-heads", "4"]
    if command == "forward":
        args += ["--input", spec["input"], "--out", out_dir]
    result = run_vitprobe(args)
    expected_code = spec.get("exit_code", EXIT_BAD_INPUT)
    report.check(name, "exit code", result.returncode == expected_code, result.returncode, expected_code)
    lines = result.stderr.rstrip("\n").split("\n") if result.stderr.strip() else []
    report.check(name, "exactly one line on stderr", len(lines) == 1, len(lines), 1)
    message = lines[0] if lines else ""
    prefix = f"vitprobe {command}: error: "
    report.check(name, "starts with prefix", message.startswith(prefix), message[:40], repr(prefix))
    missing = [word for word in spec["words"] if word.lower() not in message.lower()]
    report.check(name, "names the problem", not missing, ",".join(missing) or "all words", spec["words"])
    file_name = Path(spec["file"]).name
    report.check(name, "names the file", file_name in message, "yes" if file_name in message else "no", file_name)
    left = [str(p.relative_to(out_dir)) for p in files_under(out_dir)]
    report.check(name, "no files left in --out", not left, ",".join(left) or "none")
    if "marker" in spec:
        report.check(name, "pickle payload did not run", not spec["marker"].exists(), spec["marker"].exists())
    if sum(row[-1] == "FAIL" for row in report.rows) > failures_before:
        report.messages.append(f"[{name}]\n{describe_run(result)}")


def run():
    names = selected_cases(list(CASES) + list(OPTION_CASES) + list(SPECIAL_CASES))
    if names is None:
        return 1
    folder = work_dir(fresh=True)
    model, image = valid_files(folder)
    report = Report("vitprobe refuses bad inputs with one clear line")
    for name in names:
        case_folder = folder / name
        case_folder.mkdir()
        check = check_option_case if name in OPTION_CASES else SPECIAL_CASES.get(name, check_case)
        check(report, name, case_folder, model, image)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
