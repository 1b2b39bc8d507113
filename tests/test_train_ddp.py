"""End-to-end: a real 2-process torchrun training of a tiny model, checked from the files it
wrote."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_RUN, logged_steps, read_jsonl
from vacancy.evaluate import evaluate_checkpoint
from vacancy.model import lr_factor

METRIC_KEYS = {"micro_f1", "macro_f1", "samples_f1", "micro_precision", "micro_recall",
               "subset_accuracy", "hamming_loss", "micro_f1_at_0.5", "best_val_loss", "best_epoch",
               "n_train", "n_val", "n_test", "world_size", "per_label", "epochs"}


def test_run_writes_all_files(ddp_run):
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["world_size"] == 2
    assert [e["phase"] for e in metrics["epochs"]] == ["frozen", "unfrozen", "unfrozen"]
    assert set(metrics["epochs"][0]) >= {"epoch", "phase", "train_loss", "val_loss",
                                         "val_micro_f1", "seconds", "samples_per_s"}
    config = json.loads((ddp_run / "config.json").read_text())
    assert config["epochs"] == 3 and config["grad_accum"] == 2
    thresholds = json.loads((ddp_run / "best" / "thresholds.json").read_text())
    assert set(thresholds) == set(metrics["per_label"])
    assert "micro avg" in (ddp_run / "report.txt").read_text()
    assert (ddp_run / "best" / "config.json").exists() and (ddp_run / "last").is_dir()


def test_val_loss_decreases_and_best_epoch_is_the_lowest(ddp_run):
    epochs = json.loads((ddp_run / "metrics.json").read_text())["epochs"]
    losses = [e["val_loss"] for e in epochs]
    assert losses[-1] < losses[0]
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    assert metrics["best_val_loss"] == min(losses)
    assert metrics["best_epoch"] == 1 + int(np.argmin(losses))


def test_encoder_frozen_then_trained_identically_on_every_rank(ddp_run):
    ranks = [read_jsonl(ddp_run / f"weight_hashes.rank{r}.jsonl") for r in (0, 1)]
    assert ranks[0] == ranks[1]  # bit-identical weights on both ranks after every epoch
    by_epoch = {h["epoch"]: h for h in ranks[0]}
    assert by_epoch[1]["encoder"] == by_epoch[0]["encoder"]  # frozen epoch left it alone
    assert by_epoch[1]["head"] != by_epoch[0]["head"]  # ...while the head learned
    assert by_epoch[2]["encoder"] != by_epoch[1]["encoder"]  # unfrozen: it trains
    assert by_epoch[3]["encoder"] != by_epoch[2]["encoder"]


def test_lr_follows_the_schedule_per_optimizer_step(ddp_run):
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    steps = [r for r in read_jsonl(ddp_run / "history.jsonl") if r["kind"] == "step"]
    per_rank_batches = math.ceil(metrics["n_train"] / 2 / TINY_RUN["batch_size"])
    spe = math.ceil(per_rank_batches / TINY_RUN["grad_accum"])
    assert 3 * spe == metrics["optimizer_steps"]
    # one record every --log-every (10) steps and at the end of each epoch
    assert [r["step"] for r in steps] == logged_steps(3 * spe, spe)
    phases = [spe, 2 * spe]
    for r in steps:
        expected = lr_factor(r["step"] - 1, phases, 0.06)
        assert r["lr/head"] == pytest.approx(TINY_RUN["head_lr"] * expected)
        frozen = r["step"] <= spe  # the encoder's LR stays 0 while it is frozen
        assert r["lr/encoder"] == pytest.approx(0.0 if frozen else TINY_RUN["lr"] * expected)
        # the embeddings, below the tiny model's one layer, at --layer-lr-decay times its LR
        assert r["lr/encoder_depth1"] == pytest.approx(r["lr/encoder"] * TINY_RUN["layer_lr_decay"])


def test_two_process_metrics_equal_single_process_evaluation(ddp_run, small_csv):
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    single, _ = evaluate_checkpoint(ddp_run / "best", str(small_csv))
    for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
        assert single[key] == pytest.approx(metrics[key], abs=1e-12), key
    assert single["per_label"] == metrics["per_label"]
    assert metrics["n_test"] == sum(1 for _ in open(small_csv)) - 1 - metrics["n_train"] \
        - metrics["n_val"]


def test_saved_model_reproduces_predictions_in_plain_transformers(ddp_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    best = ddp_run / "best"
    model = AutoModelForSequenceClassification.from_pretrained(best).eval()
    tokenizer = AutoTokenizer.from_pretrained(best)
    thresholds = json.loads((best / "thresholds.json").read_text())
    saved = pd.read_csv(ddp_run / "test_predictions.csv", keep_default_na=False)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with torch.no_grad():
        enc = tokenizer(saved["title"].tolist(), padding=True, return_tensors="pt")
        probs = torch.sigmoid(model(**enc).logits).numpy()
    np.testing.assert_allclose(probs, saved[[f"p_{x}" for x in labels]].to_numpy(), atol=1e-5)
    # the saved thresholds, and a title over none of them gets its most probable label
    predicted = [" ".join(x for x, p in zip(labels, row) if p >= thresholds[x])
                 or labels[int(np.argmax(row))] for row in probs]
    assert predicted == saved["predicted"].tolist()
