"""Inference throughput: vacancy's predict_probs against the transformers text-classification
pipeline, on the same model and titles.

    python bench/predict_throughput.py                           # minilm classifier, 2,000 titles
    python bench/predict_throughput.py --model runs/my/best --rows 5000

`--model` is a saved classifier (a run's best/); by default the minilm encoder with a fresh
multi-label head is saved to a temporary directory (speed does not depend on training).
Both get the raw titles: predict_probs cleans them (data.clean_title, counted in its time), sorts
them by length and pads each batch to its longest title; the pipeline pads each batch to its
longest title in the order given. titles/s is the median over `--repeats` rounds
(every method once per round).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from vacancy.config import DEFAULT_DATA  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="saved classifier directory (default: minilm + new head)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--rows", type=int, default=2000, help="titles to score")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="predict_probs' default")
    parser.add_argument("--pipeline-batch-sizes", default="1,64",
                        help="pipeline batch sizes to try (1 is its default)")
    return parser.parse_args(argv)


def save_default_model(path: Path, data: str) -> None:
    from vacancy.data import LabelSpace, read_csv
    from vacancy.model import load_model, load_tokenizer
    labels = LabelSpace.fit(read_csv(data)["labels"]).names
    load_model("minilm", labels).save_pretrained(path)
    load_tokenizer("minilm").save_pretrained(path)


def timed(methods: dict, repeats: int) -> dict:
    """Median seconds of each method over `repeats` rounds, after one untimed warm-up call each.
    Rounds take every method in turn, so that a change in the machine's load (it is shared)
    falls on all of them alike."""
    times = {name: [] for name in methods}
    for round_ in range(repeats + 1):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd
    import transformers
    from transformers import pipeline
    from vacancy.inference import load_checkpoint, predict_probs
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    titles = pd.read_csv(args.data, dtype=str, keep_default_na=False)["title"].tolist()
    titles = (titles * (args.rows // len(titles) + 1))[:args.rows]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else Path(tmp)
        if not args.model:
            save_default_model(model_dir, args.data)
        model, tokenizer, _, _ = load_checkpoint(model_dir, device)
        tag = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
                       function_to_apply="sigmoid", device=device)
        ours = f"vacancy predict_probs (batch {args.batch_size})"
        methods = {ours: lambda: predict_probs(model, tokenizer, titles, args.batch_size)}
        for batch_size in map(int, args.pipeline_batch_sizes.split(",")):
            methods[f"transformers pipeline (batch {batch_size})"] = \
                lambda b=batch_size: tag(titles, batch_size=b, truncation=True)
        seconds = timed(methods, args.repeats)
    where = torch.cuda.get_device_name() if device == "cuda" else \
        f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    print(f"predict throughput: {model_dir if args.model else 'minilm + new head'}, "
          f"{len(titles)} titles from {Path(args.data).name}, median of {args.repeats}; {where} "
          f"(torch {torch.__version__})\n")
    print("| method | titles/s | vs predict_probs |")
    print("| --- | ---: | ---: |")
    for name, t in seconds.items():
        print(f"| {name} | {len(titles) / t:.0f} | {seconds[ours] / t:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
