"""Prepare the data once, share it everywhere.

Reading, cleaning, splitting, label fitting and tokenization run once per (CSV content,
tokenizer, max length, split seed), and their result is written to `--cache-dir` as plain NumPy
arrays (token ids as one flat int32 array + offsets, targets as a float32 matrix) plus JSON; no
pickles. Every rank, and every later run of the same data, memory-maps those files instead of
redoing the work: the pages are shared through the page cache instead of copied per rank.

Who writes: global rank 0, in a child process of its own (so that the memory the preparation
needs, pandas frames and Python lists of the whole CSV, is returned to the system before training
starts). The other ranks wait in a broadcast from rank 0, bounded like every collective by
VACANCY_DIST_TIMEOUT_MIN (30 min). That choice assumes the cache directory is on a filesystem every
node sees, as the run directory already must be (README: Slurm); a node that cannot see it fails
with a one-line error naming the directory. A directory is written under a temporary name and
renamed into place, so a reader never sees half of one, and two jobs preparing the same data at
once both end with the same complete copy.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import dist
from .data import DataError, LabelSpace, TokenIds, check_learnable, load_splits, tokenize
from .ensemble import MAX_FIT_TITLES
from .label_issues import drop_flagged, read_flagged

log = logging.getLogger("vacancy")
FORMAT = 2  # bump when cleaning, splitting or the files below change: old caches are not reused
PARTS = ("train", "val", "test")


@dataclass
class PreparedData:
    labels: LabelSpace
    tokens: dict[str, TokenIds]  # "train"/"val"/"test"
    targets: dict[str, np.ndarray]  # binary label matrices (float32)
    leaked: int  # test titles that occur verbatim in train
    test: pd.DataFrame  # test titles (cleaned) and label lists, for test_predictions.csv
    # the texts the TF-IDF and kNN parts of the run fit and score on (ensemble.decide):
    # "train_index" (a sample of at most ensemble.MAX_FIT_TITLES train rows), "train" (their
    # titles), "val"; read from the cache only when asked for (rank 0, at the end of the run)
    texts: dict | Path
    # with --drop-label-issues: n_dropped (train rows left out), n_flagged_kept (in val/test)
    label_issues: dict = field(default_factory=dict)

    def titles(self) -> dict:
        if isinstance(self.texts, Path):
            self.texts = json.loads(self.texts.read_text())
        return self.texts


def prepare(config, tokenizer) -> PreparedData:
    """The run's data: from the cache (made first when missing), or, with `--cache-dir off`,
    prepared in memory by this process as every rank did before the cache existed."""
    if config.cache_dir == "off":
        return _prepare_in_memory(config, tokenizer)
    outcome = None
    if dist.is_main():
        try:
            outcome = str(_ensure(config, tokenizer))
        except DataError as e:
            outcome = DataError(str(e))
    # the other ranks wait here while rank 0 prepares (see the module docstring)
    outcome = dist.broadcast_object(outcome)
    if isinstance(outcome, DataError):
        raise outcome
    data = load(Path(outcome))
    check_learnable(data.targets, data.labels, config.data)  # a cache made before the check
    return data


def default_cache_dir(config) -> Path:
    return Path(config.cache_dir) if config.cache_dir else \
        Path(config.output_dir).resolve().parent / ".cache"


def cache_key(data: str, tokenizer, max_length: int, split_seed: int,
              dropped: np.ndarray | None = None) -> str:
    """Changes with the CSV's content, the tokenizer (vocabulary, normalisation, special tokens),
    the max length, the split seed, FORMAT and the rows --drop-label-issues leaves out of
    train (`dropped`; without it the key is the one it has always been)."""
    digest = hashlib.sha256()
    try:
        with open(data, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise DataError(f"{data}: cannot read ({e.strerror})")
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(json.dumps([FORMAT, type(tokenizer).__name__, max_length, split_seed]).encode())
    if dropped is not None:
        digest.update(b"drop" + np.asarray(dropped, np.int64).tobytes())
    return digest.hexdigest()[:20]


def _ensure(config, tokenizer) -> Path:
    """The cache directory of this data, written first (by a child process) if missing."""
    if not Path(config.data).is_file():
        raise DataError(f"{config.data}: no such file")
    dropped = read_flagged(config.drop_label_issues) if config.drop_label_issues else None
    folder = default_cache_dir(config) / cache_key(config.data, tokenizer, config.max_length,
                                                   config.split_seed, dropped)
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        log.info("data: prepared cache %s (made from %s)", folder, meta["data"])
        for level, message in meta["log"]:  # what preparing it said (sizes, warnings) holds
            log.log(level, "%s", message)
        return folder
    log.info("data: preparing %s once into %s (other ranks wait for it)", config.data, folder)
    parent, child = multiprocessing.get_context("fork").Pipe(duplex=False)
    worker = multiprocessing.get_context("fork").Process(
        target=_write_in_child, args=(child, folder, config, tokenizer), daemon=False)
    worker.start()  # not daemonic: it starts a pool of its own (data.clean_titles)
    child.close()
    try:
        error = parent.recv()
    except EOFError:  # it died without a word (killed, out of memory)
        error = f"preparing {config.data} failed: the preparing process died"
    worker.join()
    if error:
        raise DataError(error)
    return folder


def _write_in_child(conn, folder: Path, config, tokenizer) -> None:
    try:
        write(folder, config, tokenizer)
        conn.send(None)
    except DataError as e:
        conn.send(str(e))
    except BaseException as e:  # anything else: say what, rather than leave rank 0 waiting
        conn.send(f"preparing {config.data} failed: {type(e).__name__}: {e}")
        raise


class _Recorder(logging.Handler):
    """Keeps what preparing logs (sizes, leakage, warnings), to repeat it when the cache is used."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))


