"""Reading, cleaning, splitting, label handling and tokenisation of the vacancy CSV."""
from __future__ import annotations

import csv
import itertools
import logging
import multiprocessing
import os
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("vacancy")

REQUIRED_COLUMNS = ("title", "area")


class DataError(ValueError):
    """Unusable input data; the message names the file and the row or column."""


@lru_cache(maxsize=1)
def _word_tokenizer():
    # NLTK's Treebank-style tokenizer needs no downloaded data (word_tokenize needs punkt_tab).
    from nltk.tokenize import NLTKWordTokenizer
    return NLTKWordTokenizer()


# Lower-cased titles of plain words (most of them) that NLTK's tokenizer only splits at spaces:
# none of its rules matches letters, digits and spaces, except the few contractions it splits.
_PLAIN = re.compile(r"[a-z0-9 ]*")
_SPLIT_BY_NLTK = re.compile(r"\b(?:cannot|gimme|gonna|gotta|lemme|wanna)\b")


def clean_title(text: str) -> str:
    """Lower-case and drop punctuation tokens, as the notebook did. Training and prediction share
    it."""
    text = str(text).lower()
    if _PLAIN.fullmatch(text) and not _SPLIT_BY_NLTK.search(text):
        return " ".join(text.split())  # what the tokenizer gives, ~100x sooner
    tokens = _word_tokenizer().tokenize(text)
    return " ".join(t for t in tokens if not all(c in string.punctuation for c in t))


PARALLEL_FROM = 20_000  # titles; below this a process pool costs more than it saves


def clean_titles(titles: list[str]) -> list[str]:
    """clean_title over many titles, in order. NLTK's tokenizer is pure Python (the slow part of
    reading a large CSV), so each distinct title is cleaned once (a job board repeats its titles:
    the synthetic 1M file has 32% distinct), and many are shared out to one forked process per
    core."""
    codes, distinct = pd.factorize(pd.Series([str(t).lower() for t in titles], dtype=object),
                                   use_na_sentinel=False)
    distinct = list(distinct)
    processes = len(os.sched_getaffinity(0))
    if len(distinct) < PARALLEL_FROM or processes < 2:
        cleaned = [clean_title(t) for t in distinct]
    else:
        size = -(-len(distinct) // (4 * processes))  # a few chunks per process even out speeds
        chunks = [distinct[i:i + size] for i in range(0, len(distinct), size)]
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            cleaned = [t for chunk in pool.map(_clean_chunk, chunks) for t in chunk]
    return np.asarray(cleaned, dtype=object)[codes].tolist() if cleaned else []


def _clean_chunk(titles: list[str]) -> list[str]:
    return [clean_title(t) for t in titles]


def parse_labels(area: str) -> list[str]:
    """`"Analyst  IT_security "` -> `["analyst", "it_security"]` (sorted, unique)."""
    return sorted(set(str(area).lower().split()))


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read the CSV into columns `title` (cleaned) and `labels` (lists); drop and count unusable
    rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        # utf-8-sig strips a BOM; Windows line endings are handled by the csv parser.
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty")
    except UnicodeDecodeError as e:
        line = _line_of_byte(path, e.start)
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte {e.object[e.start]:#x}); "
                        "re-save the file as UTF-8")
    except (pd.errors.ParserError, csv.Error) as e:
        raise DataError(f"{path}: cannot parse as CSV ({str(e).strip()})")
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) == 1 and any(sep in df.columns[0] for sep in ";\t|"):
            hint = " (the file does not look comma-separated: save it with ',' as delimiter)"
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found "
                        f"{', '.join(map(repr, df.columns))}{hint}")
    if df.empty:
        raise DataError(f"{path}: has a header but no rows")

    titles = pd.Series(clean_titles(df["title"].tolist()), index=df.index, dtype=str)
    codes, areas = pd.factorize(df["area"], use_na_sentinel=False)  # few distinct: parse each once
    labels = pd.Series([parse_labels(a) for a in areas], dtype=object)[codes].set_axis(df.index)
    empty_title, empty_area = titles.str.len() == 0, labels.map(len) == 0
    bad = empty_title | empty_area
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # +1 header, +1 one-based
        log.warning("%s: dropped %d row(s) with an empty title (%d) or area (%d); first at line %d",
                    path, bad.sum(), empty_title.sum(), empty_area.sum(), first)
    out = pd.DataFrame({"title": titles[~bad], "labels": labels[~bad]}).reset_index(drop=True)
    if out.empty:
        raise DataError(f"{path}: no row has both a title and an area")
    n_dup = int(out["title"].duplicated().sum())
    if n_dup:
        log.warning("%s: %d row(s) repeat an earlier title after cleaning", path, n_dup)
    return out


def _line_of_byte(path: Path, offset: int) -> int:
    return path.read_bytes()[:offset].count(b"\n") + 1


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def split(df: pd.DataFrame, seed: int = 42, path: str = "data") -> Splits:
    """The notebook's split: 90/10 train+val/test, then 80/20 train/val, both with `seed`."""
    if len(df) < 10:
        raise DataError(f"{path}: {len(df)} usable row(s); the 90/10 then 80/20 split needs at "
                        "least 10")
    from sklearn.model_selection import train_test_split  # here: a warm start never splits
    rest, test = train_test_split(df, train_size=0.9, random_state=seed)
    train, val = train_test_split(rest, train_size=0.8, random_state=seed)
    return Splits(*(part.reset_index(drop=True) for part in (train, val, test)))


