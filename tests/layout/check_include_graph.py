"""The include graph of src/ (issue 13): who may include whom.

Usage: check_include_graph.py [SOURCE_ROOT]   (default: the checkout this file is in)

Rules, checked on every `#include "..."` of src/engine and src/cli (.h and .cpp):
  1. Engine libraries (every folder of src/engine but jobs/: stats, probe, model, data, checkpoint, io, kernels,
     common, image, report, pretrain, distributed, ...) include nothing from jobs/ and nothing from src/cli.
  2. jobs/ includes engine libraries and jobs/ only, nothing from src/cli.
  3. src/cli includes jobs/ and common/ headers and its own (cli_common.h) only; the option types it fills reach
     it through jobs/ headers (jobs/job_options.h). One exception: the compute-dtype choice
     (default_compute_dtype, for --dtype of attn-stats, maps and embed), model/compute_dtype.h.
Every quoted include must name an existing file under src/engine or beside the including file, so that no
include escapes the rules by not resolving. Prints what it checked; fails with FILE:LINE of each violation.
"""
import re
import sys
from pathlib import Path

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
CLI_ALLOWED_FOLDERS = {"jobs", "common"}
CLI_EXCEPTIONS = {"model/compute_dtype.h"}


def includes_of(path):
    """(line number, included text) of every quoted include of a file."""
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        match = INCLUDE.match(line)
        if match:
            yield number, match.group(1)


def main():
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    engine, cli = root / "src" / "engine", root / "src" / "cli"
    if not (engine / "jobs").is_dir() or not cli.is_dir():
        print(f"check_include_graph: {root} has no src/engine/jobs or src/cli")
        return 1
    libraries = sorted(p.name for p in engine.iterdir() if p.is_dir() and p.name != "jobs")
    sources = sorted(p for folder in (engine, cli) for p in folder.rglob("*") if p.suffix in (".h", ".cpp"))
    violations, counts = [], {"library": 0, "jobs": 0, "cli": 0}
    for path in sources:
        relative = path.relative_to(root)
        in_cli = cli in path.parents
        folder = "cli" if in_cli else path.relative_to(engine).parts[0]
        kind = "cli" if in_cli else ("jobs" if folder == "jobs" else "library")
        for number, included in includes_of(path):
            where = f"{relative}:{number}"
            target_folder = included.split("/")[0] if "/" in included else None
            if (engine / included).is_file():
                target = "engine"
            elif (path.parent / included).is_file():
                target = "local"
                target_folder = "cli" if in_cli or cli in (path.parent / included).resolve().parents else folder
            elif not in_cli and (cli / included).is_file():
                violations.append(f"{where}: {folder}/ includes the CLI's \"{included}\"")
                continue
            else:
                violations.append(f"{where}: #include \"{included}\" names no file under src/engine or beside it")
                continue
            counts[kind] += 1
            if kind == "library":
                if target_folder == "jobs":
                    violations.append(f"{where}: engine library {folder}/ includes \"{included}\" from jobs/")
                elif target_folder == "cli":
                    violations.append(f"{where}: engine library {folder}/ includes the CLI's \"{included}\"")
            elif kind == "jobs":
                if target == "local" or target_folder not in libraries + ["jobs"]:
                    violations.append(f"{where}: jobs/ includes \"{included}\", which is not an engine library header")
            else:
                allowed = (target == "local" or target_folder in CLI_ALLOWED_FOLDERS or included in CLI_EXCEPTIONS)
                if not allowed:
                    violations.append(f"{where}: src/cli includes \"{included}\"; the CLI includes jobs/ and common/ "
                                      "headers only (route the type or function through a jobs/ header)")
    print(f"checked {len(sources)} files of src/engine and src/cli: {counts['library']} includes in the engine "
          f"libraries ({', '.join(libraries)}) may not reach jobs/ or src/cli; {counts['jobs']} includes in jobs/ "
          f"may reach engine libraries and jobs/ only; {counts['cli']} includes in src/cli may reach only "
          f"{' and '.join(f + '/' for f in sorted(CLI_ALLOWED_FOLDERS))}, its own headers, and "
          f"{' or '.join(sorted(CLI_EXCEPTIONS))}")
    for violation in violations:
        print(violation)
    print(f"FAILED: {len(violations)} include(s) break the layout rules" if violations else "OK")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
