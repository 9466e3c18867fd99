#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, generated (nothing binary is committed).

Usage: make_corpus.py OUT_DIR   -> OUT_DIR/<target>/<seed> for every target of fuzz/CMakeLists.txt.
Seeds are small valid inputs written by the reference libraries (torch.save, numpy.save, Pillow) or, where
no such library is installed (safetensors, IDX, CIFAR), by hand after their specifications; a few
near-misses too. Inputs of the targets that read several files use fuzz_common.h's split_parts layout.
Runs with the Python environment scripts/setup makes (torch, numpy, Pillow: scripts/requirements.txt).
"""
import argparse
import collections
import gzip
import io
import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def parts(*chunks):
    """fuzz_common.h's split_parts layout: each part a 4-byte little-endian length then its bytes."""
    return b"".join(struct.pack("<I", len(c)) + c for c in chunks)


def torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def tiny_vit(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    d, p = 8, 4
    state = collections.OrderedDict()
    state["cls_token"] = torch.randn(1, 1, d, generator=g)
    state["pos_embed"] = torch.randn(1, 5, d, generator=g)
    state["patch_embed.proj.weight"] = torch.randn(d, 3, p, p, generator=g)
    state["patch_embed.proj.bias"] = torch.zeros(d)
    state["blocks.0.norm1.weight"] = torch.ones(d)
    state["blocks.0.attn.qkv.weight"] = torch.randn(3 * d, d, generator=g)
    state["norm.weight"] = torch.ones(d)
    return collections.OrderedDict((k, v.to(dtype)) for k, v in state.items())


def checkpoints():
    """Small torch.save objects of the shapes real checkpoints have."""
    base = torch.arange(12, dtype=torch.float32)
    yield "state_dict", tiny_vit()
    yield "half", tiny_vit(torch.float16)
    yield "bf16", tiny_vit(torch.bfloat16)
    yield "nested", {"model": tiny_vit(), "epoch": 3, "args": {"lr": 1e-3, "name": "vit", "flags": [True, None]},
                     "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}}
    yield "views", {"a": base, "b": base[2:8].view(2, 3), "c": base.view(3, 4).t(), "d": base[::3],
                    "e": base.expand(2, 12)}
    yield "dtypes", {"i64": torch.arange(3), "i32": torch.arange(3, dtype=torch.int32),
                     "u8": torch.arange(3, dtype=torch.uint8), "b": torch.tensor([True, False]),
                     "f64": torch.tensor([1.5, -2.0], dtype=torch.float64), "scalar": torch.tensor(2.0),
                     "empty": torch.zeros(0, 3)}
    yield "list", [torch.ones(2), (1, 2.5, "x", b"y"), {1: "one", None: 2, True: 3}, frozenset({1, 2}), {3}]
    yield "big_int", {"n": 2 ** 70, "neg": -(2 ** 40), "f": float("inf")}


def pickle_seeds(out):
    for name, obj in checkpoints():
        with zipfile.ZipFile(io.BytesIO(torch_bytes(obj))) as archive:
            data_pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            (out / f"{name}.pkl").write_bytes(archive.read(data_pkl))
    for protocol in (0, 2, 4, 5):
        (out / f"plain_p{protocol}.pkl").write_bytes(pickle.dumps(
            {"a": [1, 2, (3, "x")], "b": {"c": None, "d": 1.5, "e": b"bytes"}, "f": True}, protocol=protocol))
    shared = [1, 2]
    (out / "shared.pkl").write_bytes(pickle.dumps([shared, shared, [shared, shared]], protocol=2))


def torch_archive_seeds(out):
    for name, obj in checkpoints():
        data = torch_bytes(obj)
        (out / f"{name}.pt").write_bytes(data)
    # The same archive with deflated records (torch.save stores; other writers deflate).
    with zipfile.ZipFile(io.BytesIO(torch_bytes(tiny_vit()))) as stored:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as deflated:
            for info in stored.infolist():
                deflated.writestr(info.filename, stored.read(info))
        (out / "deflated.pt").write_bytes(buffer.getvalue())


def safetensors_bytes(tensors, metadata=None):
    codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, tensor in tensors.items():
        raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": codes[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds(out):
    (out / "vit.safetensors").write_bytes(safetensors_bytes(tiny_vit(), {"format": "pt", "img_size": "224"}))
    (out / "bf16.safetensors").write_bytes(safetensors_bytes(tiny_vit(torch.bfloat16)))
    (out / "dtypes.safetensors").write_bytes(safetensors_bytes(
        {"i64": torch.arange(3), "i32": torch.arange(3, dtype=torch.int32), "u8": torch.arange(3, dtype=torch.uint8),
         "b": torch.tensor([True, False]), "f64": torch.tensor([1.5]), "f16": torch.ones(2, dtype=torch.float16),
         "scalar": torch.tensor(2.0), "empty": torch.zeros(0, 3)}))
    (out / "empty.safetensors").write_bytes(safetensors_bytes({}))


def npy_seeds(out):
    arrays = {"f4": np.arange(12, dtype="<f4").reshape(3, 4), "f8": np.linspace(0, 1, 5), "f2": np.ones(3, "<f2"),
              "i8": np.arange(4, dtype="<i8"), "i4": np.arange(6, dtype="<i4").reshape(2, 3),
              "u1": np.arange(8, dtype="u1").reshape(2, 2, 2), "b1": np.array([True, False]),
              "scalar": np.array(3.5, dtype="<f4"), "empty": np.zeros((0, 4), "<f4"),
              "fortran": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3))}
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, array)
        (out / f"{name}.npy").write_bytes(buffer.getvalue())
    for version in ((2, 0), (3, 0)):
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, arrays["f4"], version=version)
        (out / f"f4_v{version[0]}.npy").write_bytes(buffer.getvalue())


