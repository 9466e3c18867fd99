"""The one JSON of a gpu-check run, from what its steps left in the work folder.

Usage: summarize.py WORK OUT_JSON DRY BUDGET_S

OUT_JSON: {"dry", "budget_s", "total_s", "ok", "steps": [{name, status, rc, seconds, limit_s, note}],
"machine", "provenance", "ctest_gpu": {total, passed, failed, tests: {name: {status, seconds}}}, "bench",
"compare", "throughput"}; a part whose step did not run is null. Prints one line per step and the key figures; exit code 1
when a step failed or timed out (skipped steps follow a failure; multi-gpu's not_run alone is no failure).
"""
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def ctest_results(junit):
    try:
        root = ElementTree.parse(junit).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    tests = {case.get("name"): {"status": case.get("status"), "seconds": float(case.get("time") or 0)}
             for case in root.iter("testcase")}
    return {"total": len(tests), "passed": sum(t["status"] == "run" for t in tests.values()),
            "failed": sorted(n for n, t in tests.items() if t["status"] != "run"), "tests": tests}


def main(work, out_json, dry, budget):
    work = Path(work)
    steps = [json.loads(line) for line in (work / "steps.jsonl").read_text().splitlines() if line.strip()]
    summary = {
        "dry": dry == "1", "budget_s": int(budget), "total_s": round(sum(s["seconds"] for s in steps), 1),
        "ok": all(s["status"] in ("ok", "not_run") for s in steps), "steps": steps,
        "machine": load(work / "machine.json"), "provenance": load(work / "provenance.json"),
        "ctest_gpu": ctest_results(Path(out_json).parent / "ctest-gpu.xml"), "bench": load(work / "bench.json"),
        "compare": load(work / "compare.json"),
        "throughput": load(work / "throughput.json"),
    }
    Path(out_json).write_text(json.dumps(summary, indent=1))
    for step in steps:
        print(f"  {step['name']:10} {step['status']:8} {step['seconds']:7.1f}s  {step['note']}")
    ctest = summary["ctest_gpu"]
    if ctest:
        print(f"  ctest gpu: {ctest['passed']}/{ctest['total']} passed" +
              (f"; failed: {', '.join(ctest['failed'])}" if ctest["failed"] else ""))
    bench = summary["bench"]
    if bench:
        print(f"  bench: {bench.get('arch')} {bench.get('dtype')} batch {bench.get('batch')} on {bench.get('device')}: "
              f"{bench.get('images_per_s', 0):.1f} images/s, maps forward {bench.get('attention_forward_ratio', 0):.2f}x")
    throughput = summary["throughput"]
    if throughput:  # a stage cut by the time limit leaves its figure out
        figure = lambda key: f"{throughput[key]:.2f}" if isinstance(throughput.get(key), (int, float)) else "-"
        print(f"  throughput: {throughput.get('arch')} {throughput.get('dtype')} batch {throughput.get('batch')}: "
              f"forward {figure('forward_img_s')} img/s, attn-stats {figure('attn_stats_img_s')} img/s, "
              f"{throughput.get('probe_heads', '-')} probe heads {figure('probe_52_img_s')} img/s "
              f"({figure('probe_52_over_forward')}x the forward, goal >= 0.8)")
    compare = summary["compare"]
    for row in (compare or {}).get("rows", []):
        print(f"  compare: {row['dtype']} batch {row['batch']}: vitprobe {row.get('vitprobe_img_s') or 0:.1f} img/s, "
              f"PyTorch eager {row.get('eager_img_s') or 0:.1f} ({row.get('ratio_eager') or 0:.2f}x)")
    print(f"gpu-check: {'all steps ok' if summary['ok'] else 'FAILED steps'}; wrote {out_json}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
