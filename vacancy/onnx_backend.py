"""The transformer part of a saved best/ scored with ONNX Runtime: the fast CPU path.

It imports neither torch nor transformers (importing those two costs a one-title command most of
its time): the tokenizer is best/tokenizer.json read by the `tokenizers` library itself, with the
truncation and special tokens transformers applies, and the graph that `python -m vacancy.export`
wrote (best/onnx/) gives both the logits and the unit mean token states the kNN part compares,
so the rest is NumPy. `check_export` is what tells an export from one of another model.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

ONNX_DIR = "onnx"
EXPORT_FILE = "export.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WEIGHTS_FILE = "model.safetensors"


class ExportError(ValueError):
    """A missing, damaged or stale ONNX export; the message names the file."""


def weights_hash(model_dir: Path) -> str:
    """sha256 of best/'s weights: what ties an export to the model it was made from."""
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise ExportError(f"{path}: no such file (best/ holds no model weights)")
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def read_labels(model_dir: Path) -> list[str]:
    """Label names in output order, from best/config.json (what transformers saves)."""
    path = Path(model_dir) / "config.json"
    try:
        id2label = json.loads(path.read_text())["id2label"]
        return [id2label[str(i)] for i in range(len(id2label))]
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{path}: no label names ({type(e).__name__}: {e})") from None


def check_export(model_dir: Path) -> dict:
    """best/onnx/export.json when the export is there, whole, and made from best/'s weights and
    labels; otherwise ExportError, one line naming the file."""
    model_dir = Path(model_dir)
    path = model_dir / ONNX_DIR / EXPORT_FILE
    if not path.is_file():
        raise ExportError(f"{path}: no such file; run `python -m vacancy.export --model "
                          f"{model_dir}` first")
    try:
        saved = json.loads(path.read_text())
        files, digest, labels = saved["files"], saved["weights_hash"], saved["labels"]
    except (ValueError, KeyError, TypeError) as e:
        raise ExportError(f"{path}: not an export record ({type(e).__name__}: {e})") from None
    if digest != weights_hash(model_dir):
        raise ExportError(f"{path}: exported from another model (the hash of "
                          f"{model_dir / WEIGHTS_FILE} differs); export again")
    if labels != read_labels(model_dir):
        raise ExportError(f"{path}: its labels differ from {model_dir / 'config.json'}'s; "
                          "export again")
    for name in files:
        if not (model_dir / ONNX_DIR / name).is_file():
            raise ExportError(f"{model_dir / ONNX_DIR / name}: no such file; export again")
    return saved


def cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than exist)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def load_tokenizer(model_dir: Path, max_length: int):
    """best/tokenizer.json as transformers applies it with `truncation=True, max_length`: special
    tokens added, ids cut to `max_length` (special tokens included), no padding."""
    from tokenizers import Tokenizer
    path = Path(model_dir) / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # the library raises its own exception type
        raise ExportError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


class OnnxBackend:
    """The transformer part as ONNX Runtime runs an exported graph, on every core of this
    process."""
    name = "onnx"

    def __init__(self, graph: Path, tokenizer_dir: Path, pad_id: int, num_labels: int,
                 hidden_size: int) -> None:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = cores()
        options.inter_op_num_threads = 1  # one graph at a time: its operators run in order
        try:
            self.session = ort.InferenceSession(str(graph), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types
            raise ExportError(f"{graph}: cannot load ({str(e).splitlines()[0]})") from None
        self.graph, self.tokenizer_dir, self.pad_id = Path(graph), Path(tokenizer_dir), pad_id
        self.num_labels, self.hidden_size = num_labels, hidden_size
        self.tokenizers = {64: load_tokenizer(tokenizer_dir, 64)}  # the default, read now

    @classmethod
    def load(cls, model_dir: str | Path, file: str | None = None) -> "OnnxBackend":
        """best/onnx/`file` after check_export(); `file`: model.onnx or model.int8.onnx (default:
        int8 when the export has it: it passed the same self-check, and is faster)."""
        model_dir = Path(model_dir)
        export = check_export(model_dir)
        file = file or (INT8_FILE if INT8_FILE in export["files"] else FP32_FILE)
        if file not in export["files"]:
            raise ExportError(f"{model_dir / ONNX_DIR / file}: not part of the export "
                              f"({', '.join(export['files'])})")
        return cls(model_dir / ONNX_DIR / file, model_dir, int(export["pad_id"]),
                   len(export["labels"]), int(export["hidden_size"]))

    def token_ids(self, titles: list[str], max_length: int = 64) -> list[list[int]]:
        if max_length not in self.tokenizers:
            self.tokenizers[max_length] = load_tokenizer(self.tokenizer_dir, max_length)
        return [e.ids for e in self.tokenizers[max_length].encode_batch(list(titles))]

    def scores(self, titles: list[str], batch_size: int = 256, max_length: int = 64,
               progress: bool = False, vectors: bool = False):
        """(probs, unit vectors or None) of cleaned titles, as torch_backend.encode gives them."""
        ids = self.token_ids(titles, max_length)
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        order = np.argsort(lengths, kind="stable")
        probs = np.zeros((len(ids), self.num_labels), np.float32)
        states = np.zeros((len(ids), self.hidden_size if vectors else 0), np.float32)
        starts = range(0, len(ids), batch_size)
        if progress and sys.stderr.isatty():  # a bar only on a terminal, as the torch backend
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc="predict")
        for start in starts:
            rows = order[start:start + batch_size]
            width = int(lengths[rows].max())
            input_ids = np.full((len(rows), width), self.pad_id, np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for row, i in enumerate(rows):
                input_ids[row, :lengths[i]] = ids[i]
                mask[row, :lengths[i]] = 1
            logits, states_out = self.session.run(
                None, {"input_ids": input_ids, "attention_mask": mask})
            probs[rows] = 1.0 / (1.0 + np.exp(-logits))
            if vectors:
                states[rows] = states_out
        return probs, (states if vectors else None)
