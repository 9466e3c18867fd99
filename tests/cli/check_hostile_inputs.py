"""CLI end-to-end: hostile inputs (issue 18) end in one clear line, exit 1-3 and bounded memory.

Usage: check_hostile_inputs.py CASE   (CTest registers one test per case; no argument runs them all)

Every case builds its own input (nothing committed), runs the binary and checks: the exit code (2 bad
input, 3 I/O, or 0 where the case is meant to load), exactly one stderr line starting with
"vitprobe <command>: error: " that names the file and the case's words, and the child's peak RSS
(ru_maxrss from wait4) under 1 GiB. Bombs that would expand to gigabytes must be refused from what they
declare.
"""
import gzip
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, main_guard, selected_cases, vitprobe_bin, work_dir  # noqa: E402
from make_references import encoder_state, mae_model, write_cases  # noqa: E402
from reference_vit import write_safetensors  # noqa: E402

MAX_RSS_MIB = 1024


def run_measured(args, env=None, prefix=()):
    """Runs the binary; returns (exit code, stderr text, peak RSS in MiB) of the child."""
    command = list(prefix) + [str(vitprobe_bin())] + [str(a) for a in args]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=dict(os.environ, **(env or {})))
    stderr = child.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, stderr, usage.ru_maxrss / 1024


def tensor_pickle(numel, sizes, strides):
    """Protocol-2 data.pkl of one float tensor: _rebuild_tensor_v2 over storage '0' of `numel` floats."""
    def text(value):
        return b"X" + struct.pack("<I", len(value)) + value.encode()

    def ints(values):
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((" + text("storage") + b"ctorch\nFloatStorage\n"
            + text("0") + text("cpu") + b"J" + struct.pack("<i", numel) + b"tQK\x00" + ints(sizes) + ints(strides)
            + b"\x89ccollections\nOrderedDict\n)RtR.")


def torch_zip(path, pickle, storage_chunks, deflate=False):
    """A torch.save-style archive; the storage record is streamed from `storage_chunks` (never held whole)."""
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr("archive/data.pkl", pickle)
        archive.writestr("archive/version", "3\n")
        with archive.open("archive/data/0", "w", force_zip64=True) as record:
            for chunk in storage_chunks:
                record.write(chunk)
    return path


def case_reference_bomb(folder, files):
    # Lists that hold the previous list twice (DUP, TUPLE2), 40 levels: 2^40 leaves once expanded.
    path = folder / "bomb.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02N" + b"2\x86" * 40 + b".")
        archive.writestr("archive/version", "3\n")
    return dict(command="inspect", model=path, words=["shared references", "limit"], file=path)


def case_stride_zero(folder, files):
    path = torch_zip(folder / "stride0.pt", tensor_pickle(4, [1 << 27, 4], [0, 1]), [struct.pack("<4f", 1, 2, 3, 4)])
    return dict(command="inspect", model=path, words=["stride-0", "64 MiB"], file=path)


def case_deflate_bomb(folder, files):
    # 1 GiB of zeros, deflated to about 1 MB; the pickle asks for exactly that storage.
    numel = 1 << 28
    chunks = (bytes(1 << 24) for _ in range(64))
    path = torch_zip(folder / "zeros.pt", tensor_pickle(numel, [numel], [1]), chunks, deflate=True)
    return dict(command="inspect", model=path, words=["zip bomb"], file=path)


def case_zip_duplicate(folder, files):
    path = folder / "twice.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}.")
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data.pkl", b"\x80\x02].")
    return dict(command="inspect", model=path, words=["two entries"], file=path)


def case_zip_crc(folder, files):
    path = torch_zip(folder / "crc.pt", tensor_pickle(4, [4], [1]), [struct.pack("<4f", 1, 2, 3, 4)])
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<4f", 1, 2, 3, 4))
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    return dict(command="inspect", model=path, words=["CRC-32"], file=path)


def case_safetensors_trailing(folder, files):
    path = folder / "trailing.safetensors"
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(12))
    return dict(command="inspect", model=path, words=["after the last tensor"], file=path)


