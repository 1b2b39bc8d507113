"""Where the compared models fail, from their test_predictions.csv: the label pairs they confuse,
their most confident wrong predictions, the titles no run gets right, and the test titles whose
labels contradict the same title in train. Pure numpy/pandas over results.Predictions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .results import Predictions

TOP = 10


def confusions(pred: Predictions) -> np.ndarray:
    """(L, L) counts: [a, b] = titles where the run predicted label a wrongly while missing b,
    i.e. it took a b for an a."""
    false_pos = (pred.predicted & ~pred.truth).astype(np.float32)  # float: a BLAS product
    false_neg = (pred.truth & ~pred.predicted).astype(np.float32)
    return np.rint(false_pos.T @ false_neg).astype(np.int64)


def top_pairs(matrix: np.ndarray, labels: list[str], top: int = TOP) -> list[tuple[str, str, int]]:
    """(predicted, true, count) of the largest cells, ties broken by label names."""
    a, b = np.nonzero(matrix)
    cells = sorted(zip(a, b), key=lambda ab: (-matrix[ab], labels[ab[0]], labels[ab[1]]))
    return [(labels[i], labels[j], int(matrix[i, j])) for i, j in cells[:top]]


@dataclass
class WrongPrediction:
    title: str
    truth: str
    predicted: str
    label: str          # the predicted label that is not in truth
    probability: float
    runs: int           # how many of the entry's runs (seeds) predicted it


def confident_wrong(preds: list[Predictions], top: int = TOP) -> list[WrongPrediction]:
    """The false positives with the highest probability, over the runs of one entry (a seed group
    pools its seeds: each (title, label) once, with its highest probability and the number of
    seeds that made the mistake)."""
    n_labels = len(preds[0].labels)
    cells, probs, runs = [], [], []
    for k, pred in enumerate(preds):
        rows, cols = np.nonzero(pred.predicted & ~pred.truth)
        cells.append(rows * n_labels + cols)
        probs.append(pred.probs[rows, cols])
        runs.append(np.full(len(rows), k))
    cells, probs, runs = map(np.concatenate, (cells, probs, runs))
    order = np.lexsort((cells, -probs))  # highest probability first, ties by test row, then label
    cells, probs, runs = cells[order], probs[order], runs[order]
    unique, first, times = np.unique(cells, return_index=True, return_counts=True)
    keep = np.argsort(first, kind="stable")[:top]  # each cell at its highest probability
    out = []
    for u in keep:
        f = first[u]
        i, j = divmod(int(cells[f]), n_labels)
        pred = preds[runs[f]]
        out.append(WrongPrediction(pred.titles[i], pred.areas[i], _names(pred, pred.predicted[i]),
                                   pred.labels[j], float(probs[f]), int(times[u])))
    return out


def always_wrong(preds: list[Predictions]) -> np.ndarray:
    """Indices of the titles whose predicted label set differs from the truth in every run
    (often label noise in the data, or titles no model could tell apart)."""
    wrong = [np.any(p.predicted != p.truth, axis=1) for p in preds]
    return np.flatnonzero(np.logical_and.reduce(wrong))


def _names(pred: Predictions, row: np.ndarray) -> str:
    return " ".join(np.array(pred.labels)[row])


def contradicted_in_train(test_titles: np.ndarray, test_areas: np.ndarray, train) -> list[tuple]:
    """(title, test labels, train labels) of the test titles that also occur in train with another
    label set: no model can get both right. `train` is load_splits' train part (cleaned titles,
    label lists), so titles match as the models saw them."""
    train_labels: dict[str, set[str]] = {}
    for title, labels in zip(train["title"], train["labels"]):
        train_labels.setdefault(title, set()).add(" ".join(sorted(labels)))
    out = []
    for title, area in zip(test_titles, test_areas):
        seen = train_labels.get(title)
        test_set = " ".join(sorted(area.split()))
        if seen and seen != {test_set}:
            out.append((title, test_set, " | ".join(sorted(seen - {test_set}))))
    return out
