"""Where the configure of a gpu-check run found each package it needs, read from CMakeCache.txt.

Usage: provenance.py CMAKECACHE PREFIX DRY   -> JSON on stdout, a table on stderr

Each entry is "prefix" (the unpacked .deb files), "system" or "missing". In a dry run (DRY=1) the search skips
/usr, so every entry must come from the prefix: the exit code is 1 otherwise, naming the entries.
"""
import json
import sys

ENTRIES = ["dnnl_DIR", "nlohmann_json_DIR", "GTest_DIR", "JPEG_INCLUDE_DIR", "JPEG_LIBRARY_RELEASE",
           "PNG_PNG_INCLUDE_DIR", "PNG_LIBRARY_RELEASE", "ZLIB_INCLUDE_DIR", "ZLIB_LIBRARY_RELEASE",
           "CLI11_INCLUDE_DIR", "OpenCL_INCLUDE_DIR", "OpenCL_LIBRARY", "pkgcfg_lib_CAIRO_cairo", "Torch_DIR"]
NOT_FROM_PREFIX = {"Torch_DIR"}  # the machine's PyTorch


def main(cache_path, prefix, dry):
    values = {}
    for line in open(cache_path):
        if "=" in line and ":" in line.split("=", 1)[0] and not line.startswith(("//", "#")):
            key, value = line.rstrip("\n").split("=", 1)
            values[key.split(":", 1)[0]] = value
    prefix_root = prefix.rsplit("/usr", 1)[0]
    report, wrong = {}, []
    for name in ENTRIES:
        value = values.get(name, "")
        if not value or value.endswith("-NOTFOUND"):
            where = "missing"
        elif value.startswith(prefix_root):
            where = "prefix"
        else:
            where = "system"
        report[name] = {"value": value, "from": where}
        if dry == "1" and name not in NOT_FROM_PREFIX and where != "prefix":
            wrong.append(f"{name}={value or '(unset)'}")
        print(f"  {name:24} {where:8} {value}", file=sys.stderr)
    print(json.dumps(report, indent=1))
    if wrong:
        print("provenance: not from the unpacked packages in a dry run: " + ", ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
