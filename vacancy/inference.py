"""Loading a saved `best/` directory and scoring titles with it, in one process.

Training's final evaluation, `python -m vacancy.evaluate` and `python -m vacancy.predict` share the
cleaning (data.clean_title) and the batching used here. The transformer part comes from a backend:
PyTorch (torch_backend.py) or the ONNX Runtime export of `python -m vacancy.export`
(onnx_backend.py); the TF-IDF and kNN parts, the mix and the thresholds are NumPy and SciPy either
way. This module imports no torch itself, so the ONNX path starts in about a second.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import clean_title
from .ensemble import Neighbours, TfidfModel, load_decision, mix
from .metrics import DEFAULT_THRESHOLD
from .onnx_backend import ONNX_DIR, ExportError, check_export, read_labels

BACKENDS = ("auto", "torch", "onnx")


def __getattr__(name: str):
    if name == "encode":  # `from vacancy.inference import encode` imports torch only then
        from .torch_backend import encode
        return encode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_thresholds(model_dir: Path, labels: list[str]) -> np.ndarray:
    path = Path(model_dir) / "thresholds.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    return np.array([saved.get(x, DEFAULT_THRESHOLD) for x in labels])


def load_checkpoint(model_dir: str | Path, device="cpu"):
    """(model in eval mode, tokenizer, label names, per-label thresholds) of a saved `best/`."""
    from .torch_backend import load_model
    labels = read_labels(model_dir)
    return (*load_model(model_dir, device), labels, load_thresholds(model_dir, labels))


def predict_probs(model, tokenizer, titles, batch_size: int = 256, max_length: int = 64,
                  progress: bool = False) -> np.ndarray:
    """Sigmoid probabilities (titles x labels) of the PyTorch model. Titles are cleaned as in
    training and scored in batches of similar length, so little compute goes to padding."""
    from .torch_backend import encode
    return encode(model, tokenizer, [clean_title(t) for t in titles], batch_size, max_length,
                  progress)


@dataclass
class Tagger:
    """A saved best/ as it predicts: the transformer (scored by `backend`), mixed with the TF-IDF
    model and the kNN part when the run trained them (decision.json), the per-label thresholds
    and the at-least-one-area rule."""
    backend: object  # TorchBackend or OnnxBackend: .scores(titles, ...) -> (probs, vectors)
    labels: list[str]
    thresholds: np.ndarray
    at_least_one: bool
    weights: dict[str, float]  # each part's share of the mix
    tfidf: TfidfModel | None
    neighbours: Neighbours | None

    @property
    def model(self):
        """The PyTorch classifier (torch backend only)."""
        return self.backend.model

    @property
    def tokenizer(self):
        return self.backend.tokenizer

    def probs(self, titles, batch_size: int = 256, max_length: int = 64,
              progress: bool = False, clean: bool = True) -> np.ndarray:
        """(titles x labels) probabilities of the mix; `clean=False`: the titles are already
        cleaned (data.clean_title), as a caller that de-duplicates cleaned titles has them."""
        return mix(self.part_probs(titles, batch_size, max_length, progress, clean),
                   self.weights)

    def part_probs(self, titles, batch_size: int = 256, max_length: int = 64,
                   progress: bool = False, clean: bool = True) -> dict[str, np.ndarray]:
        """Each part's probabilities (transformer, and tfidf and knn when loaded)."""
        titles = [clean_title(t) for t in titles] if clean else list(titles)
        knn = self.neighbours is not None
        probs, vectors = self.backend.scores(titles, batch_size, max_length, progress, knn)
        parts = {"transformer": probs}
        if self.tfidf is not None:
            parts["tfidf"] = self.tfidf.probs(titles)
        if knn:
            parts["knn"] = self.neighbours.probs(vectors)
        return parts


def choose_backend(model_dir: Path, backend: str, device) -> str:
    """"torch" or "onnx": `auto` takes the ONNX export when best/ has a valid one and the device
    is the CPU."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: not one of {', '.join(BACKENDS)}")
    if backend == "onnx" and str(device) != "cpu":
        raise ValueError(f"backend onnx runs on the CPU only, not on {device}")
    if backend != "auto":
        return backend
    if str(device) != "cpu":
        return "torch"
    if not (model_dir / ONNX_DIR).exists():
        return "torch"
    try:
        check_export(model_dir)
    except ExportError as e:
        print(f"warning: {e}; tagging with the torch backend", file=sys.stderr)
        return "torch"
    return "onnx"


def load_tagger(model_dir: str | Path, device="cpu", ensemble: bool = True,
                backend: str = "torch", onnx_file: str | None = None,
                precision: str = "fp32") -> Tagger:
    """best/ with its decision rule; `ensemble=False` drops the TF-IDF and kNN parts (the
    transformer alone, at the same thresholds). `backend`: what scores the transformer part:
    "torch", "onnx" (best/onnx/ from `python -m vacancy.export`; ExportError, a ValueError naming
    the file, when it is missing or made from another model) or "auto" (onnx when best/ has a
    valid export, else torch). `onnx_file`: model.onnx or model.int8.onnx (default: int8 when
    exported). `precision`: the torch backend's weights, fp32, bf16, fp16 or auto (bf16 on a CUDA
    card that has it, else fp32)."""
    model_dir = Path(model_dir)
    at_least_one, weights, tfidf, neighbours = load_decision(model_dir)
    if not ensemble:
        weights, tfidf, neighbours = {"transformer": 1.0}, None, None
    if choose_backend(model_dir, backend, device) == "onnx":
        from .onnx_backend import OnnxBackend
        scorer = OnnxBackend.load(model_dir, onnx_file)
    else:
        from .torch_backend import TorchBackend
        scorer = TorchBackend.load(model_dir, device, precision)
    labels = read_labels(model_dir)
    return Tagger(scorer, labels, load_thresholds(model_dir, labels), at_least_one, weights,
                  tfidf, neighbours)
