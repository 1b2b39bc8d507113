"""Metrics and threshold tuning: pure functions over numpy arrays (no torch, no distributed)."""
from __future__ import annotations

import numpy as np

from .config import THRESHOLD_POLICIES  # noqa: F401 (re-exported)

MIN_TUNING_SUPPORT = 5  # labels with fewer positives in val keep the default threshold
DEFAULT_THRESHOLD = 0.5
SHRINK_PRIOR_WEIGHT = 50  # val positives at which a label's own threshold and the global weigh 1:1


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
    from sklearn.metrics import (classification_report, f1_score, hamming_loss,
                                 precision_recall_fscore_support, precision_score, recall_score)
    y = targets.astype(int)
    pred = predict_labels(probs, thresholds, at_least_one)
    p, r, f, s = precision_recall_fscore_support(y, pred, zero_division=0)
    metrics = {
        "micro_f1": f1_score(y, pred, average="micro", zero_division=0),
        "macro_f1": f1_score(y, pred, average="macro", zero_division=0),
        "samples_f1": f1_score(y, pred, average="samples", zero_division=0),
        "micro_precision": precision_score(y, pred, average="micro", zero_division=0),
        "micro_recall": recall_score(y, pred, average="micro", zero_division=0),
        "subset_accuracy": float(np.mean(np.all(pred == y, axis=1))),
        "hamming_loss": hamming_loss(y, pred),
        "micro_f1_at_0.5": f1_score(y, (probs >= 0.5).astype(int), average="micro",
                                    zero_division=0),
        "per_label": {name: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
                             "support": int(s[j]), "threshold": float(thresholds[j])}
                      for j, name in enumerate(labels)},
    }
    metrics = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in metrics.items()}
    report = classification_report(y, pred, target_names=labels, zero_division=0, digits=3)
    return metrics, report


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
