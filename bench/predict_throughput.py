"""Tagging files end to end (read, clean, score, write): transformers' pipeline, today's
`vacancy.predict` (a checkout of main), and the streaming tagger with each backend that loads.

    python bench/predict_throughput.py --model runs/major/best --main-ref /tmp/main-ref \\
        --data ../shared/data/onet_titles_major.csv /tmp/vacancy-data-scale/titles_1000000.csv

`--model` is a run's best/ trained by the default command (the mix). Every method runs as its own
child process and is timed from its start to its exit (imports and model loading count, as for a
user), with its peak RSS (ru_maxrss from wait4). The pipeline (`text-classification`,
`top_k=None`, sigmoid, batched: the transformer part alone; it has no de-duplication) and today's
predict (it scores every row) run on the first `--sample` rows of a larger file, scaled linearly
to the file's size; the streaming tagger runs on the whole file, and also on its first
`--sample` rows, so that its peak RSS can be compared at both sizes. Then each backend tags the
test split of the model's run (its test_predictions.csv: titles and true areas) for micro-F1.
A backend that does not load here (onnx before the export is merged) gets a row saying so.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the docs' way: a pipeline over the cleaned titles (it does not clean them itself), batched
PIPELINE = '''
import json, sys
import pandas as pd
from transformers import pipeline
from vacancy.data import clean_title
model, src, dst, batch = sys.argv[1:5]
thresholds = json.loads(open(model + "/thresholds.json").read())
table = pd.read_csv(src, dtype=str, keep_default_na=False)
tag = pipeline("text-classification", model=model, top_k=None, function_to_apply="sigmoid")
scores = tag([clean_title(t) for t in table["title"]], batch_size=int(batch), truncation=True)
table["predicted"] = [" ".join(d["label"] for d in row if d["score"] >= thresholds[d["label"]])
                      for row in scores]
table.to_csv(dst, index=False)
'''

BACKENDS = {"torch": "--backend torch", "onnx fp32": "--backend onnx --onnx-file model.onnx",
            "onnx int8": "--backend onnx --onnx-file model.int8.onnx"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a run's best/ (the mix)")
    parser.add_argument("--data", nargs="+", required=True, help="CSV files with a title column")
    parser.add_argument("--sample", type=int, default=100_000,
                        help="rows the pipeline and today's predict score, scaled to the file; "
                             "the streaming tagger runs on them too, for its peak RSS there")
    parser.add_argument("--every-row-sample", type=int,
                        help="fewer rows for the pipeline and today's predict (they score every "
                             "row, so scaling them is fair; default: --sample)")
    parser.add_argument("--max-rows", type=int,
                        help="use only the first rows of each file (on a busy machine)")
    parser.add_argument("--main-ref", help="a checkout of main, for today's vacancy.predict")
    parser.add_argument("--methods", default="pipeline,today," + ",".join(BACKENDS),
                        help="which rows to measure")
    parser.add_argument("--backend-flags", action="append", default=[], metavar="NAME=FLAGS",
                        help="vacancy.predict flags of a backend row, e.g. "
                             "'onnx int8=--backend onnx --int8' (defaults: %s)" % BACKENDS)
    parser.add_argument("--f1-methods", help="methods that tag the test split (default: those "
                                             "of --methods but the pipeline)")
    parser.add_argument("--pipeline-batch-size", type=int, default=64)
    parser.add_argument("--test-run", help="run directory whose test_predictions.csv gives "
                                           "micro-F1 (default: the model's run; none: skip)")
    parser.add_argument("--work", default=None, help="where samples and outputs go (temporary)")
    return parser.parse_args(argv)


def run_child(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the process and its children, stderr tail); raises
    RuntimeError with the error line if it failed."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if proc.returncode != 0:
        lines = [x for x in text.splitlines() if x.strip()]
        error = next((x for x in lines if x.startswith("error:")), lines[-1] if lines else "")
        raise RuntimeError(f"exit {proc.returncode}: {error[:160]}")
    return seconds, usage.ru_maxrss / 1024, text


def head(src: Path, rows: int, dst: Path) -> int:
    """The first `rows` data rows of a CSV (one title per line), header kept; how many."""
    n = 0
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for n, line in enumerate(itertools.islice(f, rows + 1)):
            out.write(line)
    return n


def count_rows(path: Path) -> tuple[int, int]:
    """(rows, distinct titles after lower-casing) of a CSV."""
    import pandas as pd
    titles = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["title"])["title"]
    return len(titles), titles.str.lower().nunique()


def micro_f1(predicted, truth) -> float:
    tp = sum(len(set(p.split()) & set(t.split())) for p, t in zip(predicted, truth))
    n_pred = sum(len(set(p.split())) for p in predicted)
    n_true = sum(len(set(t.split())) for t in truth)
    return 2 * tp / max(1, n_pred + n_true)


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd
    backends = dict(BACKENDS)
    for item in args.backend_flags:
        name, _, flags = item.partition("=")
        backends[name.strip()] = flags
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    model = Path(args.model).resolve()
    work = Path(args.work or tempfile.mkdtemp(prefix="predict-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out.csv"

    def command(method: str, src: Path) -> tuple[list[str], Path, dict]:
        if method == "pipeline":
            script = work / "pipeline_child.py"
            script.write_text(PIPELINE)
            return ([sys.executable, str(script), str(model), str(src), str(out),
                     str(args.pipeline_batch_size)], ROOT, env)
        if method == "today":
            if not args.main_ref:
                raise RuntimeError("not measured: no --main-ref checkout")
            ref = Path(args.main_ref).resolve()
            return ([sys.executable, "-m", "vacancy.predict", "--model", str(model), "--input",
                     str(src), "--output", str(out)], ref, {**env, "PYTHONPATH": str(ref)})
        return ([sys.executable, "-m", "vacancy.predict", "--model", str(model), "--input",
                 str(src), "--output", str(out), *shlex.split(backends[method])], ROOT, env)

    print(f"end-to-end tagging: {model}; CPU, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the start\n")
    print("| file | rows (distinct) | method | rows timed | seconds | titles/s | peak RSS MB |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    rates, rss = {}, {}
    files = []
    for data in map(Path, args.data):
        if args.max_rows:
            head(data, args.max_rows, work / f"{data.stem}_first{args.max_rows}.csv")
            data = work / f"{data.stem}_first{args.max_rows}.csv"
        files.append(data)
    for data in files:
        rows, distinct = count_rows(data)
        samples = {}
        for size in {args.sample, args.every_row_sample or args.sample}:
            path = work / f"sample{size}_{data.stem}.csv"
            samples[size] = (path, head(data, size, path)) if rows > size else (data, rows)
        for method in methods:
            if method in ("pipeline", "today"):
                runs = [samples[args.every_row_sample or args.sample]]
            else:
                runs = [samples[args.sample]] + ([(data, rows)] if rows > args.sample else [])
            for src, n in runs:
                try:
                    seconds, peak, _ = run_child(*command(method, src))
                except (RuntimeError, KeyError) as e:
                    note = "not available on this branch" if method in backends else "failed"
                    print(f"| {data.name} | {rows} ({distinct}) | {method} | {n} | {note}: "
                          f"{e} | | |")
                    break
                rates[data.name, method] = n / seconds
                rss[data.name, method, n] = peak
                scaled = f" (of {rows}: scaled)" if n < rows and method in ("pipeline",
                                                                            "today") else ""
                print(f"| {data.name} | {rows} ({distinct}) | {method} | {n}{scaled} | "
                      f"{seconds:.1f} | {n / seconds:.0f} | {peak:.0f} |", flush=True)

    test_run = model.parent if args.test_run is None else \
        (None if args.test_run == "none" else Path(args.test_run))
    if test_run is not None and (test_run / "test_predictions.csv").is_file():
        truth = pd.read_csv(test_run / "test_predictions.csv", dtype=str, keep_default_na=False)
        src = work / "test_titles.csv"
        truth[["title"]].to_csv(src, index=False)
        print(f"\nmicro-F1 on {test_run.name}'s test split ({len(truth)} titles; the run's own "
              "figure is in its metrics.json)\n")
        print("| method | test micro-F1 | seconds | titles/s | peak RSS MB |")
        print("| --- | ---: | ---: | ---: | ---: |")
        f1_methods = args.f1_methods.split(",") if args.f1_methods else methods
        for method in [m.strip() for m in f1_methods if m.strip() != "pipeline"]:
            try:
                seconds, peak, _ = run_child(*command(method, src))
            except (RuntimeError, KeyError) as e:
                print(f"| {method} | not available: {e} | | | |")
                continue
            tagged = pd.read_csv(out, dtype=str, keep_default_na=False)
            print(f"| {method} | {micro_f1(tagged['predicted'], truth['area']):.4f} | "
                  f"{seconds:.1f} | {len(truth) / seconds:.0f} | {peak:.0f} |", flush=True)

    print()
    for data in files:
        ours = {m: r for (f, m), r in rates.items() if f == data.name and m in backends}
        if not ours:
            continue
        best = max(ours, key=ours.get)
        for other in ("pipeline", "today"):
            if (data.name, other) in rates:
                print(f"{data.name}: {best} / {other}: "
                      f"{ours[best] / rates[data.name, other]:.1f}x titles/s")
        sizes = sorted(n for (f, m, n) in rss if f == data.name and m == best)
        if len(sizes) == 2:
            small, large = (rss[data.name, best, n] for n in sizes)
            print(f"{data.name}: {best} peak RSS {small:.0f} MB at {sizes[0]} rows, "
                  f"{large:.0f} MB at {sizes[1]} rows ({100 * (large / small - 1):+.0f}%)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
