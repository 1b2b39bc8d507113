"""How long a run takes on a file with thousands of labels (issue 28), end to end.

    python bench/many_labels.py --rows 2000 --model minilm --out runs/bench-many-labels

Two files of `--rows` synthetic titles: `own.csv`, where every title has a label of its own (no
label has 2 train examples: refused in one line before any model loads), and `mixed.csv`, where
every title keeps its synthetic areas and gets a label of its own besides (~25 learnable labels
among ~`--rows` unlearnable ones: the run warns and goes on). Each is trained for one epoch
(`--freeze-epochs 0`, TF-IDF and kNN parts on) by train_ddp.py in a child process; the wall
time, the exit status and the last line printed are reported.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_files(rows: int, out: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from vacancy.synth import main as synth
    synth(["--rows", str(rows), "--seed", "3", "--out", str(out / "synth.csv")])
    with open(out / "synth.csv", newline="") as f:
        table = list(csv.DictReader(f))
    files = {"own": out / "own.csv", "mixed": out / "mixed.csv"}
    for name, path in files.items():
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["title", "area"])
            for i, row in enumerate(table):
                own = f"own_{i:05d}"
                writer.writerow([row["title"], own if name == "own" else f"{row['area']} {own}"])
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--out", default="runs/bench-many-labels")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": str(ROOT)}
    for name, path in write_files(args.rows, out).items():
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "train_ddp.py"), "--data", str(path), "--model",
             args.model, "--output-dir", str(out / f"run-{name}"), "--overwrite", "--epochs", "1",
             "--freeze-epochs", "0", "--cache-dir", str(out / ".cache")],
            env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
        print(f"{name}: {args.rows} titles, exit {proc.returncode}, {seconds:.1f} s: {last[0]}")
        (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
