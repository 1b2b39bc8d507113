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
from .ensemble import Neighbours, TfidfModel, load_decision, mix
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


def predict_probs(model, tokenizer, titles, batch_size: int = 256, max_length: int = 64,
                  progress: bool = False) -> np.ndarray:
    """Sigmoid probabilities (titles x labels). Titles are cleaned as in training and scored in
    batches of similar length, so little compute goes to padding."""
    return encode(model, tokenizer, [clean_title(t) for t in titles], batch_size, max_length,
                  progress)


@torch.no_grad()
def encode(model, tokenizer, titles, batch_size: int = 256, max_length: int = 64,
           progress: bool = False, vectors: bool = False):
    """predict_probs() of titles already cleaned; with `vectors`, also each title's mean token
    state of the encoder's last layer at unit length (what the kNN part compares), from the same
    forward pass: (probs, vectors)."""
    from tqdm.auto import tqdm
    ids = tokenizer(list(titles), truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    collate = PadCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    probs = np.zeros((len(ids), model.config.num_labels), dtype=np.float32)
    states = np.zeros((len(ids), model.config.hidden_size if vectors else 0), dtype=np.float32)
    # a bar only on a terminal: in a log file a redrawn bar shows its first frame alone
    bar = progress and sys.stderr.isatty()
    for start in tqdm(range(0, len(ids), batch_size), disable=not bar, desc="predict"):
        rows = order[start:start + batch_size]
        batch = collate([(i, ids[i], torch.zeros(0)) for i in rows])
        mask = batch["attention_mask"].to(device)
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=mask,
                    output_hidden_states=vectors)
        probs[rows] = torch.sigmoid(out.logits.float()).cpu().numpy()
        if vectors:
            weights = mask[:, :, None].float()
            mean = (out.hidden_states[-1].float() * weights).sum(1) / weights.sum(1).clamp(min=1)
            states[rows] = torch.nn.functional.normalize(mean, dim=1).cpu().numpy()
    return (probs, states) if vectors else probs


@dataclass
class Tagger:
    """A saved best/ as it predicts: the transformer, mixed with the TF-IDF model and the kNN part
    when the run trained them (decision.json), the per-label thresholds and the at-least-one-area
    rule."""
    model: torch.nn.Module
    tokenizer: object
    labels: list[str]
    thresholds: np.ndarray
    at_least_one: bool
    weights: dict[str, float]  # each part's share of the mix
    tfidf: TfidfModel | None
    neighbours: Neighbours | None

    def probs(self, titles, batch_size: int = 256, max_length: int = 64,
              progress: bool = False, clean: bool = True) -> np.ndarray:
        """(titles x labels) probabilities of the mix; `clean=False`: the titles are already
        cleaned (data.clean_title), as a caller that de-duplicates cleaned titles has them."""
        if clean:
            titles = [clean_title(t) for t in titles]
        knn = self.neighbours is not None
        out = encode(self.model, self.tokenizer, titles, batch_size, max_length, progress, knn)
        parts = {"transformer": out[0] if knn else out}
        if self.tfidf is not None:
            parts["tfidf"] = self.tfidf.probs(titles)
        if knn:
            parts["knn"] = self.neighbours.probs(out[1])
        return mix(parts, self.weights)


def load_tagger(model_dir: str | Path, device: str | torch.device = "cpu",
                ensemble: bool = True, backend: str = "torch") -> Tagger:
    """best/ with its decision rule; `ensemble=False` drops the TF-IDF and kNN parts (the
    transformer alone, at the same thresholds). `backend`: what scores the transformer part
    (only "torch" so far)."""
    if backend != "torch":
        raise ValueError(f"backend {backend!r}: not available")
    at_least_one, weights, tfidf, neighbours = load_decision(model_dir)
    if not ensemble:
        weights, tfidf, neighbours = {"transformer": 1.0}, None, None
    return Tagger(*load_checkpoint(model_dir, device), at_least_one, weights, tfidf, neighbours)
