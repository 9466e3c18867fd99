"""Two oneDNNs in one process cannot clash: PyTorch 2.x's own (inside libtorch_cpu) and Debian's libdnnl 2.x,
which vitprobe's fast CPU path calls.

Checks, on the built binary:
1. libtorch_cpu.so exports no oneDNN C API function (dnnl_*): its oneDNN is linked in with hidden symbols, so
   none of vitprobe's dnnl_* calls can bind to it;
2. at run time every dnnl_* function vitprobe calls binds to Debian's libdnnl.so (LD_DEBUG=bindings), and the
   version it reports is the one CMake found;
3. one OpenMP runtime: the process maps exactly one libgomp (libtorch's thread pool, oneDNN's and vitprobe's
   parallel loops share it, and with it one thread count).
Usage: check_onednn_isolation.py VITPROBE_BIN
"""
import os
import re
import subprocess
import sys
from pathlib import Path


def main():
    binary = sys.argv[1]
    failures = []
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libraries = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    torch_cpu = libraries.get("libtorch_cpu.so")
    dnnl = next((path for name, path in libraries.items() if name.startswith("libdnnl.so")), None)
    if not torch_cpu or not dnnl:
        print(ldd)
        return fail([f"ldd: libtorch_cpu.so -> {torch_cpu}, libdnnl -> {dnnl} (both expected)"])
    print(f"libtorch_cpu: {torch_cpu}\nlibdnnl: {dnnl}")

    exported = subprocess.run(["nm", "-D", "--defined-only", torch_cpu], capture_output=True, text=True,
                              check=True).stdout
    c_api = sorted({m for m in re.findall(r"\s[TtWw]\s(dnnl_\w+)$", exported, re.M)})
    if c_api:
        failures.append(f"libtorch_cpu.so exports oneDNN C functions {c_api[:5]}... ({len(c_api)}): vitprobe's "
                        "calls could bind to PyTorch's oneDNN")
    print(f"oneDNN C functions exported by libtorch_cpu.so: {len(c_api)}")

    environment = dict(os.environ, LD_DEBUG="bindings")
    run = subprocess.run([binary, "--version"], capture_output=True, text=True, env=environment)
    if run.returncode != 0:
        failures.append(f"vitprobe --version exited {run.returncode}: {run.stderr[-500:]}")
    bindings = re.findall(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `(dnnl_\w+)'", run.stderr)
    ours = [(target, symbol) for source, target, symbol in bindings
            if Path(source).name in ("vitprobe",) or "libdnnl" not in Path(source).name]
    if not ours:
        failures.append("vitprobe --version bound no dnnl_* symbol (LD_DEBUG=bindings): nothing checked")
    for target, symbol in ours:
        if "libdnnl" not in Path(target).name:
            failures.append(f"{symbol} bound to {target}, not Debian's libdnnl")
    print(f"dnnl_* bindings of vitprobe: {len(ours)}, all to {sorted({Path(t).name for t, _ in ours})}")

    gomp = [name for name in libraries if "gomp" in name]
    print(f"OpenMP runtimes: ldd {gomp} -> {[libraries[n] for n in gomp]}")
    if len(gomp) != 1:
        failures.append(f"{len(gomp)} OpenMP runtimes in ldd's list: {gomp}")
    return fail(failures)


def fail(failures):
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
