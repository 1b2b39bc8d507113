"""Metrics and threshold tuning: pure functions over numpy arrays (no torch, no distributed)."""
from __future__ import annotations

import numpy as np

from .config import THRESHOLD_POLICIES  # noqa: F401 (re-exported)

MIN_TUNING_SUPPORT = 5  # labels with fewer positives in val keep the default threshold
DEFAULT_THRESHOLD = 0.5
SHRINK_PRIOR_WEIGHT = 50  # val positives at which a label's own threshold and the global weigh 1:1
# with more than twice this many labels, reports and plots list the worst and the best this many
# (metrics.json keeps every label)
SHOWN_LABELS = 30


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def bce_with_logits(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy over all (title, label) cells, numerically stable."""
    return float(np.mean(np.maximum(logits, 0) - logits * targets
                         + np.log1p(np.exp(-np.abs(logits)))))


def _best_threshold(probs: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The cut maximising F1 for one label: sweep the sorted probabilities, place the threshold
    halfway between neighbouring scores."""
    order = np.argsort(-probs, kind="stable")
    p, t = probs[order], truth[order]
    tp = np.cumsum(t)
    predicted = np.arange(1, len(p) + 1)
    f1 = 2 * tp / (predicted + t.sum())
    # only cut between distinct scores
    valid = np.append(p[1:] < p[:-1], True)
    f1 = np.where(valid, f1, -1)
    k = int(np.argmax(f1))
    nxt = p[k + 1] if k + 1 < len(p) else 0.0
    return float((p[k] + nxt) / 2), float(f1[k])


def tune_thresholds(probs: np.ndarray, targets: np.ndarray, min_support: int = MIN_TUNING_SUPPORT,
                    default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """One threshold per label maximising that label's F1 on `probs`/`targets` (validation data).
    Labels with fewer than `min_support` positives keep `default`: their F1 curve is noise."""
    thresholds = np.full(targets.shape[1], default)
    for j in range(targets.shape[1]):
        if targets[:, j].sum() >= min_support:
            thresholds[j] = _best_threshold(probs[:, j], targets[:, j])[0]
    return thresholds


def global_threshold(probs: np.ndarray, targets: np.ndarray) -> float:
    """The one threshold for every label that maximises micro-F1: the same sweep as for a single
    label, over all (title, label) cells at once."""
    return _best_threshold(probs.ravel(), targets.ravel())[0]


def shrunk_thresholds(probs: np.ndarray, targets: np.ndarray,
                      prior_weight: float = SHRINK_PRIOR_WEIGHT) -> np.ndarray:
    """Per-label thresholds pulled toward the global one by how little evidence each label has:
    t_j = (n_j * own_j + k * global) / (n_j + k), with n_j the label's positives in val and k
    `prior_weight`. A label with a handful of val positives keeps nearly the global threshold;
    one with hundreds keeps nearly its own. (Per-label cuts tuned on ~1k val titles overfit.)"""
    t_global = global_threshold(probs, targets)
    own = tune_thresholds(probs, targets, min_support=1, default=t_global)
    n = targets.sum(axis=0)
    return (n * own + prior_weight * t_global) / (n + prior_weight)


def choose_thresholds(probs: np.ndarray, targets: np.ndarray, policy: str) -> np.ndarray:
    """Thresholds from val probabilities under one of THRESHOLD_POLICIES, or a fixed number."""
    n_labels = targets.shape[1]
    if policy == "per-label":
        return tune_thresholds(probs, targets)
    if policy == "global":
        return np.full(n_labels, global_threshold(probs, targets))
    if policy == "shrunk":
        return shrunk_thresholds(probs, targets)
    return np.full(n_labels, float(policy))


def predict_labels(probs: np.ndarray, thresholds: np.ndarray,
                   at_least_one: bool = False) -> np.ndarray:
    """0/1 predictions: every label whose probability reaches its threshold; with `at_least_one`,
    a title where none does gets its most probable label (every title has an area)."""
    pred = (probs >= thresholds).astype(int)
    if at_least_one:
        empty = pred.sum(axis=1) == 0
        pred[empty, probs[empty].argmax(axis=1)] = 1
    return pred


def evaluate(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray,
             labels: list[str], at_least_one: bool = False) -> tuple[dict, str]:
    """All reported metrics at `thresholds`, and sklearn's per-label classification report."""
    from sklearn.metrics import (classification_report, f1_score,
                                 precision_recall_fscore_support, precision_score, recall_score)
    columns = list(range(len(labels)))

    def multilabel(matrix: np.ndarray) -> np.ndarray:
        # sklearn reads a single column as a binary target (no "samples" average): pad one
        # column that no score counts (every call below passes labels=columns)
        matrix = matrix.astype(int)
        return np.hstack([matrix, np.zeros_like(matrix)]) if len(columns) == 1 else matrix

    y, pred = multilabel(targets), multilabel(predict_labels(probs, thresholds, at_least_one))
    at_half = multilabel(probs >= 0.5)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=columns, zero_division=0)

    def score(function, average: str, predicted: np.ndarray = pred) -> float:
        return function(y, predicted, labels=columns, average=average, zero_division=0)

    metrics = {
        "micro_f1": score(f1_score, "micro"),
        "macro_f1": score(f1_score, "macro"),
        "samples_f1": score(f1_score, "samples"),
        "micro_precision": score(precision_score, "micro"),
        "micro_recall": score(recall_score, "micro"),
        "subset_accuracy": float(np.mean(np.all(pred == y, axis=1))),
        "hamming_loss": float(np.mean(pred[:, columns] != y[:, columns])),
        "micro_f1_at_0.5": score(f1_score, "micro", at_half),
        "per_label": {name: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
                             "support": int(s[j]), "threshold": float(thresholds[j])}
                      for j, name in enumerate(labels)},
    }
    metrics = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in metrics.items()}
    report = classification_report(y, pred, labels=columns, target_names=labels,
                                   zero_division=0, digits=3)
    return metrics, shorten_report(report, metrics["per_label"])