def write(folder: Path, config, tokenizer) -> None:
    """Prepare the data and write it to `folder` (atomically: see the module docstring)."""
    recorder = _Recorder()
    log.addHandler(recorder)
    try:
        data = _prepare_in_memory(config, tokenizer)
    finally:
        log.removeHandler(recorder)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for part in PARTS:
        np.save(tmp / f"{part}.ids.npy", data.tokens[part].flat)
        np.save(tmp / f"{part}.offsets.npy", data.tokens[part].offsets)
        np.save(tmp / f"{part}.targets.npy", data.targets[part])
    (tmp / "test.json").write_text(json.dumps({"title": data.test["title"].tolist(),
                                               "labels": data.test["labels"].tolist()}))
    (tmp / "texts.json").write_text(json.dumps(data.titles()))
    meta = {"format": FORMAT, "data": str(config.data), "max_length": config.max_length,
            "split_seed": config.split_seed, "labels": data.labels.names,
            "sizes": {part: len(data.tokens[part]) for part in PARTS}, "leaked": data.leaked,
            "label_issues": data.label_issues, "log": recorder.records}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")  # last: marks it complete
    try:
        os.rename(tmp, folder)
    except OSError:  # another job wrote the same data meanwhile: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").exists():
            raise


def load(folder: Path) -> PreparedData:
    """Memory-map a prepared directory (read-only; targets copy-on-write, as torch wants
    writable arrays)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        tokens = {part: TokenIds(np.load(folder / f"{part}.ids.npy", mmap_mode="r"),
                                 np.load(folder / f"{part}.offsets.npy", mmap_mode="r"))
                  for part in PARTS}
        targets = {part: np.load(folder / f"{part}.targets.npy", mmap_mode="c")
                   for part in PARTS}
        test = pd.DataFrame(json.loads((folder / "test.json").read_text()))
    except (OSError, ValueError) as e:
        raise DataError(f"{folder}: cannot read the prepared data ({e}); is --cache-dir on a "
                        "filesystem every node sees? Delete the folder to prepare it again")
    return PreparedData(LabelSpace(meta["labels"]), tokens, targets, meta["leaked"], test,
                        folder / "texts.json", meta.get("label_issues", {}))


def _prepare_in_memory(config, tokenizer) -> PreparedData:
    data, label_issues = load_splits(config.data, config.split_seed), {}
    if config.drop_label_issues:  # after the split, so that val and test are those without it
        data, label_issues = drop_flagged(data, config.data, config.split_seed,
                                          config.drop_label_issues)
    tokens = {part: tokenize(tokenizer, getattr(data.parts, part)["title"], config.max_length,
                             part) for part in PARTS}
    train = data.parts.train["title"]
    # a fixed sample (not the run's seed): the cache serves every seed
    index = np.random.default_rng(config.split_seed).choice(
        len(train), min(len(train), MAX_FIT_TITLES), replace=False)
    index.sort()
    texts = {"train_index": index.tolist(), "train": train.iloc[index].tolist(),
             "val": data.parts.val["title"].tolist()}
    return PreparedData(data.labels, tokens, data.targets, data.leaked, data.parts.test, texts,
                        label_issues)
