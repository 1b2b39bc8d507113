"""Labels that look wrong: out-of-fold probabilities of the cheap parts, judged by cleanlab.

A model scores a title it was fitted on by the title's own labels, right or wrong; only a title
it never saw shows what the other rows imply. So the rows are split into K folds and each fold is
scored by the TF-IDF model and the kNN part (vacancy.ensemble) fitted on the other folds. All rows
of one conflict group (the same words, conflicts.words) fall in one fold: a twin in the training
folds would vouch for a title's label, even a wrong one. The folds are stratified on the label
set as far as the groups allow. Each distinct cleaned title is scored once. cleanlab's
multi-label confident learning then compares every row's given areas with these probabilities:
which rows look mislabelled, how badly (a quality score in [0, 1]), and per area whether it looks
wrong (given, not supported) or missing (supported, not given).
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .ensemble import MAX_FIT_TITLES, Neighbours, TfidfModel, mix, tune_weights

log = logging.getLogger("vacancy")
STRATA_MAX = 50  # label sets kept apart when stratifying; the rarer ones share one stratum
WEIGHT_SAMPLE = 50_000  # rows on which the mix's weights are picked
# cleanlab's batched estimate (low_memory) above this many rows: on 1M rows x 23 areas its
# per-area pass took 26 s against 61 s for the exact one (docs/results/audit.md)
LOW_MEMORY_FROM = 200_000
# how cleanlab turns a row's per-area self-confidences into its quality score: an exponential
# moving average over them sorted from high to low with alpha 1 keeps only the last, the lowest
# (the worst area). cleanlab's default alpha 0.8 also averages in the areas that look right: on
# injected noise its ranking scored AUPRC 0.28-0.56 against 0.49-0.71 for the worst area, on both
# O*NET files at 5% and 10% (docs/results/audit.md, studies/audit_variants.py)
WORST_AREA = {"method": "exponential_moving_average", "alpha": 1.0}


def make_folds(label_keys, groups, n_folds: int, seed: int) -> np.ndarray:
    """Each row's fold (0..n_folds-1): StratifiedGroupKFold on the label set, the groups whole.
    Label sets with fewer rows than folds, and all but the STRATA_MAX most common, share one
    stratum (each fold cannot get its share of a set rarer than that)."""
    from sklearn.model_selection import StratifiedGroupKFold
    counts = pd.Series(label_keys).value_counts()
    common = counts.index[:STRATA_MAX][counts.to_numpy()[:STRATA_MAX] >= n_folds]
    strata = pd.Categorical(label_keys, categories=common).codes  # -1: the merged stratum
    folds = np.empty(len(strata), np.int8)
    splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has only N members": known
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, held) in enumerate(splitter.split(np.zeros(len(strata)), strata, groups)):
            folds[held] = k
    return folds


@dataclass
class CrossFit:
    """Out-of-fold probabilities (distinct titles x labels) of each part and of their mix, and
    each row's fold."""
    parts: dict[str, np.ndarray]
    weights: dict[str, float]
    mixed: np.ndarray
    seconds: dict[str, float]
    folds: np.ndarray


