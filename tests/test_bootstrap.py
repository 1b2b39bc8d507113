"""The paired bootstrap and the error analysis as pure functions, and the committed O*NET IT
report's intervals recomputed independently from its run files."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from vacancy import bootstrap, error_analysis
from vacancy.results import Predictions, read_predictions

ROOT = Path(__file__).resolve().parent.parent
ONET_IT = ROOT / "docs" / "results" / "onet_it"


def random_predictions(n=300, labels=6, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.random((n, labels)) < 0.2
    truth[:, -1] = False  # a label absent from test: F1 0 under zero_division=0, as sklearn says
    return truth, truth ^ (rng.random((n, labels)) < 0.1)


def plain_f1(truth, pred, average):
    """F1 with no shared code: per-label counts by plain sums."""
    tp = (truth & pred).sum(0)
    fp = (~truth & pred).sum(0)
    fn = (truth & ~pred).sum(0)
    if average == "micro":
        d = 2 * tp.sum() + fp.sum() + fn.sum()
        return 2 * tp.sum() / d if d else 0.0
    d = 2 * tp + fp + fn
    return np.mean([2 * t / x if x else 0.0 for t, x in zip(tp, d)])


def test_counts_are_resamples_and_f1_matches_sklearn():
    counts = bootstrap.resample_counts(50, resamples=200, seed=3)
    assert counts.shape == (200, 50) and np.all(counts.sum(1) == 50)
    draws = np.random.default_rng(3).integers(0, 50, size=(200, 50))  # the documented definition
    assert np.array_equal(counts[7], np.bincount(draws[7], minlength=50))
    truth, pred = random_predictions()
    micro, macro = bootstrap.f1_scores(np.ones((1, len(truth)), np.float32), truth, pred)
    assert micro[0] == pytest.approx(f1_score(truth, pred, average="micro", zero_division=0))
    assert macro[0] == pytest.approx(f1_score(truth, pred, average="macro", zero_division=0))


def test_interval_matches_a_loop_over_resamples():
    truth, a = random_predictions(seed=1)
    _, b = random_predictions(seed=2)
    counts = bootstrap.resample_counts(len(truth), resamples=300, seed=5)
    fast = bootstrap.f1_scores(counts, truth, a)[1] - bootstrap.f1_scores(counts, truth, b)[1]
    draws = np.random.default_rng(5).integers(0, len(truth), size=(300, len(truth)))
    slow = [plain_f1(truth[i], a[i], "macro") - plain_f1(truth[i], b[i], "macro") for i in draws]
    assert np.allclose(fast, slow)
    assert bootstrap.interval(fast) == pytest.approx(tuple(np.percentile(slow, [2.5, 97.5])))
    assert bootstrap.significant(0.01, 0.02) and bootstrap.significant(-0.2, -0.1)
    assert not bootstrap.significant(-0.01, 0.02)


def preds(rows, labels=("a", "b", "c")):
    """Predictions from (title, truth, predicted, {label: probability})."""
    col = {x: j for j, x in enumerate(labels)}

    def matrix(cells):
        m = np.zeros((len(rows), len(labels)), bool)
        for i, cell in enumerate(cells):
            m[i, [col[x] for x in cell.split()]] = True
        return m
    probs = np.array([[p.get(x, 0.0) for x in labels] for *_, p in rows])
    return Predictions(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                       list(labels), matrix([r[1] for r in rows]), matrix([r[2] for r in rows]),
                       probs)


def test_error_analysis_on_a_hand_made_case():
    run1 = preds([("x", "a", "b", {"b": 0.9}), ("y", "a b", "a b", {"a": .8, "b": .7}),
                  ("z", "c", "b", {"b": 0.6}), ("w", "a", "b", {"b": 0.55})])
    run2 = preds([("x", "a", "b", {"b": 0.8}), ("y", "a b", "a", {"a": .8}),
                  ("z", "c", "c", {"c": 0.9}), ("w", "a", "a", {"a": 0.9})])
    # run1 took an a for a b twice (x, w) and a c for a b once (z)
    pairs = error_analysis.top_pairs(error_analysis.confusions(run1), run1.labels)
    assert pairs == [("b", "a", 2), ("b", "c", 1)]
    assert list(error_analysis.always_wrong([run1, run2])) == [0]  # x; y is right in run1
    wrong = error_analysis.confident_wrong([run1, run2])
    assert [(w.title, w.label, w.probability, w.runs) for w in wrong] == \
        [("x", "b", 0.9, 2), ("z", "b", 0.6, 1), ("w", "b", 0.55, 1)]
    train = pd.DataFrame({"title": ["x", "x", "y"], "labels": [["a"], ["c"], ["a", "b"]]})
    assert error_analysis.contradicted_in_train(run1.titles, run1.areas, train) == \
        [("x", "a", "c")]


def recomputed_interval(report: str, entry: str, reference: str, entry_runs, reference_runs,
                        metric: str = "micro") -> tuple[tuple[float, float], tuple[float, float]]:
    """(the report's interval of `entry` minus `reference`, the same recomputed with plain numpy
    from the runs' test_predictions.csv: the documented resamples, each run's F1 by plain sums, a
    group's score the mean over its runs)."""
    row = next(line for line in report.splitlines()
               if line.startswith(f"| `{entry}` | `{reference}` |"))
    cell = row.split("|")[3 if metric == "micro" else 4]
    low, high = map(float, re.search(r"\[([-+.\d]+), ([-+.\d]+)\]", cell).groups())
    a = [read_predictions(p) for p in entry_runs]
    b = [read_predictions(p) for p in reference_runs]
    n = len(a[0].titles)
    draws = np.random.default_rng(bootstrap.SEED).integers(0, n, size=(bootstrap.RESAMPLES, n))
    diffs = [np.mean([plain_f1(r.truth[i], r.predicted[i], metric) for r in a])
             - np.mean([plain_f1(r.truth[i], r.predicted[i], metric) for r in b]) for i in draws]
    verdict = "wins" if low > 0 else "loses" if high < 0 else "no measurable difference"
    assert cell.strip().endswith(f"({verdict})")
    return (low, high), tuple(np.percentile(diffs, [2.5, 97.5]))


def test_onet_it_report_interval_recomputed_with_plain_numpy():
    """docs/results/onet_it: the 3-seed minilm group minus the baseline on micro-F1. Its
    test_predictions.csv hold O*NET titles, which stay out of git: present only where the study
    was run (docs/results/README.md), so elsewhere this skips."""
    runs = ONET_IT / "runs"
    seeds = sorted(runs.glob("minilm-unfrozen-seed*"))
    if not all((p / "test_predictions.csv").exists() for p in [runs / "baseline", *seeds]) \
            or len(seeds) != 3:
        pytest.skip("docs/results/onet_it/runs/*/test_predictions.csv not here (not committed)")
    report, expected = recomputed_interval((ONET_IT / "comparison.md").read_text(),
                                           "minilm-unfrozen", "baseline", seeds,
                                           [runs / "baseline"])
    assert report == pytest.approx(expected, abs=1e-4)  # the report rounds to 4 decimals
