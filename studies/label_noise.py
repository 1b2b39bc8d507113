"""How far the labels follow from the words: test titles whose words also make a train or val title.

    python studies/label_noise.py --data ../shared/data/onet_titles_major.csv \
        --runs runs/major-s1 runs/baseline-major

Splits the data as a run does (vacancy.data.load_splits). A test title has a twin when a train or
val title has the same set of words, lower case, a plural "s" dropped ("QA specialist quality
assurance specialist" and "quality assurance specialists QA specialist"): vacancy.conflicts.words,
the key by which `python -m vacancy.audit` groups conflicting titles. If a title's labels
followed from its words, twins would have the same labels; how often they do, and the score of
predicting each such test title's twin's labels, bound what any model can get on those titles
from their words. For each run folder given (the trainer's or vacancy.baseline's
test_predictions.csv), the table gives its micro-F1 and exact-set accuracy on the titles with a
twin, on the others and on all.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vacancy.conflicts import words  # noqa: E402
from vacancy.data import load_splits  # noqa: E402
from vacancy.metrics import f1_counts  # noqa: E402
from vacancy.results import PredictionsError, read_predictions  # noqa: E402


def twin_pairs(titles, label_lists) -> tuple[int, int]:
    """Over a file: how many pairs of titles have the same words, and how many of those pairs the
    same labels."""
    groups = defaultdict(list)
    for title, labels in zip(titles, label_lists):
        groups[words(title)].append(frozenset(labels))
    pairs = [pair for group in groups.values() for pair in itertools.combinations(group, 2)]
    return len(pairs), sum(a == b for a, b in pairs)


def score(pred: np.ndarray, truth: np.ndarray) -> str:
    if not len(truth):
        return "-"
    return f"{f1_counts(pred, truth)[0]:.3f} / {(pred == truth).all(axis=1).mean():.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", nargs="*", default=[],
                        help="run folders with test_predictions.csv")
    args = parser.parse_args(argv)
    data = load_splits(args.data)
    parts, targets = data.parts, data.targets
    first_twin = {}  # words -> the labels of the first train or val title with them
    for part in ("train", "val"):
        for title, y in zip(getattr(parts, part)["title"], targets[part]):
            first_twin.setdefault(words(title), y.astype(bool))
    test_titles = parts.test["title"].tolist()
    try:
        runs = [read_predictions(Path(r)) for r in args.runs]
    except PredictionsError as e:
        parser.error(str(e))
    for folder, run in zip(args.runs, runs):
        if set(run.titles) != set(test_titles):
            parser.error(f"{folder}: its test titles are not those of {args.data}'s split")
    rows = [i for i, title in enumerate(test_titles) if words(title) in first_twin]
    truth = targets["test"][rows].astype(bool)
    twin_labels = np.array([first_twin[words(test_titles[i])] for i in rows]).reshape(truth.shape)
    same = (twin_labels == truth).all(axis=1).mean() if rows else float("nan")
    print(f"{args.data}: {len(rows)} of {len(test_titles)} test titles have a train or val twin "
          f"(same words); the twin has the same label set for {same:.1%} of them")
    everything = pd.concat([parts.train, parts.val, parts.test])
    pairs, agree = twin_pairs(everything["title"], everything["labels"])
    print(f"the whole file: {pairs} pairs of titles have the same words; "
          f"{agree / max(1, pairs):.1%} of them the same label set\n")

    print("cells: micro-F1 / share of titles whose label set is exactly right\n")
    header = ["test titles", "n", "the twin's labels"] + [Path(r).name for r in args.runs]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    twinned = {test_titles[i] for i in rows}
    for name, keep in (("with a twin", True), ("without", False), ("all", None)):
        cells = []
        for run in runs:
            mask = np.array([keep is None or (title in twinned) == keep for title in run.titles])
            cells.append(score(run.predicted[mask], run.truth[mask]))
        n = {True: len(rows), False: len(test_titles) - len(rows), None: len(test_titles)}[keep]
        twin_cell = score(twin_labels, truth) if keep else "-"
        print("| " + " | ".join([name, str(n), twin_cell] + cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
