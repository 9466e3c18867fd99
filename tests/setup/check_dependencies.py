"""Everything the configure step and the tests use is installed by scripts/setup, not by luck.

A fresh Debian 12 has only its base system; `./scripts/setup` installs the rest with apt's
--no-install-recommends. This test checks the build that CMake just configured, on this machine:
1. every file or folder CMake found (the PATH and FILEPATH entries of CMakeCache.txt, pkg-config's libraries)
   belongs to a Debian package that scripts/setup installs, or that one of those depends on (Depends and
   Pre-Depends, followed recursively through what is installed here; Recommends do not count), or to the base
   system (Essential, or priority required/important); or lies in the Python environment scripts/setup made
   (VITPROBE_PYTHON's, whose packages must be exactly scripts/requirements.txt's pins: libtorch comes from its
   torch), or in the machine's CUDA toolkit (CUDA_TOOLKIT_ROOT_DIR, installed on every machine of this kind);
2. every module the Python tests, benchmarks and fuzz/make_corpus.py import is in the standard library, a file of
   this project, or the module of a package pinned in scripts/requirements.txt (the table below).
Usage: check_dependencies.py BUILD_DIR
"""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Python modules the tests import -> the package of scripts/requirements.txt that provides them.
PYTHON_PACKAGES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "PIL": "pillow", "timm": "timm",
                   "safetensors": "safetensors"}
# Folder entries of the cache -> the header each stands for (checked instead of the folder).
HEADERS = {"CLI11_INCLUDE_DIR": "CLI/CLI.hpp", "JPEG_INCLUDE_DIR": "jpeglib.h", "PNG_PNG_INCLUDE_DIR": "png.h",
           "OpenCL_INCLUDE_DIR": "CL/cl.h", "Protobuf_INCLUDE_DIR": "google/protobuf/message.h",
           "ZLIB_INCLUDE_DIR": "zlib.h", "Unwind_INCLUDE_DIR": "libunwind.h"}
# Headers the engine includes from a folder it names itself (src/engine/CMakeLists.txt: /usr/include/stb).
EXTRA_HEADERS = ["stb/stb_image.h", "stb/stb_image_write.h"]
# Cache entries that name no dependency.
IGNORED_ENTRIES = {"CMAKE_INSTALL_PREFIX"}


def setup_packages():
    text = (ROOT / "scripts" / "setup").read_text()
    match = re.search(r"^PACKAGES=\((.*?)^\)", text, re.S | re.M)
    assert match, "scripts/setup has no PACKAGES=( ... ) list"
    words = []
    for line in match.group(1).splitlines():
        words += line.split("#", 1)[0].split()
    return set(words)


