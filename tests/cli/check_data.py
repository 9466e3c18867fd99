#!/usr/bin/env python3
"""CLI test of `vitprobe data`: tiny fixtures of every dataset format (written here with PIL and numpy) give
the right sizes, classes and per-class counts; --verify loads every item; bad inputs fail with a clear
one-line error that names the file, and --skip-bad counts what it skipped.

Run through CTest (VITPROBE_BIN, VITPROBE_SHARED, VITPROBE_WORK).
"""
import gzip
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "golden"))
import harness  # noqa: E402

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path, array, compress):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)


def make_fixtures(root):
    rng = np.random.default_rng(0)
    fixtures = {}

    folder = root / "folder"
    for split, counts in (("train", {"cat": 3, "dog": 2}), ("val", {"cat": 1, "dog": 1})):
        for name, count in counts.items():
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)
                image = Image.fromarray(pixels)
                if i == 1:
                    image.convert("L").save(folder / split / name / f"{i}.jpg", quality=90)  # greyscale JPEG
                else:
                    image.save(folder / split / name / f"{i}.png")
    fixtures["folder"] = folder

    broken = root / "broken"
    (broken / "train" / "a").mkdir(parents=True, exist_ok=True)
    (broken / "train" / "b").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(broken / "train" / "a" / "ok.jpg")
    good = (broken / "train" / "a" / "ok.jpg").read_bytes()
    (broken / "train" / "b" / "cut.jpg").write_bytes(good[: len(good) // 2])
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(broken / "train" / "b" / "ok.png")
    fixtures["broken"] = broken

    empty = root / "empty_class"
    (empty / "train" / "full").mkdir(parents=True, exist_ok=True)
    (empty / "train" / "hollow").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(empty / "train" / "full" / "x.png")
    fixtures["empty_class"] = empty

    mnist = root / "mnist"
    labels = np.array([0, 1, 1, 2, 2, 2, 9], dtype=np.uint8)
    write_idx(mnist / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (7, 28, 28)), True)
    write_idx(mnist / "train-labels-idx1-ubyte.gz", labels, True)
    write_idx(mnist / "t10k-images-idx3-ubyte", rng.integers(0, 256, (2, 28, 28)), False)
    write_idx(mnist / "t10k-labels-idx1-ubyte", np.array([3, 4], dtype=np.uint8), False)
    fixtures["mnist"] = mnist

    bad_idx = root / "bad_idx"
    write_idx(bad_idx / "train-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28)), False)
    write_idx(bad_idx / "train-labels-idx1-ubyte", np.zeros(3, np.uint8), False)
    raw = bytearray((bad_idx / "train-images-idx3-ubyte").read_bytes())
    raw[3] = 0x02  # magic 0x00000802: two dimensions
    (bad_idx / "train-images-idx3-ubyte").write_bytes(bytes(raw))
    fixtures["bad_idx"] = bad_idx

    def cifar_records(labels_per_record):
        records = b""
        for labels in labels_per_record:
            records += bytes(labels) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes()
        return records

    cifar10 = root / "cifar10" / "cifar-10-batches-bin"
    cifar10.mkdir(parents=True, exist_ok=True)
    for batch in range(1, 6):
        (cifar10 / f"data_batch_{batch}.bin").write_bytes(cifar_records([[batch % 10], [7]]))
    (cifar10 / "test_batch.bin").write_bytes(cifar_records([[3]]))
    fixtures["cifar10"] = cifar10.parent

    cifar100 = root / "cifar100"
    cifar100.mkdir(parents=True, exist_ok=True)
    (cifar100 / "train.bin").write_bytes(cifar_records([[1, 42], [1, 42], [2, 99]]))
    (cifar100 / "test.bin").write_bytes(cifar_records([[0, 5]]))
    fixtures["cifar100"] = cifar100

    truncated = root / "cifar10_truncated"
    truncated.mkdir(parents=True, exist_ok=True)
    for batch in range(1, 6):
        (truncated / f"data_batch_{batch}.bin").write_bytes(cifar_records([[1], [2]]))
    (truncated / "data_batch_2.bin").write_bytes(cifar_records([[1], [2]])[:-10])
    fixtures["cifar10_truncated"] = truncated

    stl = root / "stl10" / "stl10_binary"
    stl.mkdir(parents=True, exist_ok=True)
    (stl / "train_X.bin").write_bytes(rng.integers(0, 256, 3 * 3 * 96 * 96, dtype=np.uint8).tobytes())
    (stl / "train_y.bin").write_bytes(bytes([1, 10, 10]))
    (stl / "test_X.bin").write_bytes(rng.integers(0, 256, 2 * 3 * 96 * 96 - 7, dtype=np.uint8).tobytes())
    (stl / "test_y.bin").write_bytes(bytes([1, 2]))
    fixtures["stl10"] = stl.parent
    return fixtures


def parse_json(report, case, result):
    if result.returncode != 0:
        report.fail(case, "vitprobe data failed\n" + harness.describe_run(result))
        return None
    return harness.load_json(result.stdout, f"{case} output")


def counts_checker(size, counts, names=None, more=None):
    """A check of `vitprobe data --json`: size, non-zero per-class counts, first class names, then `more`."""
    def check(report, case, result):
        summary = parse_json(report, case, result)
        if summary is None:
            return
        report.check(case, "size", summary["size"] == size, summary["size"], size)
        got = {c["label"]: c["count"] for c in summary["classes"] if c["count"]}
        report.check(case, "per-class counts", got == counts, got, counts)
        if names:
            got_names = [c["name"] for c in summary["classes"]][: len(names)]
            report.check(case, "class names", got_names == names, got_names, names)
        if more:
            more(report, case, summary)
    return check


def error_checker(exit_code, parts):
    """A check of a failing run: the exit code, one 'vitprobe data: error:' line, and the parts it must name."""
    def check(report, case, result):
        stderr = result.stderr.strip()
        report.check(case, "exit code", result.returncode == exit_code, result.returncode, exit_code)
        lines = stderr.splitlines()
        one_line = len(lines) == 1 and lines[0].startswith("vitprobe data: error: ")
        report.check(case, "one error line", one_line, lines[-1][:60] if lines else "")
        for part in parts:
            report.check(case, f"names '{Path(part).name if '/' in part else part}'", part in stderr, stderr[:80])
    return check


def cases(fixtures, work):
    """(case, vitprobe arguments, check(report, case, result)) for every run."""
    folder, broken = fixtures["folder"], fixtures["broken"]
    cut = str(broken / "train" / "b" / "cut.jpg")

    def verified_folder(report, case, summary):
        got = summary["verify"]
        report.check(case, "image size varies", summary["image_size"] is None, summary["image_size"])
        report.check(case, "verify loaded all", got["loaded"] == 5 and got["skipped"] == 0, got["loaded"], 5)
        report.check(case, "batch shape", got["batch_shape"] == [2, 3, 32, 32], got["batch_shape"])

    def text_table(report, case, result):
        report.check(case, "table with classes", result.returncode == 0 and "dog" in result.stdout and
                     "items    5" in result.stdout, result.stdout.splitlines()[:2])

    def clutter(report, case, summary):
        report.check(case, "64x64, all loaded", summary["image_size"] == [64, 64] and summary["verify"]["loaded"] == 30,
                     summary["verify"]["loaded"], 30)

    def skipped(report, case, result):
        summary = parse_json(report, case, result)
        if summary is None:
            return
        got = summary["verify"]
        report.check(case, "counted", got["skipped"] == 1 and got["loaded"] == 2, got["skipped"], 1)
        names = [item["name"] for item in got["skipped_items"]]
        report.check(case, "names the file", names == [cut], names)

    def usage(report, case, result):
        report.check(case, "documents the flags", result.returncode == 0 and "--skip-bad" in result.stdout and
                     "fmnist-clutter" in result.stdout)

    small = ["--crop", "16", "--resize", "16"]
    listed = [
        ("imagefolder train + verify", ["--data", f"imagefolder:{folder}", "--verify", "--crop", "32", "--resize", "36",
                                        "--batch-size", "2", "--json"],
         counts_checker(5, {0: 3, 1: 2}, ["cat", "dog"], verified_folder)),
        ("imagefolder val", ["--data", f"imagefolder:{folder}", "--split", "val", "--json"],
         counts_checker(2, {0: 1, 1: 1})),
        ("text output", ["--data", f"imagefolder:{folder}"], text_table),
        ("mnist gzip", ["--data", f"mnist:{fixtures['mnist']}", "--json"], counts_checker(7, {0: 1, 1: 2, 2: 3, 9: 1})),
        ("mnist raw val", ["--data", f"mnist:{fixtures['mnist']}", "--split", "val", "--json"],
         counts_checker(2, {3: 1, 4: 1})),
        ("cifar10", ["--data", f"cifar10:{fixtures['cifar10']}", "--json"],
         counts_checker(10, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 7: 5}, ["airplane", "automobile"])),
        ("cifar100 fine labels", ["--data", f"cifar100:{fixtures['cifar100']}", "--json"],
         counts_checker(3, {42: 2, 99: 1})),
        ("stl10", ["--data", f"stl10:{fixtures['stl10']}", "--json"],
         counts_checker(3, {0: 1, 9: 2}, ["airplane", "bird"])),
        ("corrupt image", ["--data", f"imagefolder:{broken}", "--verify", *small], error_checker(2, [cut])),
        ("--skip-bad", ["--data", f"imagefolder:{broken}", "--verify", "--skip-bad", *small, "--json"], skipped),
        ("empty class folder", ["--data", f"imagefolder:{fixtures['empty_class']}"],
         error_checker(2, [str(fixtures["empty_class"] / "train" / "hollow")])),
        ("missing val folder", ["--data", f"imagefolder:{fixtures['empty_class']}", "--split", "val"],
         error_checker(2, ["no 'val' folder"])),
        ("missing folder", ["--data", f"cifar10:{work / 'nowhere'}"], error_checker(3, ["nowhere"])),
        ("IDX magic", ["--data", f"mnist:{fixtures['bad_idx']}"],
         error_checker(2, [str(fixtures["bad_idx"] / "train-images-idx3-ubyte"), "0x00000802"])),
        ("truncated CIFAR batch", ["--data", f"cifar10:{fixtures['cifar10_truncated']}"],
         error_checker(2, [str(fixtures["cifar10_truncated"] / "data_batch_2.bin"), "3073-byte records"])),
        ("truncated STL batch", ["--data", f"stl10:{fixtures['stl10']}", "--split", "val"],
         error_checker(2, [str(fixtures["stl10"] / "stl10_binary" / "test_X.bin")])),
        ("unknown format", ["--data", "imagenet21k:/x"], error_checker(2, ["unknown dataset format"])),
        ("--help", ["--help"], usage),
    ]
    if (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        listed += [
            ("fashion-mnist --limit 100", ["--data", "fashion-mnist", "--limit", "100", "--json"],
             counts_checker(100, {label: 10 for label in range(10)}, ["T-shirt/top", "Trouser"])),
            ("fmnist-clutter verify", ["--data", "fmnist-clutter:1", "--split", "val", "--limit", "30", "--verify",
                                       "--crop", "64", "--resize", "64", "--json"],
             counts_checker(30, {label: 3 for label in range(10)}, more=clutter)),
        ]
    return listed


def main():
    work = harness.work_dir(fresh=True)
    fixtures = make_fixtures(work)
    report = harness.Report("vitprobe data")
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        report.check("fashion-mnist", "installed (dataset-fashion-mnist)", False, str(FASHION_DIR))
    listed = cases(fixtures, work)
    # Two runs at a time: each run spends about a second starting libtorch.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: harness.run_vitprobe(["data", *case[1]]), listed))
    for (case, _, check), result in zip(listed, results):
        check(report, case, result)
    return report.exit_code()


if __name__ == "__main__":
    harness.main_guard(main)
