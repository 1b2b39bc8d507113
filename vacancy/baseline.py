"""The baseline every comparison includes: TF-IDF n-grams + one-vs-rest logistic regression.

    python -m vacancy.baseline --data data/vacancies.csv --output-dir runs/baseline

Same split, label handling, threshold tuning and evaluation as a transformer run (train_ddp.py), and
the same metrics.json / report.txt / test_predictions.csv, so `python -m vacancy.compare` can set
them side by side and show what the transformer buys.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from . import console
from .config import ConfigError, threshold_policy
from .data import DataError, load_splits
from .ensemble import fit_classifier
from .metrics import bce_with_logits, choose_thresholds, evaluate, sigmoid
from .results import summary, write_json, write_results

log = logging.getLogger("vacancy")
MODEL_NAME = "tfidf-logreg"


def run_baseline(args: argparse.Namespace) -> dict:
    run_dir = Path(args.output_dir)
    data = load_splits(args.data, args.split_seed)
    parts, labels, targets, leaked = data.parts, data.labels, data.targets, data.leaked
    run_dir.mkdir(parents=True, exist_ok=True)
    console.log_to_file(run_dir, mode="w")  # scikit-learn's warnings land there, as in training
    write_json(run_dir / "config.json", {**vars(args), "model": MODEL_NAME, "engine": "sklearn"})

    start = time.perf_counter()
    classifier = fit_classifier(parts.train["title"], targets["train"], args.C, args.seed)
    train_seconds = time.perf_counter() - start
    # decision_function gives the per-label logits, so val loss is the same BCE a transformer
    # run reports and sigmoid() gives predict_proba's probabilities.
    val_logits = classifier.decision_function(parts.val["title"])
    thresholds = choose_thresholds(sigmoid(val_logits), targets["val"],
                                   threshold_policy(args.thresholds))
    if args.refit:  # as the trainer's TF-IDF part: val has picked the thresholds, now it trains
        classifier = fit_classifier(parts.train["title"].tolist() + parts.val["title"].tolist(),
                                    np.concatenate([targets["train"], targets["val"]]),
                                    args.C, args.seed)
    test_probs = sigmoid(classifier.decision_function(parts.test["title"]))
    metrics, report = evaluate(test_probs, targets["test"], thresholds, labels.names,
                               args.at_least_one)
    metrics.update(best_val_loss=bce_with_logits(val_logits, targets["val"]), best_epoch=None,
                   n_train=len(parts.train), n_val=len(parts.val), n_test=len(parts.test),
                   refit_val_titles=len(parts.val) if args.refit else 0,
                   test_in_train=leaked, world_size=1, precision="fp64", model=MODEL_NAME,
                   engine="sklearn", optimizer_steps=None, skipped_steps=0,
                   train_seconds=round(train_seconds, 1),
                   samples_per_s=round(len(parts.train) / train_seconds, 1), epochs=[])
    write_results(run_dir, metrics, report, thresholds, labels.names, parts.test, test_probs,
                  args.at_least_one)
    print(report)
    print(summary(metrics))
    return metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True, help="CSV with `title` and `area` columns")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--thresholds", default="0.5",
                        help="a fixed number in (0, 1), or shrunk, global or per-label: picked on "
                             "val (train_ddp.py --help explains them); the trainer's default")
    parser.add_argument("--at-least-one", action=argparse.BooleanOptionalAction, default=True,
                        help="a title with no label over its threshold gets its most probable "
                             "one, as in training")
    parser.add_argument("--refit", action=argparse.BooleanOptionalAction, default=True,
                        help="once the thresholds are picked on val, fit again on train + val "
                             "for test (the trainer's --refit on does so for its TF-IDF part)")
    parser.add_argument("--C", type=float, default=10.0,
                        help="inverse L2 regularisation strength of each logistic regression")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run already in --output-dir")
    args = parser.parse_args(argv)
    try:
        threshold_policy(args.thresholds)
    except ConfigError as e:
        parser.error(f"--{e}")
    if args.C <= 0:
        parser.error(f"--C: must be > 0, got {args.C}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console.setup_logging(main=True)  # what a training run prints: our lines, `warning: ` first
    run_dir = Path(args.output_dir)
    if (run_dir / "config.json").exists() and not args.overwrite:
        print(f"error: --output-dir {run_dir} holds another run: pass --overwrite to replace it",
              file=sys.stderr)
        return 2
    try:
        run_baseline(args)
        log.info("run directory: %s (metrics.json, report.txt, test_predictions.csv, %s)",
                 run_dir, console.LOG_FILE)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        console.close_log_file()
    return 0


if __name__ == "__main__":
    sys.exit(main())
