"""The command pages in docs/commands/ against the binary: every subcommand of `vitprobe --help` has a page,
README links to every page, and the `--help` block of each page is what `vitprobe CMD --help` prints.

Usage: check_docs.py   (run through ctest: VITPROBE_BIN)

A page holds its help text between `<!-- help:CMD -->` and `<!-- /help -->` in a fenced block. On a
difference the test prints the lines that differ; paste the binary's output into the page (and check that the
page's prose still says the same defaults).
"""
import difflib
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from harness import Report, main_guard, run_vitprobe  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "commands"
HELP_BLOCK = re.compile(r"<!-- help:(?P<name>[\w -]+) -->\n```\n(?P<text>.*?)```\n<!-- /help -->", re.S)
# --cache-dir's default is the user's cache folder; pages show it as ~/.cache/vitprobe/features.
CACHE_DEFAULT = "~/.cache/vitprobe/features"


def subcommands(report):
    """The subcommand names of `vitprobe --help` (CLI11 lists them under SUBCOMMANDS:)."""
    result = run_vitprobe(["--help"], timeout=60)
    report.check("vitprobe --help", "exit code", result.returncode == 0, result.returncode, 0)
    names, listing = [], False
    for line in result.stdout.splitlines():
        if line.strip().upper().startswith("SUBCOMMANDS"):
            listing = True
        elif listing and line.startswith("  ") and line.strip():
            names.append(line.split()[0])
    return names


def help_text(command):
    """`vitprobe COMMAND --help` (COMMAND: "probe", "pretrain mae", ...) with the user's cache folder written as
    CACHE_DEFAULT."""
    result = run_vitprobe(command.split() + ["--help"], timeout=60)
    home_cache = str(Path(os.environ["HOME"]) / ".cache" / "vitprobe" / "features")
    return result.returncode, result.stdout.replace(home_cache, CACHE_DEFAULT)


def run():
    # The default cache folder then depends on HOME only.
    for variable in ("VITPROBE_CACHE", "XDG_CACHE_HOME"):
        os.environ.pop(variable, None)
    os.environ.setdefault("HOME", "/root")
    report = Report("docs/commands against vitprobe --help")
    names = subcommands(report)
    report.check("vitprobe --help", "lists subcommands", len(names) >= 10, len(names), ">= 10")
    readme = (REPO / "README.md").read_text()
    for name in names:
        page = DOCS / f"{name}.md"
        if not report.check(name, "has docs/commands page", page.is_file(), page.relative_to(REPO)):
            continue
        link = f"docs/commands/{name}.md"
        report.check(name, "README links the page", link in readme, link)
        blocks = {m.group("name"): m.group("text") for m in HELP_BLOCK.finditer(page.read_text())}
        if not report.check(name, "page has its help block", name in blocks, ", ".join(blocks) or "none"):
            continue
        for command, documented in blocks.items():  # the command's own, and its subcommands' (pretrain mae)
            code, actual = help_text(command)
            report.check(command, "--help exit code", code == 0, code, 0)
            differing = list(difflib.unified_diff(documented.splitlines(), actual.splitlines(), page.name,
                                                  f"vitprobe {command} --help", lineterm=""))
            if not report.check(command, "help block equals --help", not differing, f"{len(differing)} diff lines", 0):
                report.messages.append("\n".join(differing))
    extra = sorted(p.stem for p in DOCS.glob("*.md") if p.stem not in names)
    report.check("docs/commands", "no page for a command that does not exist", not extra, ", ".join(extra) or "none")
    return report.exit_code()


if __name__ == "__main__":
    main_guard(run)
