"""How long `python -m vacancy.compare` takes on a large comparison: N runs x M test titles,
bootstrap (1,000 paired resamples) included, from reading the run files to writing the report and
the chart.

    python bench/compare_speed.py                        # 10 runs (3 seed groups of 3 + a baseline)
    python bench/compare_speed.py --runs 4 --titles 2000 --labels 10

The runs are synthetic (written with vacancy.results, the trainer's own writer): random
multi-label truth and predictions that agree with it at a few rates, so that every part of the
report (intervals, confusions, wrong predictions) has work to do. Their `data` path does not
exist, so the train-overlap section is skipped, as it says. Prints one table: wall seconds per
phase and the CPU seconds of this process (all its threads) in it, each the median over
`--repeats` rounds; on a shared machine the CPU seconds say what the work costs, the wall seconds
what a user waits.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vacancy import compare  # noqa: E402
from vacancy.metrics import evaluate  # noqa: E402
from vacancy.results import write_json, write_results  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs: 1 baseline + seed groups of 3")
    parser.add_argument("--titles", type=int, default=10_000, help="test titles per run")
    parser.add_argument("--labels", type=int, default=23, help="labels (O*NET major: 23)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def make_runs(root: Path, runs: int, n: int, n_labels: int) -> list[Path]:
    """A baseline, then groups of 3 seeds (one group per error rate)."""
    rng = np.random.default_rng(0)
    labels = [f"label{j:02d}" for j in range(n_labels)]
    truth = rng.random((n, n_labels)) < 1.2 / n_labels  # ~1.2 labels per title
    truth[np.arange(n), rng.integers(0, n_labels, n)] = True
    test = pd.DataFrame({"title": [f"title {i}" for i in range(n)],
                         "labels": [list(np.array(labels)[row]) for row in truth]})
    paths = []
    for k in range(runs):
        name, seed = ("baseline", 42) if k == 0 else (f"model{(k - 1) // 3}-seed{(k - 1) % 3}",
                                                      (k - 1) % 3)
        noise = 0.25 if k == 0 else 0.2 + 0.02 * ((k - 1) // 3)
        probs = np.clip(np.where(truth, 0.75, 0.1) + rng.normal(0, noise, truth.shape), 0, 1)
        thresholds = np.full(n_labels, 0.5)
        metrics, report = evaluate(probs, truth, thresholds, labels)
        model = "tfidf-logreg" if k == 0 else f"model{(k - 1) // 3}"
        metrics.update(model=model, engine="sklearn" if k == 0 else "ddp", n_train=10 * n,
                       n_val=n, n_test=n, best_val_loss=None, train_seconds=None, epochs=[])
        run = root / name
        run.mkdir()
        write_json(run / "config.json", {"data": "synthetic.csv", "model": model, "seed": seed,
                                         "output_dir": str(run)})
        write_results(run, metrics, report, thresholds, labels, test, probs)
        paths.append(run)
    return paths


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        paths = make_runs(root, args.runs, args.titles, args.labels)
        print(f"{args.runs} runs x {args.titles:,} test titles x {args.labels} labels written in "
              f"{time.perf_counter() - start:.1f} s; {args.resamples} resamples; median of "
              f"{args.repeats}")
        phases: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.repeats):
            times = {}

            def lap(name, start):
                now = clock()
                times[name] = (now[0] - start[0], now[1] - start[1])
                return now
            t = clock()
            runs = compare.load_runs([str(p) for p in paths])
            t = lap("read runs", t)
            result = compare.compare(runs, args.resamples)
            t = lap("groups + bootstrap", t)
            compare.report(result, "comparison.png")
            t = lap("report (error analysis included)", t)
            compare.draw_chart(result.entries, root / "comparison.png")
            t = lap("chart", t)
            with contextlib.redirect_stdout(io.StringIO()):  # the whole CLI, as a user runs it
                compare.main([*map(str, paths), "--out", str(root / "cmp.md"),
                              "--resamples", str(args.resamples)])
            lap("python -m vacancy.compare (all of it)", t)
            for name, seconds in times.items():
                phases.setdefault(name, []).append(seconds)
    print("| phase | wall s | CPU s |")
    print("| --- | ---: | ---: |")
    for name, laps in phases.items():
        print(f"| {name} | {statistics.median(w for w, _ in laps):.2f} | "
              f"{statistics.median(c for _, c in laps):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