def lying_jpeg(path, width, height):
    Image.new("RGB", (8, 8), (128, 64, 32)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def case_jpeg_bomb(folder, files):
    path = lying_jpeg(folder / "bomb.jpg", 32000, 32000)
    return dict(command="forward", model=files["model"], input=path, words=["178956970"], file=path)


def case_jpeg_premature_end(folder, files):
    path = lying_jpeg(folder / "short.jpg", 2000, 2000)
    return dict(command="forward", model=files["model"], input=path, words=["JPEG"], file=path)


def case_png_header_bomb(folder, files):
    path = folder / "huge.png"
    ihdr = struct.pack(">IIBBBBB", 32768, 32768, 8, 2, 0, 0, 0)

    def chunk(kind, body):
        import zlib
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    import zlib
    idat = zlib.compress(bytes(1))  # libpng reads the header up to the first IDAT
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return dict(command="forward", model=files["model"], input=path, words=["limit"], file=path)


def case_ppm_header_bomb(folder, files):
    path = folder / "huge.ppm"
    path.write_bytes(b"P6\n12000 12000\n255\n")
    return dict(command="forward", model=files["model"], input=path, words=["truncated"], file=path)


def case_resize_strip(folder, files):
    path = folder / "strip.png"
    Image.new("RGB", (1, 32768), (5, 6, 7)).save(path)
    # Shorter side to 256: 256 x 8388608 pixels (6 GB) unless the resize output is bounded.
    return dict(command="forward", model=files["model"], input=path, words=["output pixels"], file=path,
                extra=["--resize", "256"])


def case_dev_zero_input(folder, files):
    return dict(command="forward", model=files["model"], input="/dev/zero", words=["not a regular file"],
                file="/dev/zero", exit_code=3)


def case_idx_gzip_bomb(folder, files):
    # The header says 10 images of 28x28; the gzip body inflates to 1 GiB.
    data = folder / "mnist"
    data.mkdir()
    with gzip.open(data / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as out:
        out.write(struct.pack(">IIII", 0x803, 10, 28, 28))
        for _ in range(64):
            out.write(bytes(1 << 24))
    with gzip.open(data / "train-labels-idx1-ubyte.gz", "wb") as out:
        out.write(struct.pack(">II", 0x801, 10) + bytes(10))
    path = data / "train-images-idx3-ubyte.gz"
    return dict(command="data", data=f"mnist:{data}", words=["IDX header declares"], file=path)


def case_missing_block(folder, files):
    path = folder / "no_block1.safetensors"
    encoder = {k: v for k, v in encoder_state(mae_model()).items() if not k.startswith("blocks.1.")}
    write_safetensors(path, encoder)
    return dict(command="inspect", model=path, words=["no blocks.1"], file=path)


def nan_checkpoint(folder):
    path = folder / "nan.safetensors"
    encoder = encoder_state(mae_model())
    encoder["blocks.2.attn.proj.weight"][0, 0] = float("nan")
    write_safetensors(path, encoder)
    return path


def case_nan_weights(folder, files):
    path = nan_checkpoint(folder)
    return dict(command="inspect", model=path, words=["blocks.2.attn.proj.weight", "--allow-nonfinite"], file=path)


def case_nan_weights_allowed(folder, files):
    return dict(command="inspect", model=nan_checkpoint(folder), extra=["--allow-nonfinite"], exit_code=0)


def case_loader_allocation(folder, files):
    # A batch of 64 x 3 x 8192^2 floats (51 GB; 8192 is the largest --crop and --resize the CLI accepts) cannot
    # be allocated under a 16 GiB address-space cap: the failure happens in a loader worker thread, which used
    # to end the process with SIGABRT.
    images = folder / "images" / "train" / "a"
    images.mkdir(parents=True)
    for i in range(64):
        Image.new("RGB", (8, 8), (i, i, i)).save(images / f"{i}.png")
    return dict(command="data", data=f"imagefolder:{folder / 'images'}", extra=["--verify", "--crop", "8192",
                "--resize", "8192", "--batch-size", "64"], words=["cannot allocate a batch"],
                prefix=["prlimit", f"--as={16 << 30}"], max_rss=None)


CASES = {name[len("case_"):].replace("_", "-"): function for name, function in globals().items()
         if name.startswith("case_")}


def check_case(report, name, folder, files):
    spec = CASES[name](folder, files)
    command = spec["command"]
    args = [command]
    if "model" in spec:
        args += ["--model", spec["model"], "--num-heads", "4"]
    if command == "forward":
        args += ["--input", spec["input"], "--out", folder / "out"]
    if command == "data":
        args += ["--data", spec["data"], "--verify"]
    args += spec.get("extra", [])
    code, stderr, rss = run_measured(args, prefix=spec.get("prefix", ()))
    expected = spec.get("exit_code", 2)
    report.check(name, "exit code", code == expected, code, expected)
    max_rss = spec.get("max_rss", MAX_RSS_MIB)
    if max_rss:
        report.check(name, "peak RSS MiB", rss < max_rss, round(rss), max_rss)
    if expected == 0:
        return
    lines = stderr.rstrip("\n").split("\n") if stderr.strip() else []
    report.check(name, "one line on stderr", len(lines) == 1, len(lines), 1)
    message = lines[0] if lines else ""
    report.check(name, "prefix", message.startswith(f"vitprobe {command}: error: "), message[:60])
    missing = [word for word in spec["words"] if word.lower() not in message.lower()]
    report.check(name, "names the problem", not missing, ",".join(missing) or "all words", message[:300])
    if "file" in spec:
        report.check(name, "names the file", Path(spec["file"]).name in message, message[:300])


def run():
    names = selected_cases(CASES)
    if names is None:
        return 1
    folder = work_dir(fresh=True)
    root = folder / "refs"
    case = write_cases(root, ["mae"])["mae"]
    files = {"model": root / case["checkpoint"]}
    report = Report("vitprobe refuses hostile inputs with one line, exit 1-3 and bounded memory")
    for name in names:
        case_folder = folder / name
        case_folder.mkdir()
        check_case(report, name, case_folder, files)
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
