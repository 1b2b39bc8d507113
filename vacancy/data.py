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


# NLTK's rules, rewritten to run once over many titles joined by "\n" with, for each title, the
# text that rule gives it alone: its per-call cost (~33 substitutions a title, each through
# nltk.redos' timeout wrapper) is what made cleaning slow. In a rewrite, `\s` and every negated
# class exclude "\n", and `^`/`$` become line anchors (MULTILINE): no match then holds a "\n",
# `^`/`$` match at each title's ends, and a lookaround or `\b` that meets the "\n" sees no word
# character and no space, as it sees nothing at a string's end. A rule that pads single
# characters or replaces a literal is str.replace, which does the same. A rule is skipped on a
# text that holds none of the strings each of its matches holds (its gate). A title holding "\n"
# is cleaned by NLTK itself; so is every title if this NLTK has a rule not listed here.


def _pad_each(chars: str):
    r"""r" \g<0> " on a class of single characters: each padded with spaces, which pads no other
    (rewrite and gate)."""
    def substitute(replacement: str, text: str) -> str:
        for c in chars:
            if c in text:
                text = text.replace(c, f" {c} ")
        return text
    return substitute, tuple(chars)


def _literal(old: str, new: str):
    """A rule whose pattern is the plain string `old`: left to right, without overlaps (rewrite
    and gate)."""
    return (lambda replacement, text: text.replace(old, new)), (old,)


