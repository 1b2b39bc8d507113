"""Time to the first optimizer step and peak memory per rank as the data grows: today's code
(every rank reads, cleans, splits and tokenizes the CSV itself) against the prepared-data cache
(vacancy/prepared.py), cold (the cache is made) and warm (it exists), in 1 and 2 processes.

    nice python bench/data_scale.py                     # 100k and 1M titles, 1 and 2 processes
    nice python bench/data_scale.py --rows 10000000 --nproc 2        # 10M on request (~0.5 GB CSV)

Each run is the real entry point (`train_ddp.py` under `torchrun`, or one process), `--model
minilm`, no frozen epoch (so the first step does not wait for the frozen-phase cache), stopped at
its first optimizer step: process start, imports, data and model loading all count. "Old" is the
code of `--old-rev` (the commit before the cache, exported with `git archive`). Peak memory is each
rank's peak RSS (ru_maxrss), the largest over ranks; the cache's arrays are memory-mapped, so
those pages are shared between ranks and count in each rank's RSS only once touched. The cache's
preparing process (a child of rank 0, with its cleaning pool) is reported on its own.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Imported by every rank in place of train_ddp.py: stops at the first optimizer step and reports.
PROBE = '''
import json, os, resource, sys, time
sys.path.insert(0, os.getcwd())
import train_ddp
from vacancy import trainer
def first_step(self, *args):
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.environ["PROBE_OUT"] + f".{os.environ.get('RANK', '0')}", "w") as f:
        json.dump({"t": time.time(), "rss_mb": usage[0].ru_maxrss / 1024,
                   "children_rss_mb": usage[1].ru_maxrss / 1024,
                   "cpu_s": sum(u.ru_utime + u.ru_stime for u in usage)}, f)
    os._exit(0)  # every rank gets here after the same step's collectives
trainer.Trainer._after_step = first_step
sys.exit(train_ddp.main())
'''


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--old-rev", default="a259d94",
                        help="commit with today's data path (before the prepared-data cache)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vacancy-data-scale"),
                        help="where the CSVs, the old code and the runs go (kept: CSVs are reused)")
    parser.add_argument("--skip-old", action="store_true")
    return parser.parse_args(argv)


def make_csv(work: Path, rows: int) -> Path:
    path = work / f"titles_{rows}.csv"
    if not path.exists():
        from vacancy.synth import main as synth
        synth(["--rows", str(rows), "--seed", "0", "--out", str(path) + ".tmp"])
        os.replace(str(path) + ".tmp", path)
    return path


def old_code(work: Path, rev: str) -> Path:
    folder = work / f"old-{rev}"
    if not folder.exists():
        tmp = work / f"old-{rev}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        os.replace(tmp, folder)
    return folder


def first_step(code: Path, csv: Path, nproc: int, run: Path, cache: Path | None) -> dict:
    """Launch one run of the code in `code`; seconds to its first step and peak RSS per rank."""
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    probe = run / "probe.py"
    probe.write_text(PROBE)
    args = ["--data", str(csv), "--model", "minilm", "--output-dir", str(run / "out"),
            "--epochs", "1", "--freeze-epochs", "0", "--wandb", "off"]
    if cache is not None:
        args += ["--cache-dir", str(cache)]
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code),
           "PROBE_OUT": str(run / "probe"), "OMP_NUM_THREADS": str(max(1, os.cpu_count() // nproc))}
    start = time.time()
    proc = subprocess.run([*launcher, str(probe), *args], cwd=code, env=env, capture_output=True,
                          text=True)
    reports = [json.loads(p.read_text()) for p in sorted(run.glob("probe.*")) if p.suffix != ".py"]
    if proc.returncode != 0 or len(reports) != nproc:
        raise RuntimeError(f"run in {run} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"first_step_s": max(r["t"] for r in reports) - start,
            "rss_mb": max(r["rss_mb"] for r in reports),
            "prep_rss_mb": max(r["children_rss_mb"] for r in reports),
            "cpu_s": sum(r["cpu_s"] for r in reports)}  # all ranks and their children


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    old = None if args.skip_old else old_code(work, args.old_rev)
    print(f"machine: {os.cpu_count()} CPU(s); load average {os.getloadavg()[0]:.1f} at start",
          flush=True)
    print("| titles | processes | path | first step (s) | vs old | s per 1k titles | "
          "peak RSS per rank (MB) | vs old | preparing process peak (MB) |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    for rows in args.rows:
        csv = make_csv(work, rows)
        for nproc in args.nproc:
            cache = work / f"cache_{rows}_{nproc}"
            shutil.rmtree(cache, ignore_errors=True)
            runs = [] if old is None else [("old (today)", old, None)]
            runs += [("cache, cold", ROOT, cache), ("cache, warm", ROOT, cache)]
            base = None
            for name, code, cache_dir in runs:
                r = first_step(code, csv, nproc, work / "run", cache_dir)
                base = base or (r if name.startswith("old") else None)
                ratio_t = f"{base['first_step_s'] / r['first_step_s']:.1f}x" if base else ""
                ratio_m = f"{base['rss_mb'] / r['rss_mb']:.1f}x" if base else ""
                prep = f"{r['prep_rss_mb']:.0f}" if name == "cache, cold" else ""
                print(f"| {rows:,} | {nproc} | {name} | {r['first_step_s']:.1f} | {ratio_t} | "
                      f"{1000 * r['first_step_s'] / rows:.3f} | {r['rss_mb']:.0f} | {ratio_m} | "
                      f"{prep} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
