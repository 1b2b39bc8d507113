"""Atomic checkpoint directories: `best/` (a plain save_pretrained model) and `last/` (resume
state).

A directory is written under a temporary name, then swapped in with renames, so a process killed at
any moment leaves the previous version loadable; a write that fails (a full disk, a read-only
directory) removes the temporary folder and raises WriteError, one line naming the directory and
what was being written. Nothing here unpickles arbitrary objects: weights
are safetensors and trainer state is read with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

BEST, LAST = "best", "last"
STATE_FILE = "trainer_state.pt"
MODEL_FILE = "model.safetensors"


class WriteError(RuntimeError):
    """An output the run could not write (a full disk, a read-only directory); the message names
    the directory and what was being written."""


@contextmanager
def writing(directory: Path, what: str, note: str = ""):
    """Turn a failed write inside the block into WriteError. torch.save reports a full disk as a
    bare RuntimeError ("unexpected pos ..."), safetensors as SafetensorError: the free space
    left is added to the message, which tells a full disk from the rest."""
    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as e:
        if isinstance(e, WriteError):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else \
            (str(e).strip().splitlines() or [type(e).__name__])[0]
        try:
            reason += f"; {shutil.disk_usage(directory).free / 2**20:.0f} MB free there"
        except OSError:
            pass
        raise WriteError(f"{directory}: cannot write {what} ({reason}); {note}free space there or "
                         "pass another --output-dir") from e


@contextmanager
def atomic_dir(target: Path):
    """Yield a fresh temporary directory; when the block succeeds it replaces `target`. When it
    fails, the temporary directory goes and `target` stays as it was (WriteError for a failed
    write)."""
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    with writing(target.parent, f"{target.name}/", f"the previous {target.name}/ is kept; "):
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            yield tmp
            _fsync_tree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)  # between these two renames only `.old` exists: see recover()
        shutil.rmtree(old, ignore_errors=True)


def recover(run_dir: Path) -> None:
    """Undo what a crash in the middle of atomic_dir() left behind."""
    for name in (BEST, LAST):
        target, old = Path(run_dir) / name, Path(run_dir) / (name + ".old")
        if old.exists() and not target.exists():
            os.replace(old, target)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(Path(run_dir) / (name + ".tmp"), ignore_errors=True)


def _fsync_tree(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def save_best(run_dir: Path, model, tokenizer, meta: dict, state_dict: dict | None = None) -> None:
    """The model as a `save_pretrained` directory any transformers install can load
    (`state_dict`: full weights where the model's own are partitioned, as under ZeRO-3)."""
    with atomic_dir(Path(run_dir) / BEST) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        (tmp / "training_meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def save_last(run_dir: Path, model, state: dict) -> None:
    """Everything needed to continue: weights (safetensors) + optimizer / scheduler / scaler /
    counters."""
    with atomic_dir(Path(run_dir) / LAST) as tmp:
        save_model(model, str(tmp / MODEL_FILE))
        torch.save(state, tmp / STATE_FILE)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely; the message names the file."""


def load_last(run_dir: Path, model) -> dict | None:
    """Load `last/` into `model`; return the trainer state, or None when there is no checkpoint."""
    path = Path(run_dir) / LAST
    if not (path / STATE_FILE).exists():
        return None
    try:
        load_model(model, str(path / MODEL_FILE))
    except Exception as e:  # safetensors raises several types for bad headers and shapes
        raise CheckpointError(f"{path / MODEL_FILE}: cannot load ({str(e).splitlines()[0]}); "
                              "start over with --overwrite")
    try:
        return torch.load(path / STATE_FILE, weights_only=True, map_location="cpu")
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise CheckpointError(f"{path / STATE_FILE}: refusing to load ({str(e).splitlines()[0]}); "
                              "only plain tensor checkpoints are loaded")