def requirements():
    """scripts/requirements.txt's pins: name -> version."""
    pins = {}
    for line in (ROOT / "scripts" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"scripts/requirements.txt: '{line}' is not pinned (name==version)"
            pins[name.strip().lower()] = version.strip()
    return pins


def cache_value(build_dir, name):
    match = re.search(rf"^{name}:[A-Z]+=(.*)$", (build_dir / "CMakeCache.txt").read_text(), re.M)
    return match.group(1) if match else None


def environment_versions(python):
    """Versions of the pinned packages installed in the environment of `python`."""
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([python, "-c", code] + sorted(requirements()), capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1:]
    return json.loads(out.stdout), None


def installed_packages():
    """name -> (depends, pre_depends, priority, essential) for every installed package, in one dpkg-query."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\\t${Status}\\t${Depends}\\t${Pre-Depends}\\t"
                          "${Priority}\\t${Essential}\\n"], capture_output=True, text=True, check=True).stdout
    packages = {}
    for line in out.splitlines():
        name, status, depends, pre_depends, priority, essential = (line.split("\t") + [""] * 6)[:6]
        if status == "install ok installed":
            packages[name] = (depends, pre_depends, priority, essential)
    return packages


def closure(roots, packages):
    """Packages in `roots` plus what they depend on (Depends, Pre-Depends), among the installed packages."""
    seen, todo = set(), list(roots)
    while todo:
        package = todo.pop()
        if package in seen or package not in packages:
            continue
        seen.add(package)
        depends, pre_depends = packages[package][:2]
        for relation in (depends + "," + pre_depends).split(","):
            alternatives = [a.split()[0].split(":")[0] for a in relation.split("|") if a.strip()]
            todo += [a for a in alternatives if a in packages]
    return seen


def base_system(packages):
    return {name for name, (_, _, priority, essential) in packages.items()
            if priority == "required" or essential == "yes"}


def owners(paths):
    """path -> set of packages owning it (dpkg -S, one call for all)."""
    result = subprocess.run(["dpkg", "-S"] + [str(p) for p in paths], capture_output=True, text=True)
    found = {str(p): set() for p in paths}
    for line in result.stdout.splitlines():
        if ": " not in line or line.startswith("diversion"):
            continue
        names, path = line.split(": ", 1)
        if path in found:
            found[path].update(name.strip().split(":")[0] for name in names.split(","))
    return found


def found_paths(build_dir):
    entries = []
    for line in (build_dir / "CMakeCache.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.+-]+):(PATH|FILEPATH|INTERNAL|STRING)=(/.*)$", line)
        if not match:
            continue
        name, kind, value = match.groups()
        if kind in ("INTERNAL", "STRING") and not name.startswith("pkgcfg_lib_"):
            continue
        if name in IGNORED_ENTRIES:
            continue
        path = Path(value)
        if not path.exists() or ROOT in path.resolve().parents or build_dir.resolve() in path.resolve().parents:
            continue
        entries.append((name, path))
    return entries


def main():
    build_dir = Path(sys.argv[1])
    wanted = setup_packages()
    packages = installed_packages()
    missing_from_machine = sorted(p for p in wanted if p not in packages)
    allowed = closure(wanted, packages) | base_system(packages)
    failures = []
    if missing_from_machine:
        failures.append(f"scripts/setup lists packages this machine lacks after setup ran: {missing_from_machine}")

    entries = found_paths(build_dir)
    # The Python environment (libtorch's headers, libraries and CMake config come from its torch) and the CUDA
    # toolkit: paths inside them are not Debian's. The environment must hold exactly the pinned versions.
    python = cache_value(build_dir, "VITPROBE_PYTHON")
    venv = Path(python).parent.parent if python and "/" in python else None
    cuda_root = cache_value(build_dir, "CUDA_TOOLKIT_ROOT_DIR")
    outside_debian = {}
    if venv is not None:
        versions, error = environment_versions(python)
        pins = requirements()
        if versions is None:
            failures.append(f"VITPROBE_PYTHON={python} cannot report its packages: {error}")
        else:
            for name, pin in pins.items():
                if versions[name].split("+")[0] != pin:
                    failures.append(f"the environment {venv} has {name} {versions[name]}, scripts/requirements.txt "
                                    f"pins {pin}")
        outside_debian[venv.resolve()] = f"the Python environment {venv} (scripts/requirements.txt)"
    else:
        failures.append("VITPROBE_PYTHON is not the python of an environment scripts/setup made")
    if cuda_root:
        outside_debian[Path(cuda_root).resolve()] = f"the CUDA toolkit {cuda_root}"
    by_origin = {}
    kept = []
    for name, path in entries:
        origin = next((label for root, label in outside_debian.items()
                       if root == path.resolve() or root in path.resolve().parents), None)
        if origin is None:
            kept.append((name, path))
        else:
            by_origin.setdefault(origin, []).append(name)
    entries = kept
    for origin, names in sorted(by_origin.items()):
        print(f"CMake cache: {len(names)} entries from {origin}")
    if venv is not None and not any("Python environment" in origin for origin in by_origin):
        failures.append(f"CMake did not find libtorch in the environment {venv} (Torch_DIR="
                        f"{cache_value(build_dir, 'Torch_DIR')})")
    checked = 0
    # A folder is owned by every package with a file in it (/usr/include by libc6-dev): it proves nothing. A
    # folder entry is checked through the file it stands for: the header named in HEADERS, or a CMake config
    # file inside it; the rest are counted as unchecked.
    files, unchecked = [], []
    for name, path in entries:
        if path.is_dir():
            if name in HEADERS:
                path = path / HEADERS[name]
            else:
                configs = sorted(path.glob("*onfig.cmake"))
                if not configs:
                    unchecked.append(name)
                    continue
                path = configs[0]
        files.append((name, path))
    files += [(f"engine include <{header}>", Path("/usr/include") / header) for header in EXTRA_HEADERS]
    owned = owners([p for _, p in files] + [p.resolve() for _, p in files])
    for name, path in files:
        packages = owned[str(path)] or owned[str(path.resolve())]
        if not packages:
            failures.append(f"CMake found {name}={path}, which no Debian package installed (installed by hand?)")
            continue
        checked += 1
        if not packages & allowed:
            failures.append(f"CMake found {name}={path} in {sorted(packages)}: not installed by scripts/setup, nor "
                            "a dependency of what it installs (a Recommends is not enough)")
    print(f"CMake cache: {checked} found files owned by Debian packages, checked against scripts/setup; "
          f"folders not checked (no file to stand for them): {unchecked}")

    imports = set()
    scripts = [p for folder in ("tests", "bench", "fuzz") for p in (ROOT / folder).rglob("*.py")]
    local = {p.stem for p in scripts}
    for script in scripts:
        for node in ast.walk(ast.parse(script.read_text(), str(script))):
            if isinstance(node, ast.Import):
                imports.update((alias.name.split(".")[0], script) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imports.add((node.module.split(".")[0], script))
    third_party = set()
    for module, script in sorted(imports):
        if module in sys.stdlib_module_names or module in local:
            continue
        third_party.add(module)
        package = PYTHON_PACKAGES.get(module)
        if package is None:
            failures.append(f"{script.relative_to(ROOT)} imports '{module}', which no package pinned in "
                            "scripts/requirements.txt provides")
        elif package not in requirements():
            failures.append(f"{script.relative_to(ROOT)} imports '{module}' from {package}, not pinned in "
                            "scripts/requirements.txt")
    print(f"Python: third-party modules imported by tests and benchmarks: {sorted(third_party)}")

    for failure in failures:
        print("FAIL:", failure)
    print(f"dependencies: {len(entries)} cache entries and {len(imports)} imports checked, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
