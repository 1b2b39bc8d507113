"""Wall time and peak memory of `python -m vacancy.audit` as the data grows.

    nice python bench/audit_scale.py                                  # the 1M synthetic titles
    nice python bench/audit_scale.py --data ../shared/data/onet_titles_major.csv

Runs the real command in a child process on each file (default: bench/data_scale.py's 1M-title
synthetic CSV, made once in --work) and samples the resident memory of its whole process tree
(the audit, its cleaning pool, joblib's workers) every 0.2 s: the peak of that sum is what the
machine must hold. Also reports the audit's own peak RSS (ru_maxrss of the largest process) and
its per-step seconds (summary.json), and the CPU seconds of the tree, which a shared machine's
load inflates less than the wall time. Note the load (uptime): this machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from data_scale import make_csv  # noqa: E402


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process] + process.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:  # ended between the listing and the reading
            pass
    return total


def run(csv: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "vacancy.audit", "--data", str(csv), "--output-dir", str(out),
           "--overwrite", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start, peak = time.perf_counter(), 0
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    process = psutil.Process(child.pid)
    while child.poll() is None:
        peak = max(peak, tree_rss(process))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    output = child.stdout.read()
    if child.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {child.returncode}\n{output[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the audit and the workers it reaped
    return {"wall_s": wall, "tree_peak_gb": peak / 2**30, "cpu_s": usage.ru_utime + usage.ru_stime,
            "largest_process_gb": usage.ru_maxrss / 2**20,
            "summary": summary, "output": output}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", help="CSV files (default: the synthetic --rows)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vacancy-data-scale"))
    parser.add_argument("--audit-args", default="", help="more flags for vacancy.audit")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    files = [Path(p) for p in args.data] if args.data else [make_csv(work, args.rows)]
    print(f"load before: {os.getloadavg()[0]:.1f} (1-min average, {os.cpu_count()} cores)")
    rows = []
    for csv in files:
        result = run(csv, work / f"audit-{csv.stem}", args.audit_args.split())
        s = result["summary"]
        rows.append((csv.name, s, result))
        print(result["output"].strip().splitlines()[-1])
        print(f"{csv.name}: {result['wall_s']:.0f} s ({result['cpu_s']:.0f} CPU s), tree peak "
              f"{result['tree_peak_gb']:.2f} GB; steps (s): {s['seconds']}; "
              f"load now {os.getloadavg()[0]:.1f}", flush=True)
    print("\n| data | rows | distinct titles | kNN part | wall s | peak GB (process tree) "
          "| peak GB (largest process) | flagged |")
    print("|" + " --- |" * 8)
    for name, s, r in rows:
        print(f"| {name} | {s['rows']} | {s['distinct_titles']} | {'on' if s['knn'] else 'off'} "
              f"| {r['wall_s']:.0f} | {r['tree_peak_gb']:.2f} | {r['largest_process_gb']:.2f} | "
              f"{s['suspects']['rows']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
