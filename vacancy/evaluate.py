"""Evaluate a saved model on one part of the notebook split, in a single process.

    python -m vacancy.evaluate --model RUN_DIR/best --data data/vacancies.csv [--part test]

Prints the same metrics as training's final evaluation (at the thresholds saved beside the model);
a distributed run's metrics.json must equal this.
"""
from __future__ import annotations

import argparse
import json
import sys

from .data import DataError, LabelSpace, read_csv, split
from .inference import load_tagger
from .metrics import evaluate


def evaluate_checkpoint(model_dir, data: str, part: str = "test", split_seed: int = 42,
                        max_length: int = 64) -> tuple[dict, str]:
    tagger = load_tagger(model_dir)
    df = getattr(split(read_csv(data), split_seed, data), part)
    targets = LabelSpace(tagger.labels).encode(df["labels"], part)
    # titles in df are already cleaned; cleaning is idempotent, so the tagger may clean again
    probs = tagger.probs(df["title"].tolist(), max_length=max_length)
    return evaluate(probs, targets, tagger.thresholds, tagger.labels, tagger.at_least_one)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", required=True, help="a saved best/ directory")
    parser.add_argument("--data", required=True)
    parser.add_argument("--part", choices=("train", "val", "test"), default="test")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args(argv)
    try:
        metrics, report = evaluate_checkpoint(args.model, args.data, args.part, args.split_seed,
                                              args.max_length)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report)
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_label"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
