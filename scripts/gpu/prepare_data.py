"""Copies the inputs of the gpu-labelled tests (tests/gpu/) into a folder that travels to the GPU machine.

Usage: prepare_data.py SHARED DEST

DEST/vit_tiny_patch16_224.in1k.bf16.safetensors  ViT-Ti/16 of SHARED/models with its weights rounded to bf16
    (11 MB instead of 22: the tests compare CUDA with CPU on the same file, so the rounding costs nothing)
DEST/imagenet-sample/                            the 17 photos, labels.txt and the class names
DEST/fashion-mnist/                              the first 2000 training and 500 test images of Debian's
                                                 dataset-fashion-mnist, as gzip IDX files of the same names
"""
import gzip
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import safetensors_file  # noqa: E402

VIT_TINY = "models/vit_tiny_patch16_224.in1k.safetensors"
PHOTOS = "data/imagenet-sample"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SUBSET = {"train": 2000, "t10k": 500}


def to_bf16(values):
    """float32 -> bf16 bit patterns, rounded to nearest even (as torch's .to(torch.bfloat16))."""
    bits = values.astype("<f4").view(np.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + rounding) >> 16).astype("<u2")


def write_bf16_safetensors(source, dest):
    with open(source, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensors = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        if entry["dtype"] == "F32":
            tensors.append((name, "BF16", entry["shape"], to_bf16(np.frombuffer(data[start:end], dtype="<f4")).tobytes()))
        else:
            tensors.append((name, entry["dtype"], entry["shape"], data[start:end]))
    safetensors_file.write(dest, tensors, header.get("__metadata__"))


def write_idx_subset(source_dir, dest_dir, prefix, count):
    for kind, item_bytes in (("images-idx3-ubyte", 28 * 28), ("labels-idx1-ubyte", 1)):
        with gzip.open(source_dir / f"{prefix}-{kind}.gz", "rb") as f:
            raw = f.read()
        header = 16 if kind.startswith("images") else 8
        head = bytearray(raw[:header])
        head[4:8] = struct.pack(">I", count)
        with gzip.open(dest_dir / f"{prefix}-{kind}.gz", "wb") as f:
            f.write(bytes(head) + raw[header:header + count * item_bytes])


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    shared, dest = Path(argv[1]), Path(argv[2])
    dest.mkdir(parents=True, exist_ok=True)
    write_bf16_safetensors(shared / VIT_TINY, dest / "vit_tiny_patch16_224.in1k.bf16.safetensors")
    shutil.copytree(shared / PHOTOS, dest / "imagenet-sample", dirs_exist_ok=True)
    (dest / "fashion-mnist").mkdir(exist_ok=True)
    for prefix, count in SUBSET.items():
        write_idx_subset(FASHION_MNIST, dest / "fashion-mnist", prefix, count)
    for path in sorted(dest.rglob("*")):
        if path.is_file() and path.parent == dest or path.parent.name == "fashion-mnist":
            print(f"  {path.relative_to(dest)}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv)
