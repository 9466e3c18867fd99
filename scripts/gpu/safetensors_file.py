"""Writes a safetensors file with the standard library alone (the GPU machine may lack the safetensors package).

write(path, tensors, metadata=None): tensors is an iterable of (name, dtype, shape, raw little-endian bytes), dtype
a safetensors name ("BF16", "F32", ...); the header is padded with spaces to a multiple of 8 bytes and the file
is written under a temporary name and renamed, so a stopped run leaves no partial file.
"""
import json
import struct
from pathlib import Path


def write(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    with open(temporary, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    temporary.replace(path)
