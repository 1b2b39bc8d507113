"""The fast CPU path measured: a best/ scored by PyTorch (today's path), its ONNX fp32 export and
its int8 export (`python -m vacancy.export --model RUN/best --int8` first), on the run's own test
titles (distinct titles: what the tagger scores after de-duplication).

    python bench/onnx_speed.py --model runs/major/best
    python bench/onnx_speed.py --model runs/major/best --repeats 5 --cold 3

Per backend: titles/s of the transformer part alone (tokenize, forward, and the vectors when the
kNN part needs them) and of the whole tagger (cleaning, the TF-IDF and kNN parts, the mix), the
median over `--repeats` rounds that take the backends in turn (the machine is shared: a change in
load falls on all alike); micro- and macro-F1 on the test titles at best/'s thresholds; and the
wall time of a fresh process that imports, loads best/ and tags one title (`--cold` runs each).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

BACKENDS = {"torch fp32 (today's path)": ("torch", None), "onnx fp32": ("onnx", "model.onnx"),
            "onnx int8": ("onnx", "model.int8.onnx")}
ONE_TITLE = ("import sys; from vacancy.inference import load_tagger; "
             "load_tagger(sys.argv[1], backend=sys.argv[2]).probs(['Senior Java Developer'])")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a run's best/ with an onnx/ export")
    parser.add_argument("--rows", type=int, help="time the first ROWS test titles (default all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cold", type=int, default=3, help="fresh one-title processes per "
                                                            "backend (0: none)")
    return parser.parse_args(argv)


def test_split(best: Path, labels: list[str]) -> tuple[list[str], np.ndarray]:
    """The run's test titles and their true labels (test_predictions.csv beside best/)."""
    import pandas as pd

    from vacancy.data import parse_labels
    table = pd.read_csv(best.parent / "test_predictions.csv", dtype=str, keep_default_na=False)
    index = {name: j for j, name in enumerate(labels)}
    targets = np.zeros((len(table), len(labels)), np.int8)
    for i, area in enumerate(table["area"]):
        targets[i, [index[x] for x in parse_labels(area)]] = 1
    return table["title"].tolist(), targets


def timed(methods: dict, repeats: int) -> dict:
    """Median seconds of each method, after one untimed warm-up call each; rounds take every
    method in turn."""
    times = {name: [] for name in methods}
    for round_ in range(repeats + 1):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cold_start(best: Path, backend: str, runs: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `python -c ONE_TITLE` (imports, loading, one title). The CPU
    time (user + system) depends less on how busy the shared machine is."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", ONE_TITLE, str(best), backend], cwd=ROOT,
                       check=True, capture_output=True)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None) -> int:
    args = parse_args(argv)
    import transformers

    from vacancy.data import clean_title
    from vacancy.inference import load_tagger
    from vacancy.metrics import f1_counts, predict_labels
    from vacancy.onnx_backend import check_export, cores
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    best = Path(args.model)
    files = check_export(best)["files"]
    taggers = {name: load_tagger(best, backend=backend, onnx_file=file)
               for name, (backend, file) in BACKENDS.items() if file is None or file in files}
    first = next(iter(taggers.values()))
    titles, targets = test_split(best, first.labels)
    timed_titles = [clean_title(t) for t in titles[:args.rows]]
    load = os.getloadavg()[0]
    knn = first.neighbours is not None

    def transformer(tagger):
        return lambda: tagger.backend.scores(timed_titles, args.batch_size, vectors=knn)

    def whole(tagger):
        return lambda: tagger.probs(titles[:args.rows], args.batch_size)

    seconds = timed({(name, part): fn(tagger) for name, tagger in taggers.items()
                     for part, fn in (("transformer", transformer), ("tagger", whole))},
                    args.repeats)
    scores = {}
    for name, tagger in taggers.items():
        pred = predict_labels(tagger.probs(titles, args.batch_size), tagger.thresholds,
                              tagger.at_least_one)
        scores[name] = f1_counts(pred, targets)
    cold = {backend: cold_start(best, backend, args.cold) for backend in ("torch", "onnx")} \
        if args.cold else {}
    import torch
    base = next(iter(taggers))
    print(f"ONNX speed: {best}, {len(timed_titles)} distinct test titles timed, "
          f"{len(titles)} scored for F1; the mix: "
          f"{', '.join(f'{k} {w:.1f}' for k, w in first.weights.items())}; median of "
          f"{args.repeats}; {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"{cores()} onnxruntime threads; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print("| backend | transformer titles/s | vs torch | tagger titles/s | vs torch | "
          "test micro-F1 | test macro-F1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in taggers:
        fast = [len(timed_titles) / seconds[name, part] for part in ("transformer", "tagger")]
        ratio = [seconds[base, part] / seconds[name, part] for part in ("transformer", "tagger")]
        print(f"| {name} | {fast[0]:.0f} | {ratio[0]:.2f}x | {fast[1]:.0f} | {ratio[1]:.2f}x | "
              f"{scores[name][0]:.4f} | {scores[name][1]:.4f} |")
    if cold:
        print(f"\none title in a fresh process (import, load best/, tag; median of {args.cold}): "
              + ", ".join(f"{backend} {wall:.2f} s wall, {cpu:.2f} s CPU"
                          for backend, (wall, cpu) in cold.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