def cross_fit(titles: np.ndarray, codes: np.ndarray, targets: np.ndarray, folds: np.ndarray,
              vectors: np.ndarray | None, knn: int, seed: int,
              max_fit: int = MAX_FIT_TITLES) -> CrossFit:
    """`titles`: the distinct cleaned titles; `codes`: each row's title there; `targets`: the
    rows' binary labels; `vectors`: the distinct titles' encoder vectors (None: no kNN part).
    Each fold's parts fit on at most `max_fit` rows of the other folds (a fixed random sample,
    as the trainer caps its fit)."""
    n_folds, rng = int(folds.max()) + 1, np.random.default_rng(seed)
    fold_of_title = np.empty(len(titles), np.int8)
    fold_of_title[codes] = folds  # a title's rows are all in one fold (make_folds' groups)
    names = ["tfidf"] + (["knn"] if vectors is not None else [])
    parts = {name: np.zeros((len(titles), targets.shape[1]), np.float32) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for k in range(n_folds):
        train = np.flatnonzero(folds != k)
        if len(train) > max_fit:
            train = np.sort(rng.choice(train, max_fit, replace=False))
        held = np.flatnonzero(fold_of_title == k)
        start = time.perf_counter()
        parts["tfidf"][held] = tfidf_probs(titles, codes, targets, train, held, seed, max_fit)
        seconds["tfidf"] += time.perf_counter() - start
        line = f"TF-IDF {time.perf_counter() - start:.1f}s"
        if vectors is not None:
            start = time.perf_counter()
            neighbours = Neighbours(vectors[codes[train]], targets[train], knn)
            parts["knn"][held] = neighbours.probs(vectors[held])
            seconds["knn"] += time.perf_counter() - start
            line += f", kNN {time.perf_counter() - start:.1f}s"
        log.info("suspects: fold %d/%d: fitted on %d rows, scored %d distinct titles (%s)",
                 k + 1, n_folds, len(train), len(held), line)
    weights = pick_weights(parts, codes, targets, seed)
    return CrossFit(parts, weights, mix(parts, weights).astype(np.float32), seconds, folds)


def tfidf_probs(titles, codes, targets, train, held, seed: int, max_fit: int) -> np.ndarray:
    """The TF-IDF model fitted on the `train` rows, scoring the `held` distinct titles. An area
    that the training folds never (or always) give is not fitted: its probability is 0 (or 1)."""
    seen = targets[train].mean(axis=0)
    fitted = np.flatnonzero((seen > 0) & (seen < 1))
    out = np.repeat((seen >= 1)[None, :].astype(np.float32), len(held), axis=0)
    if len(fitted):
        model = TfidfModel.fit(titles[codes[train]], targets[train][:, fitted], seed=seed,
                               max_titles=max_fit)
        out[:, fitted] = model.probs(titles[held])
    return out


def pick_weights(parts: dict[str, np.ndarray], codes: np.ndarray, targets: np.ndarray,
                 seed: int) -> dict[str, float]:
    """The trainer's weight search (ensemble.tune_weights: steps of 0.1, mean of micro- and
    macro-F1 at one global threshold) run on the out-of-fold probabilities against the given
    labels, on a sample of rows. Most labels are right, so the part that agrees more with them
    out of fold ranks the wrong ones better too."""
    if len(parts) == 1:
        return {name: 1.0 for name in parts}
    rows = np.arange(len(codes))
    if len(rows) > WEIGHT_SAMPLE:
        rows = np.random.default_rng(seed).choice(rows, WEIGHT_SAMPLE, replace=False)
    weights, _ = tune_weights({name: p[codes[rows]] for name, p in parts.items()},
                              targets[rows], "global", True)
    return weights


@dataclass
class Judgement:
    """cleanlab's verdict per row: `flagged` (some area looks wrong), `quality` (label quality
    score in [0, 1], low: likely wrong; the out-of-fold probability of the given side, given or
    not, of the area most in doubt), `wrong` / `missing` (rows x labels: the area is given but
    looks wrong / is not given but looks right)."""
    flagged: np.ndarray
    quality: np.ndarray
    wrong: np.ndarray
    missing: np.ndarray
    low_memory: bool


def judge(targets: np.ndarray, probs: np.ndarray) -> Judgement:
    """cleanlab's multi-label filter and scores on the rows' given labels and out-of-fold
    probabilities. The filter runs once per area (find_multilabel_issues_per_class); a row is
    flagged when any area is, which is how cleanlab's own find_label_issues reduces the same
    per-area masks for its default filter (tests/test_audit.py checks they agree)."""
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class
    from cleanlab.multilabel_classification.rank import get_label_quality_scores
    labels = [np.flatnonzero(row).tolist() for row in targets]
    low_memory = len(labels) > LOW_MEMORY_FROM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab's notices about rare classes: the log says
        per_area = find_multilabel_issues_per_class(labels, probs, low_memory=low_memory)
        quality = get_label_quality_scores(labels, probs, aggregator_kwargs=WORST_AREA)
    given = targets.astype(bool)
    per_area = np.asarray(per_area, bool)
    return Judgement(per_area.any(axis=1), np.asarray(quality, np.float64), per_area & given,
                     per_area & ~given, low_memory)


def suggested(given: np.ndarray, wrong: np.ndarray, missing: np.ndarray,
              probs: np.ndarray) -> np.ndarray:
    """The areas rows would have with cleanlab's per-area verdict applied: the wrong ones taken
    out, the missing ones put in; never none (then the most probable area)."""
    out = (given.astype(bool) & ~wrong) | missing
    empty = ~out.any(axis=1)
    out[np.flatnonzero(empty), probs[empty].argmax(axis=1)] = True
    return out


def per_area_table(targets: np.ndarray, judgement: Judgement, names: list[str]) -> pd.DataFrame:
    """Per area: its rows, how many of them look wrongly given it, how many other rows look to
    miss it, and the estimated noise (the wrong share of its rows). The counts are those of
    cleanlab's common_multilabel_issues / rank_classes_by_multilabel_quality (which run the same
    per-area filter again, without a low-memory mode: tests/test_audit.py checks they agree)."""
    rows = targets.sum(axis=0).astype(np.int64)
    wrong = judgement.wrong.sum(axis=0).astype(np.int64)
    missing = judgement.missing.sum(axis=0).astype(np.int64)
    table = pd.DataFrame({"area": names, "rows": rows, "looks_wrong": wrong,
                          "looks_missing": missing,
                          "noise": wrong / np.maximum(rows, 1),
                          "missing_share": missing / max(1, len(targets))})
    return table.sort_values(["noise", "area"], ascending=[False, True]).reset_index(drop=True)


def confused_pairs(judgement: Judgement, names: list[str], top: int = 10) -> list[dict]:
    """The pairs (given area that looks wrong, area that looks missing) flagged together in the
    most rows: which areas the labellers mix up."""
    rows = np.flatnonzero(judgement.flagged)
    counts = judgement.wrong[rows].T.astype(np.float32) @ judgement.missing[rows].astype(np.float32)
    order = np.argsort(-counts, axis=None, kind="stable")[:top]
    pairs = []
    for a, b in zip(*np.unravel_index(order, counts.shape)):
        if counts[a, b] > 0:
            pairs.append({"given": names[a], "suggested": names[b], "rows": int(counts[a, b])})
    return pairs
