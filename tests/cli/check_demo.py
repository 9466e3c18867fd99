#!/usr/bin/env python3
"""`vitprobe demo --quick` end to end: it finishes and writes a complete report.

Checks the report files exist; report.md opens with the verdict table (the four claims, each with a verdict
from the allowed set, matching demo.json); every figure exists as a valid PNG (signature, IHDR) and a
non-empty SVG that parses as XML, and report.md refers to each by relative path; index.html embeds every PNG
(its bytes, base64) and refers to no file or network address; headings nest (one h1, no level skipped) in
report.md and index.html; the per-block statistics table has a row per block of each bundled encoder; the
one-seed accuracy table prints no spread ("(1 seed)", no "±"); with two rates no encoder counts as tuned for
the tuned-rate claim; each probe folder has its results.
"""
import base64
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERDICTS = {"reproduced", "not reproduced", "inconclusive"}
FIGURES = ["attn-stats/attention_stats", "figures/lr_curves", "figures/tsne", "figures/overlays-MAE",
           "figures/overlays-DINO"]


def section(markdown, heading):
    """The lines of a '## heading' section of markdown, up to the next heading of level 2 or 1."""
    lines, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("## ") or line.startswith("# "):
            inside = line.strip() == "## " + heading
            continue
        if inside:
            lines.append(line)
    return lines


def table_rows(lines):
    """Cells of the data rows of the first markdown table in lines."""
    rows = [line for line in lines if line.startswith("|")]
    rows = [row for row in rows[1:] if not re.fullmatch(r"[|\-: ]+", row)]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def heading_failures(levels, where):
    failures = []
    if levels.count(1) != 1:
        failures.append(f"{where}: {levels.count(1)} level-1 headings, expected exactly one")
    if levels and levels[0] != 1:
        failures.append(f"{where}: the first heading is level {levels[0]}, not 1")
    for before, after in zip(levels, levels[1:]):
        if after > before + 1:
            failures.append(f"{where}: heading level {before} followed by level {after}")
            break
    return failures


def check_figures(out, report, html):
    failures = []
    for stem in FIGURES:
        png, svg = os.path.join(out, stem + ".png"), os.path.join(out, stem + ".svg")
        if not os.path.isfile(png) or not os.path.isfile(svg):
            failures.append(f"missing {stem}.png or {stem}.svg")
            continue
        data = open(png, "rb").read()
        if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 1000:
            failures.append(f"{stem}.png is not a PNG image ({len(data)} bytes)")
        try:
            root = ElementTree.parse(svg).getroot()
            if not root.tag.endswith("svg") or len(list(root.iter())) < 10:
                failures.append(f"{stem}.svg: root <{root.tag}> with {len(list(root.iter()))} elements")
        except ElementTree.ParseError as error:
            failures.append(f"{stem}.svg does not parse as XML: {error}")
        if f"({stem}.png)" not in report:
            failures.append(f"report.md does not show {stem}.png")
        if base64.b64encode(data).decode() not in html:
            failures.append(f"index.html does not embed {stem}.png")
    return failures


def main():
    binary, shared = os.environ["VITPROBE_BIN"], os.environ["VITPROBE_SHARED"]
    out = os.path.join(os.environ["VITPROBE_WORK"], "demo")
    command = [binary, "demo", "--quick", "--threads", "2", "--models-dir", os.path.join(REPO, "models"),
               "--shared", shared, "--out", out]
    result = subprocess.run(command, capture_output=True, text=True)
    failures = []
    if result.returncode != 0:
        print(result.stderr[-3000:])
        failures.append(f"exit code {result.returncode}")
    for name in ["report.md", "index.html", "demo.json", "attn-stats/stats.json", "probe-MAE/results.json",
                 "probe-DINO/results.json"]:
        if not os.path.isfile(os.path.join(out, name)):
            failures.append(f"missing {name}")
    if not failures:
        html = open(os.path.join(out, "index.html")).read()
        report = open(os.path.join(out, "report.md")).read()
        summary = json.load(open(os.path.join(out, "demo.json")))
        failures += check_figures(out, report, html)

        # The verdict table comes first, four claims, each with an allowed verdict, as demo.json records them.
        headings = [line for line in report.splitlines() if line.startswith("#")]
        if len(headings) < 2 or headings[1] != "## Verdicts":
            failures.append(f"report.md does not open with the verdicts: headings {headings[:3]}")
        rows = table_rows(section(report, "Verdicts"))
        if len(rows) != 4:
            failures.append(f"verdict table has {len(rows)} rows, expected the 4 claims")
        verdicts = [row[3] if len(row) == 5 else None for row in rows]
        if any(verdict not in VERDICTS for verdict in verdicts):
            failures.append(f"verdicts {verdicts} not all in {sorted(VERDICTS)}")
        recorded = [claim.get("verdict") for claim in summary.get("claims", [])]
        if recorded != verdicts:
            failures.append(f"demo.json verdicts {recorded} do not match the table's {verdicts}")
        if "Verdict rules" not in report or "2 x std" not in report:
            failures.append("report.md does not state the verdict rules")

        # Per-block statistics: every block of each bundled encoder (depth from stats.json).
        stats = json.load(open(os.path.join(out, "attn-stats", "stats.json")))
        block_rows = table_rows(section(report, "Attention statistics per block"))
        for model in stats["models"]:
            blocks = sorted(int(row[1]) for row in block_rows if row and row[0] == model["label"])
            if blocks != list(range(model["depth"])):
                failures.append(f"per-block table of {model['label']}: blocks {blocks}, expected 0..{model['depth'] - 1}")

        # One seed: accuracies carry no spread, so no "± 0.00" that would read as a measured zero spread.
        accuracy_rows = table_rows(section(report, "Probe accuracy"))
        if not accuracy_rows:
            failures.append("report.md has no probe accuracy table")
        for row in accuracy_rows:
            if len(row) != 5 or not row[3].endswith("(1 seed)") or any("±" in cell for cell in row):
                failures.append(f"probe accuracy row {row}: one seed should read 'NN.NN (1 seed)' with no ±")
                break
        # Two rates bracket nothing: no rate is known to be tuned, so the tuned-rate claim cannot be reproduced.
        tuned = (summary.get("claims") or [{}] * 4)[3]
        if tuned.get("verdict") != "inconclusive" or "no encoder has both rates tuned" not in tuned.get("reason", ""):
            failures.append(f"tuned-cls-mean with 2 rates: {tuned.get('verdict')}: {tuned.get('reason')}")

        # Headings nest, in the markdown and in the page.
        failures += heading_failures([len(line) - len(line.lstrip("#")) for line in headings], "report.md")
        failures += heading_failures([int(level) for level in re.findall(r"<h([1-6])>", html)], "index.html")

        # Self-contained: every src is a data URI, no link, no network address.
        sources = re.findall(r'src="([^"]*)"', html)
        if len(sources) < len(FIGURES) or any(not source.startswith("data:image/") for source in sources):
            failures.append(f"index.html sources that are not data URIs: {[s[:40] for s in sources if not s.startswith('data:')]}")
        if "href=" in html or "http://" in html or "https://" in html or "url(" in html:
            failures.append("index.html refers to another file or the network")
        for label in ["## Probes: MAE", "## Probes: DINO", "### Probe results"]:
            if label not in report:
                failures.append(f"report.md lacks '{label}'")
        if summary.get("quick") is not True or summary.get("seeds") != [0]:
            failures.append(f"demo.json does not record the quick run with one seed: {summary.get('quick')}, {summary.get('seeds')}")
    for failure in failures:
        print("FAIL", failure)
    print("demo --quick: " + ("ok" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