# İ ı ſ K: the characters but ASCII letters that (?i) takes for ASCII letters (re's docs); they
# open the gates of every (?i) rule, whose gates are written in lower case, as the texts are
_FOLDS_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")
_ONE_LINE = {  # (NLTK's source, replacement) -> (rewrite: pattern, str function or None for
    # NLTK's own; gate: strings of which each match holds one, or None: always)
    # STARTING_QUOTES
    (r"([«“‘„]|[`]+)", r" \1 "): (None, tuple("«“‘„`")),
    (r"^\"", r"``"): (None, ('"',)),
    (r"(``)", r" \1 "): _literal("``", " `` "),
    (r"([ \(\[{<])(\"|\'{2})", r"\1 `` "): (None, ('"', "''")),
    (r"(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", r"\1 "): (None, ("'",)),
    # PUNCTUATION
    (r'([^\.])(\.)([\]\)}>"\'»”’ ]*+)\s*$', r"\1 \2 \3 "):
        (r'([^\.\n])(\.)([\]\)}>"\'»”’ ]*+)[^\S\n]*$', (".",)),
    (r"([:,])([^\d])", r" \1 \2"): (r"([:,])([^\d\n])", (":", ",")),
    (r"([:,])$", r" \1 "): (None, (":", ",")),
    (r"\.{2,}", r" \g<0> "): (None, ("..",)),
    (r"[;@#$%&]", r" \g<0> "): _pad_each(";@#$%&"),
    (r"[\u2012-\u2015]", r" \g<0> "): _pad_each("\u2012\u2013\u2014\u2015"),
    (r'([^\.])(\.)([\]\)}>"\']*)\s*$', r"\1 \2\3 "):
        (r'([^\.\n])(\.)([\]\)}>"\']*)[^\S\n]*$', (".",)),
    (r"[?!]", r" \g<0> "): _pad_each("?!"),
    (r"([^'])' ", r"\1 ' "): (r"([^'\n])' ", ("' ",)),
    (r"[*]", r" \g<0> "): _pad_each("*"),
    # PARENS_BRACKETS, DOUBLE_DASHES
    (r"[\]\[\(\)\{\}\<\>]", r" \g<0> "): _pad_each("[](){}<>"),
    (r"--", r" -- "): _literal("--", " -- "),
    # ENDING_QUOTES (the text is padded with a space each side before these)
    (r"([»”’])", r" \1 "): _pad_each("»”’"),
    (r"''", " '' "): _literal("''", " '' "),
    (r'"', " '' "): _literal('"', " '' "),
    # runs of 2+ whitespace, or one that is not a space: leaves a lone space alone, as it is.
    # Its gate is not its matches' but the later rules': without them, the final str.split
    # splits where it puts spaces (str.split's whitespace holds regex's \s).
    (r"\s+", " "): (r"[^\S\n]{2,}|[^\S \n]",
                    ("'", "cannot", "gimme", "gonna", "gotta", "lemme", "wanna", *_FOLDS_TO_ASCII)),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "):
        (r"([^' \n])('[sS]|'[mM]|'[dD]|') ", ("' ", "'s ", "'S ", "'m ", "'M ", "'d ", "'D ")),
    (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "):
        (r"([^' \n])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ",
         ("'ll ", "'LL ", "'re ", "'RE ", "'ve ", "'VE ", "n't ", "N'T ")),
    # CONTRACTIONS2, CONTRACTIONS3 (replacement: tokenize()'s)
    (r"(?i)\b(can)(?#X)(not)\b", r" \1 \2 "): (None, ("cannot",)),
    (r"(?i)\b(d)(?#X)('ye)\b", r" \1 \2 "): (None, ("d'ye",)),
    (r"(?i)\b(gim)(?#X)(me)\b", r" \1 \2 "): (None, ("gimme",)),
    (r"(?i)\b(gon)(?#X)(na)\b", r" \1 \2 "): (None, ("gonna",)),
    (r"(?i)\b(got)(?#X)(ta)\b", r" \1 \2 "): (None, ("gotta",)),
    (r"(?i)\b(lem)(?#X)(me)\b", r" \1 \2 "): (None, ("lemme",)),
    (r"(?i)\b(more)(?#X)('n)\b", r" \1 \2 "): (None, ("more'n",)),
    (r"(?i)\b(wan)(?#X)(na)(?=\s)", r" \1 \2 "):
        (r"(?i)\b(wan)(?#X)(na)(?=[^\S\n])", ("wanna",)),
    (r"(?i) ('t)(?#X)(is)\b", r" \1 \2 "): (None, (" 'tis",)),
    (r"(?i) ('t)(?#X)(was)\b", r" \1 \2 "): (None, (" 'twas",)),
}
CHUNK = 1024  # titles joined into one text: long enough that the per-call costs vanish


def _clean_title_nltk(text: str) -> str:
    """The notebook's cleaning, as it was written: lower-case, NLTK's Treebank tokenizer, drop the
    tokens made of punctuation only. The reference the fast paths are tested against."""
    tokens = _word_tokenizer().tokenize(str(text).lower())
    return " ".join(t for t in tokens if not all(c in string.punctuation for c in t))


@lru_cache(maxsize=1)
def _one_line_rules():
    """NLTK's rules in tokenize()'s order, rewritten (_ONE_LINE) and compiled with the engine
    NLTK compiles each with, as (substitute, replacement, gate) lists: before the text is padded
    with a space each side, after; None when this NLTK has a rule not vetted here."""
    import regex  # NLTK's own engine (nltk.redos), installed with it
    nltk = _word_tokenizer()
    before = [*nltk.STARTING_QUOTES, *nltk.PUNCTUATION, nltk.PARENS_BRACKETS, nltk.DOUBLE_DASHES]
    after = [*nltk.ENDING_QUOTES, *((rule, r" \1 \2 ")
                                    for rule in nltk.CONTRACTIONS2 + nltk.CONTRACTIONS3)]
    stages = []
    for stage in (before, after):
        rules = []
        for rule, replacement in stage:
            compiled = getattr(rule, "_rx", rule)  # a redos.TimedPattern wraps a regex.Pattern
            engine = regex if isinstance(compiled, regex.Pattern) else re
            key = (getattr(compiled, "pattern", None), replacement)
            if not isinstance(compiled, engine.Pattern) or key not in _ONE_LINE:
                log.warning("NLTK has a tokenizer rule the fast cleaning does not know (%r, %r): "
                            "cleaning at NLTK's speed", *key)
                return None
            rewrite, gate = _ONE_LINE[key]
            if gate is not None and compiled.flags & engine.IGNORECASE:
                gate += _FOLDS_TO_ASCII
            if not callable(rewrite):
                rewrite = engine.compile(rewrite or compiled.pattern,
                                         compiled.flags | engine.MULTILINE).sub
            rules.append((rewrite, replacement, gate))
        stages.append(rules)
    return stages


# What opens gates, as a text's signature holds it: the gates' characters but letters, digits
# and the space (which every text may hold), and _WORD if the text holds a gate that is a word
_GATE_CHARS = frozenset(c for _, gate in _ONE_LINE.values() for s in gate or () for c in s
                        if not c.isalnum() and c != " ") | frozenset(_FOLDS_TO_ASCII)
_GATE_WORDS = re.compile("|".join(sorted({s for _, gate in _ONE_LINE.values() for s in gate or ()
                                          if s.isascii() and s.isalpha()})))
_WORD = "a word"


def _signature(text: str) -> frozenset:
    held = [c for c in _GATE_CHARS if c in text]
    return frozenset(held + [_WORD] if _GATE_WORDS.search(text) else held)


def _needs(gate_string: str) -> frozenset:
    word = {_WORD} if gate_string.isascii() and gate_string.isalpha() else set()
    return _GATE_CHARS.intersection(gate_string) | word


@lru_cache(maxsize=1024)
def _rules_for(signature: frozenset) -> tuple[list, list]:
    """The rules of each stage whose gate a text of this _signature may open. A rule writes no
    character but the space, the ones it matched, and "`" and "'" in place of quotes, and never
    joins two (what it deletes is whitespace or quotes, and it writes a space or a quote there),
    so no gate word appears that the text did not hold: a gate string is possible only if the
    signature, with those quotes, holds all it _needs."""
    possible = signature | {"`", "'"} if signature & {'"', "'"} else signature

    def may_open(gate) -> bool:
        return gate is None or any(_needs(s) <= possible for s in gate)
    return tuple([rule for rule in stage if may_open(rule[2])] for stage in _one_line_rules())


def _substitute(rules, text: str) -> str:
    for substitute, replacement, gate in rules:
        if gate is None or any(map(text.__contains__, gate)):
            text = substitute(replacement, text)
    return text


def _clean_lines(titles: list[str]) -> list[str]:
    """_clean_title_nltk of many lower-cased titles without "\n", each rule applied once to all
    of them (see _ONE_LINE)."""
    text = "\n".join(titles)
    before, after = _rules_for(_signature(text))
    text = _substitute(before, text)
    text = _substitute(after, " " + text.replace("\n", " \n ") + " ")  # tokenize() pads each
    return [" ".join([t for t in line.split() if t.strip(string.punctuation)])
            for line in text.split("\n")] if titles else []


def _is_plain(text: str) -> bool:
    return bool(_PLAIN.fullmatch(text)) and not _SPLIT_BY_NLTK.search(text)


def clean_title(text: str) -> str:
    """Lower-case and drop punctuation tokens, as the notebook did (_clean_title_nltk, exactly).
    Training and prediction share it."""
    text = str(text).lower()
    if _is_plain(text):
        return " ".join(text.split())  # what the tokenizer gives, ~100x sooner
    if "\n" in text or _one_line_rules() is None:
        return _clean_title_nltk(text)
    return _clean_lines([text])[0]


PARALLEL_FROM = 100_000  # titles with punctuation; fewer: a process pool costs more than it saves


def clean_titles(titles: list[str]) -> list[str]:
    """clean_title over many titles, in order. Each distinct title is cleaned once (a job board
    repeats its titles: the synthetic 1M file has 32% distinct); those with punctuation go through
    NLTK's rules CHUNK at a time (_clean_lines), many of them shared out to one forked process per
    core."""
    codes, distinct = pd.factorize(pd.Series([str(t).lower() for t in titles], dtype=object),
                                   use_na_sentinel=False)
    distinct = distinct.tolist()
    cleaned = [" ".join(t.split()) if _is_plain(t) else None for t in distinct]
    rest = [i for i, t in enumerate(cleaned) if t is None]
    lines = [i for i in rest if "\n" not in distinct[i]] if _one_line_rules() is not None else []
    chunks = [[distinct[i] for i in lines[start:start + CHUNK]]
              for start in range(0, len(lines), CHUNK)]
    processes = len(os.sched_getaffinity(0))
    if len(lines) < PARALLEL_FROM or processes < 2:
        done = map(_clean_lines, chunks)
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            done = pool.map(_clean_lines, chunks)
    for i, t in zip(lines, itertools.chain.from_iterable(done)):
        cleaned[i] = t
    for i in rest:
        if cleaned[i] is None:  # holds a "\n", or this NLTK is not vetted
            cleaned[i] = _clean_title_nltk(distinct[i])
    return np.asarray(cleaned, dtype=object)[codes].tolist() if cleaned else []


def parse_labels(area: str) -> list[str]:
    """`"Analyst  IT_security "` -> `["analyst", "it_security"]` (sorted, unique)."""
    return sorted(set(str(area).lower().split()))


def read_csv(path: str | Path, keep_row: bool = False) -> pd.DataFrame:
    """Read the CSV into columns `title` (cleaned) and `labels` (lists); drop and count unusable
    rows. `keep_row`: also the columns `row`, each kept row's 0-based position among the file's
    data rows (as pandas.read_csv numbers them), and `input_title`, its title as written there:
    for a report that points back into the file."""
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
    out = pd.DataFrame({"title": titles[~bad], "labels": labels[~bad]})
    if keep_row:
        out["row"] = out.index.to_numpy(np.int64)  # read_csv's RangeIndex: the data row positions
        out["input_title"] = df["title"][~bad]
    out = out.reset_index(drop=True)
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
    check_learnable(targets, labels, path)
    leaked = count_leaked(parts.train, parts.test)
    log.info("data: %d train / %d val / %d test titles, %d labels; %d test title(s) (%.1f%%) also "
             "occur verbatim in train", len(parts.train), len(parts.val), len(parts.test),
             len(labels), leaked, 100 * leaked / len(parts.test))
    return LabelledSplits(parts, labels, targets, leaked)


def count_leaked(train: pd.DataFrame, other: pd.DataFrame) -> int:
    """How many titles of `other` occur verbatim (after cleaning) in train."""
    return int(other["title"].isin(set(train["title"])).sum())


def check_learnable(targets: dict[str, np.ndarray], labels: "LabelSpace", path) -> None:
    """Refuse data that nothing can be learned from or measured on, before any model loads: one
    label set on every train title, no label with 2 train examples, or no val or test title left
    with a label seen in train (LabelSpace.encode dropped the others). Data where only some labels
    are unlearnable passes: the warnings count those. Works on the prepared matrices, so a cached
    preparation is checked too."""
    train = targets["train"]
    if not (train != train[:1]).any():
        names = [name for name, on in zip(labels.names, train[0]) if on]
        raise DataError(f"{path}: every train title has the same label set "
                        f"({' '.join(names[:10])}): there is nothing to tell apart")
    if train.sum(axis=0).max() < 2:
        raise DataError(f"{path}: no label has 2 train examples (of {len(labels)} labels, "
                        f"{len(train)} train titles): there is nothing to learn")
    for part in ("val", "test"):
        if not targets[part].any():
            raise DataError(f"{path}: no {part} title has a label seen in train "
                            f"({len(targets[part])} {part} titles): there is nothing to "
                            f"{'tune on' if part == 'val' else 'measure'}")


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