def idx(dims, data):
    return struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + data


def idx_seeds(out):
    images = idx([3, 4, 5], bytes(range(60)))
    labels = idx([3], bytes([0, 9, 4]))
    for flags in (0, 1, 2, 3):
        (out / f"plain_{flags}").write_bytes(bytes([flags]) + parts(images, labels))
    (out / "gzip").write_bytes(bytes([4]) + parts(gzip.compress(images), gzip.compress(labels)))
    (out / "mismatch").write_bytes(bytes([0]) + parts(images, idx([2], bytes([1, 2]))))


def cifar_stl_seeds(out):
    pixels = bytes(i % 256 for i in range(3072))
    names10 = "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                         "truck"]).encode() + b"\n"
    (out / "cifar10").write_bytes(bytes([0]) + parts(bytes([3]) + pixels + bytes([9]) + pixels, b""))
    (out / "cifar10_names").write_bytes(bytes([0]) + parts(bytes([3]) + pixels, names10))
    names100 = "\n".join(f"class{i}" for i in range(100)).encode()
    (out / "cifar100").write_bytes(bytes([1]) + parts(bytes([1, 42]) + pixels, b""))
    (out / "cifar100_names").write_bytes(bytes([1]) + parts(bytes([1, 99]) + pixels, names100))
    image = bytes(i % 251 for i in range(96 * 96 * 3))
    (out / "stl10").write_bytes(bytes([2]) + parts(image, bytes([10]), b""))
    (out / "stl10_names").write_bytes(bytes([2]) + parts(gzip.compress(image), bytes([1]), names10))


def image_seeds(out):
    rgb = Image.fromarray(np.arange(24 * 20 * 3, dtype=np.uint8).reshape(20, 24, 3))
    grey = rgb.convert("L")

    def save(name, image, fmt, **options):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        (out / name).write_bytes(buffer.getvalue())

    save("rgb.jpg", rgb, "JPEG", quality=80)
    save("progressive.jpg", rgb, "JPEG", progressive=True)
    save("grey.jpg", grey, "JPEG")
    save("cmyk.jpg", rgb.convert("CMYK"), "JPEG")
    save("rgb.png", rgb, "PNG")
    save("rgba.png", rgb.convert("RGBA"), "PNG")
    save("grey.png", grey, "PNG")
    save("la.png", rgb.convert("LA"), "PNG")
    save("palette.png", rgb.convert("P"), "PNG")
    save("bilevel.png", grey.convert("1"), "PNG")
    save("grey16.png", Image.fromarray((np.arange(20 * 24, dtype=np.uint16) * 97).reshape(20, 24)), "PNG")
    save("rgb.ppm", rgb, "PPM")
    save("grey.pgm", grey, "PPM")
    (out / "plain.ppm").write_bytes(b"P3\n# comment\n2 2\n255\n255 0 0  0 255 0\n0 0 255  255 255 255\n")
    (out / "plain.pgm").write_bytes(b"P2\n3 1\n15\n0 7 15\n")
    (out / "wide.ppm").write_bytes(b"P6\n1 1\n65535\n" + bytes(6))


def text_seeds(out):
    texts = {"lines": b"cat\ndog\r\nbird  \n\n", "no_newline": b"one", "empty": b"",
             "heads": b"cls,mean,cls+mean,center:4,cattn:4,attn-mean,attn-minent",
             "heads2": b"abmilp:depth=2,act=tanh,sa=both,cond=pe,content=all;ep:32,d_out=2,ep_all:8,simpool,aim,"
                       b"vjepa:heads=4,depth=2,knn,knn:feature=mean",
             "preset": b"vit_base_patch16_224", "preset2": b"vit_small_patch14"}
    selector = {"lines": 0, "no_newline": 1, "empty": 0, "heads": 2, "heads2": 2, "preset": 3, "preset2": 3}
    for name, text in texts.items():
        (out / name).write_bytes(bytes([selector[name]]) + text)
    (out / "lines_b").write_bytes(bytes([1]) + texts["lines"])


SEEDS = {"pickle": pickle_seeds, "torch_archive": torch_archive_seeds, "safetensors": safetensors_seeds,
         "npy": npy_seeds, "idx": idx_seeds, "cifar_stl": cifar_stl_seeds, "image": image_seeds, "text": text_seeds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    for target, make in SEEDS.items():
        folder = args.out / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        make(folder)
    print(f"make_corpus: {sum(1 for _ in args.out.glob('*/*'))} seeds for {len(SEEDS)} targets in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
