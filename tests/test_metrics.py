import numpy as np
import torch
from sklearn.metrics import f1_score

from vacancy.metrics import bce_with_logits, evaluate, tune_thresholds


def test_tuned_threshold_maximises_each_labels_f1():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, size=(200, 3)).astype(float)
    # label 0 separable at ~0.3; label 1 noisy; label 2 has too few positives to tune
    probs = np.where(targets == 1, 0.3 + rng.random((200, 3)) * 0.1, rng.random((200, 3)) * 0.25)
    probs[:, 1] = rng.random(200)
    targets[:, 2] = 0
    targets[:3, 2] = 1
    t = tune_thresholds(probs, targets)
    assert 0.25 <= t[0] <= 0.3
    assert f1_score(targets[:, 0], probs[:, 0] >= t[0]) == 1.0
    grid = np.linspace(0, 1, 1001)
    best_on_grid = max(f1_score(targets[:, 1], probs[:, 1] >= g, zero_division=0) for g in grid)
    assert f1_score(targets[:, 1], probs[:, 1] >= t[1]) >= best_on_grid - 1e-12
    assert t[2] == 0.5


def test_evaluate_matches_hand_computed_numbers():
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    probs = np.array([[0.9, 0.2], [0.6, 0.7], [0.8, 0.1], [0.1, 0.3]])
    metrics, report = evaluate(probs, targets, np.array([0.5, 0.5]), ["a", "b"])
    # predicted: [1,0] [1,1] [1,0] [0,0] -> tp 3, fp 1, fn 1
    assert metrics["micro_precision"] == 0.75 and metrics["micro_recall"] == 0.75
    assert metrics["subset_accuracy"] == 0.5
    assert metrics["hamming_loss"] == 2 / 8
    assert metrics["per_label"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                                         "support": 2, "threshold": 0.5}
    assert "micro avg" in report and "samples avg" in report


def test_bce_matches_the_definition():
    logits = np.array([[2.0, -1.0], [-30.0, 40.0]])
    targets = np.array([[1.0, 0.0], [1.0, 1.0]])
    expected = float(torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(logits), torch.tensor(targets)))
    assert abs(bce_with_logits(logits, targets) - expected) < 1e-9
    assert abs(expected - 30 / 4 - np.log1p(np.exp(-2)) / 4 - np.log1p(np.exp(-1)) / 4) < 1e-9
