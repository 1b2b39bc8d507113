"""Loading a saved `best/` directory and scoring titles with it, in one process.

Training's final evaluation, `python -m vacancy.evaluate` and `python -m vacancy.predict` share the
cleaning (data.clean_title) and the batching used here.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import PadCollator, clean_title
from .ensemble import TfidfModel, load_decision, mix
from .metrics import DEFAULT_THRESHOLD


def load_checkpoint(model_dir: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, tokenizer, label names, per-label thresholds) of a saved `best/`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    path = model_dir / "thresholds.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    thresholds = np.array([saved.get(x, DEFAULT_THRESHOLD) for x in labels])
    return model, tokenizer, labels, thresholds


@torch.no_grad()
def predict_probs(model, tokenizer, titles, batch_size: int = 256, max_length: int = 64,
                  progress: bool = False) -> np.ndarray:
    """Sigmoid probabilities (titles x labels). Titles are cleaned as in training and scored in
    batches of similar length, so little compute goes to padding."""
    from tqdm.auto import tqdm
    ids = tokenizer([clean_title(t) for t in titles], truncation=True,
                    max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    collate = PadCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    probs = np.zeros((len(ids), model.config.num_labels), dtype=np.float32)
    # a bar only on a terminal: in a log file a redrawn bar shows its first frame alone
    bar = progress and sys.stderr.isatty()
    for start in tqdm(range(0, len(ids), batch_size), disable=not bar, desc="predict"):
        rows = order[start:start + batch_size]
        batch = collate([(i, ids[i], torch.zeros(0)) for i in rows])
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
        probs[rows] = torch.sigmoid(logits.float()).cpu().numpy()
    return probs


@dataclass
class Tagger:
    """A saved best/ as it predicts: the transformer, mixed with the TF-IDF model when the run
    trained one (decision.json), the per-label thresholds and the at-least-one-area rule."""
    model: torch.nn.Module
    tokenizer: object
    labels: list[str]
    thresholds: np.ndarray
    at_least_one: bool
    weight: float  # the transformer's share of the mix
    tfidf: TfidfModel | None

    def probs(self, titles, batch_size: int = 256, max_length: int = 64,
              progress: bool = False) -> np.ndarray:
        probs = predict_probs(self.model, self.tokenizer, titles, batch_size, max_length, progress)
        if self.tfidf is None:
            return probs
        return mix(probs, self.tfidf.probs([clean_title(t) for t in titles]), self.weight)


def load_tagger(model_dir: str | Path, device: str | torch.device = "cpu",
                ensemble: bool = True) -> Tagger:
    """best/ with its decision rule; `ensemble=False` drops the TF-IDF part (the transformer
    alone, at the same thresholds)."""
    at_least_one, weight, tfidf = load_decision(model_dir)
    if not ensemble:
        weight, tfidf = 1.0, None
    return Tagger(*load_checkpoint(model_dir, device), at_least_one, weight, tfidf)
