"""The files every finished run leaves for `vacancy.compare`: metrics.json, report.txt and
test_predictions.csv. The trainer (run.py) and the baseline write them here; compare reads them
here, so the format lives in one place."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import predict_labels

PREDICTIONS = "test_predictions.csv"


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def summary(metrics: dict) -> str:
    return (f"test: micro-F1 {metrics['micro_f1']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
            f"samples-F1 {metrics['samples_f1']:.4f}  subset accuracy "
            f"{metrics['subset_accuracy']:.4f}  Hamming loss {metrics['hamming_loss']:.4f}")


def write_results(run_dir: Path, metrics: dict, report: str, thresholds: np.ndarray,
                  labels: list[str], test: pd.DataFrame, probs: np.ndarray,
                  at_least_one: bool = False) -> None:
    """metrics.json, report.txt and test_predictions.csv: the files of every run, transformer or
    baseline (vacancy.baseline), that vacancy.compare reads."""
    write_json(run_dir / "metrics.json", metrics)
    (run_dir / "report.txt").write_text(report)
    predicted = predict_labels(probs, thresholds, at_least_one).astype(bool)
    table = pd.DataFrame({
        "title": test["title"], "area": test["labels"].map(" ".join),
        "predicted": [" ".join(np.array(labels)[row]) for row in predicted]})
    table = pd.concat([table, pd.DataFrame(probs, columns=[f"p_{x}" for x in labels])], axis=1)
    table.to_csv(run_dir / PREDICTIONS, index=False, float_format="%.6f")


@dataclass
class Predictions:
    """One run's test_predictions.csv as arrays over (title, label); labels sorted by name."""
    titles: np.ndarray     # (n,) str, cleaned as in training
    areas: np.ndarray      # (n,) str: the true labels as written, space-separated
    labels: list[str]
    truth: np.ndarray      # (n, L) bool, restricted to the run's labels
    predicted: np.ndarray  # (n, L) bool, at the run's thresholds
    probs: np.ndarray      # (n, L) float


class PredictionsError(ValueError):
    """A test_predictions.csv that cannot be read; the message names it."""


def read_predictions(run_dir: Path) -> Predictions:
    path = Path(run_dir) / PREDICTIONS
    try:
        table = pd.read_csv(path, dtype={"title": str, "area": str, "predicted": str},
                            keep_default_na=False)
    except FileNotFoundError:
        raise PredictionsError(f"{path}: not found")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PredictionsError(f"{path}: cannot parse as CSV ({str(e).strip()})")
    missing = [c for c in ("title", "area", "predicted") if c not in table.columns]
    prob_columns = sorted(c for c in table.columns if c.startswith("p_"))
    if missing or not prob_columns:
        raise PredictionsError(f"{path}: missing column(s) "
                               f"{', '.join(missing + ([] if prob_columns else ['p_<label>']))}")
    labels = [c[2:] for c in prob_columns]

    column = {name: j for j, name in enumerate(labels)}

    def matrix(cells: pd.Series) -> np.ndarray:
        # a file holds few distinct label sets: build each row once; a label outside the run's
        # label space (dropped in training) is left out, as in its metrics
        codes, distinct = pd.factorize(cells)
        rows = np.zeros((len(distinct), len(labels)), dtype=bool)
        for i, cell in enumerate(distinct):
            rows[i, [column[x] for x in cell.split() if x in column]] = True
        return rows[codes]

    return Predictions(table["title"].to_numpy(str), table["area"].to_numpy(str), labels,
                       matrix(table["area"]), matrix(table["predicted"]),
                       table[prob_columns].to_numpy(float))
