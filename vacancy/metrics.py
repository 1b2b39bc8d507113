"""Metrics and threshold tuning: pure functions over numpy arrays (no torch, no distributed)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (classification_report, f1_score, hamming_loss,
                             precision_recall_fscore_support, precision_score, recall_score)

MIN_TUNING_SUPPORT = 5  # labels with fewer positives in val keep the default threshold
DEFAULT_THRESHOLD = 0.5


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def bce_with_logits(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy over all (title, label) cells, numerically stable."""
    return float(np.mean(np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))))


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


def tune_thresholds(probs: np.ndarray, targets: np.ndarray,
                    min_support: int = MIN_TUNING_SUPPORT) -> np.ndarray:
    """One threshold per label maximising that label's F1 on `probs`/`targets` (validation data).
    Labels with fewer than `min_support` positives keep 0.5: their F1 curve is noise."""
    thresholds = np.full(targets.shape[1], DEFAULT_THRESHOLD)
    for j in range(targets.shape[1]):
        if targets[:, j].sum() >= min_support:
            thresholds[j] = _best_threshold(probs[:, j], targets[:, j])[0]
    return thresholds


def evaluate(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray,
             labels: list[str]) -> tuple[dict, str]:
    """All reported metrics at `thresholds`, and sklearn's per-label classification report."""
    y = targets.astype(int)
    pred = (probs >= thresholds).astype(int)
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


def _f1_at(probs: np.ndarray, targets: np.ndarray, threshold: float, average: str) -> float:
    return float(f1_score(targets.astype(int), (probs >= threshold).astype(int), average=average,
                          zero_division=0))


def micro_f1(probs: np.ndarray, targets: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    return _f1_at(probs, targets, threshold, "micro")


def macro_f1(probs: np.ndarray, targets: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    return _f1_at(probs, targets, threshold, "macro")