def shown_labels(per_label: dict[str, dict], n: int = SHOWN_LABELS) -> list[str]:
    """The labels a report or plot lists when there are many: the `n` worst and `n` best by test
    F1 (ties by name), worst first; all of them, worst first, when there are at most 2n."""
    ranked = sorted(per_label, key=lambda name: (per_label[name]["f1"], name))
    return ranked if len(ranked) <= 2 * n else ranked[:n] + ranked[-n:]


def shorten_report(report: str, per_label: dict[str, dict], n: int = SHOWN_LABELS) -> str:
    """sklearn's classification report cut to the rows of shown_labels(), in label order, with a
    line that says so (the averages still count every label; metrics.json has every row)."""
    if len(per_label) <= 2 * n:
        return report
    lines = report.splitlines()
    rows = lines[2:2 + len(per_label)]  # header, blank line, then one row per label in order
    shown = set(shown_labels(per_label, n))
    kept = [row for name, row in zip(per_label, rows) if name in shown]
    note = (f"({len(per_label) - len(kept)} of {len(per_label)} labels not shown: the {n} worst "
            f"and {n} best by F1 are; metrics.json per_label has them all)")
    return "\n".join(lines[:2] + kept + ["", note] + lines[2 + len(per_label):]) + "\n"


def f1_counts(pred: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(micro-F1, macro-F1) of 0/1 predictions, as sklearn computes them with zero_division=0,
    from per-label counts (fast enough to call in a loop over candidate settings)."""
    y = targets.astype(bool)
    pred = pred.astype(bool)
    tp = (pred & y).sum(axis=0)
    wrong = (pred ^ y).sum(axis=0)  # false positives + false negatives
    micro = 2 * tp.sum() / max(1, 2 * tp.sum() + wrong.sum())
    per_label = np.divide(2 * tp, 2 * tp + wrong, out=np.zeros(len(tp)), where=2 * tp + wrong > 0)
    return float(micro), float(per_label.mean())


def micro_f1_at(probs, targets, thresholds, at_least_one: bool = False) -> float:
    return f1_counts(predict_labels(probs, thresholds, at_least_one), targets)[0]


def _f1_at(probs: np.ndarray, targets: np.ndarray, threshold: float, average: str) -> float:
    from sklearn.metrics import f1_score
    return float(f1_score(targets.astype(int), (probs >= threshold).astype(int), average=average,
                          zero_division=0))


def micro_f1(probs: np.ndarray, targets: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    return _f1_at(probs, targets, threshold, "micro")


def macro_f1(probs: np.ndarray, targets: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    return _f1_at(probs, targets, threshold, "macro")