@dataclass
class LabelledSplits:
    parts: Splits
    labels: "LabelSpace"
    targets: dict[str, np.ndarray]  # "train"/"val"/"test" -> binary label matrix
    leaked: int  # test titles that occur verbatim in train


def load_splits(path: str, split_seed: int = 42) -> LabelledSplits:
    """Read, split and binarize (labels fitted on train); log the sizes and the leakage."""
    parts = split(read_csv(path), split_seed, path)
    labels = LabelSpace.fit(parts.train["labels"])
    targets = {name: labels.encode(getattr(parts, name)["labels"], name)
               for name in ("train", "val", "test")}
    leaked = count_leaked(parts.train, parts.test)
    log.info("data: %d train / %d val / %d test titles, %d labels; %d test title(s) (%.1f%%) also "
             "occur verbatim in train", len(parts.train), len(parts.val), len(parts.test),
             len(labels), leaked, 100 * leaked / len(parts.test))
    return LabelledSplits(parts, labels, targets, leaked)


def count_leaked(train: pd.DataFrame, other: pd.DataFrame) -> int:
    """How many titles of `other` occur verbatim (after cleaning) in train."""
    return int(other["title"].isin(set(train["title"])).sum())


class LabelSpace:
    """The label binarizer: fitted on train (`fit`) or rebuilt from a saved model's labels;
    columns in sorted label order."""

    def __init__(self, names: list[str]) -> None:
        self.names = sorted(names)

    @classmethod
    def fit(cls, train_labels) -> "LabelSpace":
        counts = pd.Series([x for row in train_labels for x in row]).value_counts()
        rare = sorted(counts[counts < 2].index)
        if rare:
            log.warning("train: %d label(s) have a single example (%s); expect poor scores on them",
                        len(rare), ", ".join(rare[:10]))
        if len(counts) == 1:
            log.warning("train: every title has the same label (%s): there is nothing to tell "
                        "apart", counts.index[0])
        return cls(list(counts.index))

    def encode(self, labels, part: str) -> np.ndarray:
        """Binary matrix; labels unseen in train are dropped with a warning that counts them."""
        column = {x: i for i, x in enumerate(self.names)}
        unseen = [x for row in labels for x in row if x not in column]
        if unseen:
            kinds = sorted(set(unseen))
            log.warning("%s: dropped %d occurrence(s) of %d label(s) not seen in train: %s",
                        part, len(unseen), len(kinds), ", ".join(kinds[:10]))
        cells = [(r, column[x]) for r, row in enumerate(labels) for x in row if x in column]
        out = np.zeros((len(labels), len(self.names)), np.float32)
        if cells:
            out[tuple(np.array(cells).T)] = 1
        return out

    def __len__(self) -> int:
        return len(self.names)


class TokenIds:
    """The token ids of many titles as one flat int32 array and int64 offsets (n + 1): 4 bytes a
    token instead of a Python list of ints per title, and memory-mappable (prepared.py)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat, self.offsets = flat, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> list[int]:
        return np.diff(self.offsets).tolist()

    def take(self, index: np.ndarray) -> "TokenIds":
        """The titles at `index`, in that order, as a new TokenIds."""
        lengths = np.diff(self.offsets)[index]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # each output token's place in self.flat: its title's start there, plus its rank within
        shift = np.repeat(self.offsets[:-1][index] - offsets[:-1], lengths)
        return TokenIds(self.flat[shift + np.arange(offsets[-1])], offsets)


def tokenize(tokenizer, titles: list[str], max_length: int, part: str,
             chunk: int = 100_000) -> TokenIds:
    """Tokenize with the fast tokenizer (its batch call is multithreaded); no padding (batches pad
    themselves). Each distinct title is encoded once. One pass counts the titles longer than
    `max_length`, and only those are encoded again, truncated. In chunks, so that one chunk at a
    time exists as Python lists."""
    codes, distinct = pd.factorize(pd.Series(list(titles), dtype=object), use_na_sentinel=False)
    titles, repeats = list(distinct), np.bincount(codes, minlength=len(distinct))
    flat, lengths, n_long = [], [], 0
    for start in range(0, len(titles), chunk):
        some = titles[start:start + chunk]
        ids = tokenizer(some, truncation=False)["input_ids"]
        long = [j for j, x in enumerate(ids) if len(x) > max_length]
        if long:
            cut = tokenizer([some[j] for j in long], truncation=True, max_length=max_length)
            for j, x in zip(long, cut["input_ids"]):
                ids[j] = x
        n_long += int(repeats[start:start + chunk][long].sum())
        lengths.append(np.fromiter(map(len, ids), np.int64, len(ids)))
        flat.append(np.fromiter(itertools.chain.from_iterable(ids), np.int32))
    if n_long:
        log.warning("%s: %d title(s) longer than %d tokens were truncated", part, n_long,
                    max_length)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths or [[]]))]).astype(np.int64)
    return TokenIds(np.concatenate(flat or [np.zeros(0, np.int32)]), offsets).take(codes)


# The torch side of the data (the dataset, the samplers, the collator) lives in batching.py, so
# that cleaning titles for the ONNX tagger imports no torch; `from vacancy.data import X` works.
_BATCHING = ("TitleDataset", "LengthGroupedSampler", "ResumableSampler", "LengthSortedSampler",
             "PadCollator")


def __getattr__(name: str):
    if name in _BATCHING:
        from . import batching
        return getattr(batching, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
