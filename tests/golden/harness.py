"""Shared plumbing of the golden and CLI test drivers: environment, running vitprobe, a result table.

CTest (tests/CMakeLists.txt, vitprobe_py_test) sets VITPROBE_BIN, VITPROBE_SHARED and VITPROBE_WORK; a
driver fails with a clear message, rather than a traceback, when one is missing. Every check is recorded as
a row (what, measured value, limit, ok) and printed as one table at the end, so a failing CTest log shows
all the numbers and not only the first failure.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

RUN_TIMEOUT_S = 300


class SetupError(Exception):
    """The test cannot run at all (missing binary, missing environment variable)."""


def env_path(name, must_exist=True):
    value = os.environ.get(name)
    if not value:
        raise SetupError(f"environment variable {name} is not set (run through ctest)")
    path = Path(value)
    if must_exist and not path.exists():
        raise SetupError(f"{name}={value} does not exist")
    return path


def vitprobe_bin():
    path = env_path("VITPROBE_BIN")
    if not os.access(path, os.X_OK):
        raise SetupError(f"VITPROBE_BIN={path} is not executable")
    return path


def shared_dir():
    return env_path("VITPROBE_SHARED")


def selected_cases(known):
    """The case names given on the command line (all of `known` when none), or None after saying on stderr which
    names are unknown."""
    known = list(known)
    names = sys.argv[1:] or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown case(s) {unknown}; known: {known}", file=sys.stderr)
        return None
    return names


def work_dir(subdir=None, fresh=False):
    """The test's scratch folder (created); with fresh=True the given sub-folder starts empty."""
    path = env_path("VITPROBE_WORK", must_exist=False)
    if subdir:
        path = path / subdir
    if fresh and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_vitprobe(args, timeout=RUN_TIMEOUT_S):
    """Run the binary with string arguments; returns the CompletedProcess (text mode, never raises on rc)."""
    command = [str(vitprobe_bin())] + [str(a) for a in args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def describe_run(result):
    """A few lines that show what a failed run did, for the failure message."""
    return (f"  command: {' '.join(result.args)}\n  exit code: {result.returncode}\n"
            f"  stderr: {result.stderr.strip()[-2000:]}\n  stdout: {result.stdout.strip()[-1000:]}")


def load_json(text, what):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise AssertionError(f"{what} is not valid JSON ({error}): {text[:500]!r}")


def files_under(folder):
    """All regular files below folder (empty when the folder does not exist)."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def read_safetensors(path):
    """{name: float64 array} of a safetensors file (F32, F64, BF16, I64), without the safetensors package."""
    import struct
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        raw = data[start:end]
        if entry["dtype"] == "BF16":
            values = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            values = np.frombuffer(raw, dtype={"F32": np.float32, "F64": np.float64, "I64": np.int64}[entry["dtype"]])
        out[name] = values.reshape(entry["shape"]).astype(np.float64)
    return out


def max_abs_diff(actual, expected):
    return float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))


def min_token_cosine(actual, expected):
    """Smallest cosine similarity between corresponding token vectors of two (B, T, D) arrays."""
    a = actual.astype(np.float64)
    b = expected.astype(np.float64)
    cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cosine.min())


class Report:
    """Collects checks as table rows; exit_code() is 1 when any failed."""

    def __init__(self, title):
        self.title = title
        self.rows = []
        self.messages = []

    def check(self, subject, what, ok, value="", limit=""):
        self.rows.append((subject, what, str(value), str(limit), "ok" if ok else "FAIL"))
        return ok

    def fail(self, subject, message):
        self.rows.append((subject, message.splitlines()[0][:70], "", "", "FAIL"))
        self.messages.append(f"[{subject}] {message}")

    @property
    def failed(self):
        return any(row[-1] == "FAIL" for row in self.rows)

    def print_summary(self):
        header = ("case", "check", "value", "limit", "")
        widths = [max(len(str(r[i])) for r in self.rows + [header]) for i in range(5)]
        print(f"== {self.title}")
        for row in [header] + self.rows:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        for message in self.messages:
            print(message)
        failures = [f"{r[0]}: {r[1]}" + (f" = {r[2]} (limit {r[3]})" if r[2] or r[3] else "")
                    for r in self.rows if r[-1] == "FAIL"]
        if failures:
            print(f"FAILED {len(failures)} check(s):\n  " + "\n  ".join(failures))
        else:
            print(f"all {len(self.rows)} checks passed")

    def exit_code(self):
        self.print_summary()
        return 1 if self.failed else 0


def main_guard(run):
    """Call run() -> exit code, turning a SetupError into one clear message and exit 1."""
    try:
        code = run()
    except SetupError as error:
        print(f"setup error: {error}", file=sys.stderr)
        code = 1
    sys.exit(code)
