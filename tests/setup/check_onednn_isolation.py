"""Two oneDNNs in one process cannot clash: PyTorch 2.x's own (inside libtorch_cpu) and Debian's libdnnl 2.x,
which vitprobe's fast CPU path calls.

Checks, on the built binary:
1. libtorch_cpu.so exports no oneDNN C API function (dnnl_*): its oneDNN is linked in with hidden symbols, so
   none of vitprobe's dnnl_* calls can bind to it;
2. at run time every dnnl_* function vitprobe calls binds to Debian's libdnnl.so (LD_DEBUG=bindings); the symbols
   both libraries export are weak template copies only, and libdnnl comes first in the load order, so its own
   copies serve it (libtorch_cpu's, first, left libdnnl's JIT GEMM uninitialised: every product failed);
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

    # Symbols both libraries export: weak template instantiations (std::call_once helpers of oneDNN's GEMM
    # set-up among them). Whichever library comes first serves both; vitprobe links libdnnl first (see
    # src/engine/CMakeLists.txt). A strong (T) symbol in both would be a real clash.
    def exports(path):
        text = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
        return {parts[2]: parts[1] for parts in (line.split() for line in text.splitlines()) if len(parts) == 3}
    theirs, ours_exports = exports(torch_cpu), exports(dnnl)
    shared = sorted(set(theirs) & set(ours_exports))
    strong = [name for name in shared if theirs[name] in "TDB" and ours_exports[name] in "TDB"]
    print(f"symbols exported by both libtorch_cpu.so and libdnnl: {len(shared)} (strong in both: {len(strong)})")
    if strong:
        failures.append(f"strong symbols in both oneDNNs: {strong[:5]}")
    needed = re.findall(r"NEEDED\)\s+Shared library: \[(\S+)\]",
                        subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout)
    libstdcxx = [n for n in needed if n.startswith(("libstdc++", "libtorch"))]
    if not libstdcxx or not libstdcxx[0].startswith("libstdc++"):
        failures.append(f"libstdc++ must come before libtorch in vitprobe's NEEDED list (found {libstdcxx}): the "
                        "wheel's exported std::filesystem would serve vitprobe's calls")
    order = [n for n in needed if n.startswith(("libdnnl", "libtorch_cpu"))]
    print(f"load order: {order}")
    if not order or not order[0].startswith("libdnnl"):
        failures.append(f"libdnnl must come before libtorch_cpu in vitprobe's NEEDED list (found {order}): "
                        "libtorch_cpu's weak copies of oneDNN 3.x's GEMM set-up would serve libdnnl 2.x")

    environment = dict(os.environ, LD_DEBUG="bindings")
    run = subprocess.run([binary, "--version"], capture_output=True, text=True, env=environment)
    if run.returncode != 0:
        failures.append(f"vitprobe --version exited {run.returncode}: {run.stderr[-500:]}")
    bindings = re.findall(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `(dnnl_\w+)'", run.stderr)
    ours = [(target, symbol) for source, target, symbol in bindings if "libdnnl" not in Path(source).name]
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
