"""Tagging on one GPU: the transformer part alone on distinct titles, and the whole mix end to end.

    python bench/gpu_tagging.py --model RUN/best --data titles_1000000.csv               # GPU, bf16
    python bench/gpu_tagging.py --model RUN/best --data small.csv --device cpu --precision fp32

The first table times `TorchBackend.scores` (the transformer part, what `vacancy.predict` runs
per batch) on the file's distinct cleaned titles, once warm, for each `--batch-sizes`, with the
device synchronised before the clock stops: distinct titles/s of the encoder alone. The second
runs the real command, `python -m vacancy.predict --backend torch --device D --precision P`, on
the whole file as a child process (imports, model loading, reading, cleaning, de-duplicating,
scoring, writing all count), with the mix (`--ensemble on`, what best/ predicts with) and the
transformer alone (`--ensemble off`): rows/s end to end.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a run's best/ (the mix)")
    parser.add_argument("--data", required=True, help="a CSV with a title column")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch-sizes", default="1024,4096")
    parser.add_argument("--max-distinct", type=int, default=400_000,
                        help="distinct titles the encoder alone is timed on")
    parser.add_argument("--end-to-end", default="on,off",
                        help="--ensemble settings of the end-to-end runs ('' for none)")
    return parser.parse_args(argv)


def encoder_alone(args) -> None:
    import pandas as pd
    import torch

    from vacancy.data import clean_titles
    from vacancy.torch_backend import TorchBackend
    titles = pd.read_csv(args.data, dtype=str, keep_default_na=False)["title"].tolist()
    distinct = list(dict.fromkeys(t for t in clean_titles(titles) if t))[:args.max_distinct]
    backend = TorchBackend.load(args.model, args.device, args.precision)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(f"{args.data}: {len(titles)} rows, {len(distinct)} distinct cleaned titles timed; "
          f"{args.device}, {args.precision}\n")
    print("| batch | distinct titles/s (transformer part alone) | seconds |")
    print("| --- | --- | --- |")
    for batch in map(int, args.batch_sizes.split(",")):
        backend.scores(distinct[:batch * 2], batch)  # warm-up: kernels, allocator
        sync()
        start = time.perf_counter()
        backend.scores(distinct, batch)
        sync()
        seconds = time.perf_counter() - start
        print(f"| {batch} | {len(distinct) / seconds:,.0f} | {seconds:.1f} |")
    print()


def end_to_end(args) -> None:
    settings = [s for s in args.end_to_end.split(",") if s]
    if not settings:
        return
    rows = sum(1 for _ in open(args.data, encoding="utf-8")) - 1
    print("| `vacancy.predict`, whole file | rows/s end to end | seconds |")
    print("| --- | --- | --- |")
    with tempfile.TemporaryDirectory() as work:
        for ensemble in settings:
            cmd = [sys.executable, "-m", "vacancy.predict", "--model", args.model, "--input",
                   args.data, "--output", os.path.join(work, f"tagged_{ensemble}.csv"),
                   "--backend", "torch", "--device", args.device, "--precision", args.precision,
                   "--ensemble", ensemble]
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            name = "the mix" if ensemble == "on" else "the transformer alone"
            if proc.returncode:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"| {name} | failed, exit {proc.returncode}: {last} | |")
            else:
                print(f"| {name} | {rows / seconds:,.0f} | {seconds:.1f} |")
    print()


def main(argv=None) -> int:
    args = parse_args(argv)
    encoder_alone(args)
    end_to_end(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
