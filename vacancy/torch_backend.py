"""The transformer part of a saved best/ scored with PyTorch and transformers: what training's
final evaluation, the kNN part's encoding and `load_tagger(backend="torch")` use.

A backend turns cleaned titles into (sigmoid probabilities, unit mean token states of the last
layer); onnx_backend.py is the other one, for CPU servers without torch.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from .batching import PadCollator


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_model(model_dir: str | Path, device: str | torch.device = "cpu",
               precision: str = "fp32"):
    """(classifier in eval mode on `device`, tokenizer) of a saved best/; `precision`: its
    weights' dtype (fp32, bf16, fp16, or auto: bf16 on a CUDA card that has it, else fp32).
    Logits and mean states leave `encode` as float32 whatever the dtype."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    transformers.utils.logging.disable_progress_bar()
    device = torch.device(device)
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=DTYPES[precision])
    return model.to(device).eval(), tokenizer


@torch.no_grad()
def encode(model, tokenizer, titles, batch_size: int = 256, max_length: int = 64,
           progress: bool = False, vectors: bool = False):
    """Sigmoid probabilities (titles x labels) of titles already cleaned, scored in batches of
    similar length so little compute goes to padding; with `vectors`, also each title's mean token
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
            states[rows] = mean_states(out.hidden_states[-1], mask).cpu().numpy()
    return (probs, states) if vectors else probs


def mean_states(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of each title's token states over its real tokens, at unit length (float32).
    vacancy.export puts this same function inside the ONNX graph."""
    weights = mask[:, :, None].float()
    mean = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(mean, dim=1)


class TorchBackend:
    """The transformer part as PyTorch runs it."""
    name = "torch"

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device = "cpu",
             precision: str = "fp32") -> "TorchBackend":
        return cls(*load_model(model_dir, device, precision))

    def scores(self, titles: list[str], batch_size: int = 256, max_length: int = 64,
               progress: bool = False, vectors: bool = False):
        """(probs, unit vectors or None) of cleaned titles."""
        out = encode(self.model, self.tokenizer, titles, batch_size, max_length, progress,
                     vectors)
        return out if vectors else (out, None)
