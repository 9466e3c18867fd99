#!/usr/bin/env python3
"""`vitprobe demo --quick` end to end: it finishes and writes a complete report.

Checks the report files exist, index.html is self-contained (figure embedded as a data URI, no http links),
report.md names both bundled encoders with a findings row each, and each probe folder has its results.
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    for name in ["report.md", "index.html", "demo.json", "attn-stats/stats.json", "attn-stats/attention_stats.png",
                 "probe-MAE/results.json", "probe-DINO/results.json"]:
        if not os.path.isfile(os.path.join(out, name)):
            failures.append(f"missing {name}")
    if not failures:
        html = open(os.path.join(out, "index.html")).read()
        if "data:image/png;base64," not in html:
            failures.append("index.html does not embed the figure")
        if "http://" in html or "https://" in html:
            failures.append("index.html refers to the network")
        report = open(os.path.join(out, "report.md")).read()
        for label in ["| MAE |", "| DINO |", "## Probes: MAE", "## Probes: DINO"]:
            if label not in report:
                failures.append(f"report.md lacks '{label}'")
        summary = json.load(open(os.path.join(out, "demo.json")))
        if summary.get("quick") is not True:
            failures.append("demo.json does not record the quick run")
    for failure in failures:
        print("FAIL", failure)
    print("demo --quick: " + ("ok" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
