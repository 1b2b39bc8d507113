"""The parts that score titles beside the transformer, and the mix of their probabilities.

On small data a linear model over word and character n-grams is a strong rival of a fine-tuned
encoder, and the two make different mistakes; the labels of a title's closest train titles under
the fine-tuned encoder (a kNN part) differ again. A weighted mean of their probabilities beats
each of them (docs/results/quality.md). The run fits the TF-IDF model on the same train split in
seconds, encodes the train titles once for the kNN part, picks the weights on val (a part may get
0 or 1: the mix is never worse than its best part on val), then (--refit on) fits those two parts
again on train + val, and saves everything in `best/` as JSON and safetensors: nothing is pickled.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .metrics import choose_thresholds, f1_counts, predict_labels

log = logging.getLogger("vacancy")
TFIDF_DIR = "tfidf"
KNN_DIR = "knn"
DECISION_FILE = "decision.json"
# Fitting on more titles than this buys the linear model little and costs minutes: on millions of
# titles it fits on a random sample of this size (docs/results/quality.md has the timings), and the
# kNN part keeps the same sample.
MAX_FIT_TITLES = 100_000
MIN_FIT_POSITIVES = 2  # train titles with (and without) a label for the TF-IDF part to fit it


def build_classifier(C: float = 10.0, seed: int = 42, n_jobs: int | None = None):
    """Word 1-2 grams and character 2-5 grams (within word boundaries, so typos and word pieces
    still match), each label its own L2-regularised logistic regression (`n_jobs` labels at once:
    liblinear itself uses one core)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline, make_union
    features = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2))
    return make_pipeline(features, OneVsRestClassifier(
        LogisticRegression(C=C, solver="liblinear", max_iter=1000, random_state=seed),
        n_jobs=n_jobs))


def fit_classifier(titles, targets: np.ndarray, C: float = 10.0, seed: int = 42):
    """`build_classifier()` fitted over every core. joblib hands large arrays to its workers
    memory-mapped, read-only by default, and liblinear refuses those (`WRITEBACKIFCOPY base is
    read-only`, from ~5k titles on): copy-on-write maps it accepts."""
    import joblib
    with joblib.parallel_config(mmap_mode="c"):
        return build_classifier(C, seed, n_jobs=-1).fit(titles, targets)


# what a saved vectorizer needs besides its vocabulary and idf (the rest are sklearn's defaults)
VECTORIZER_PARAMS = ("analyzer", "ngram_range", "sublinear_tf", "lowercase")


class TfidfModel:
    """A fitted `build_classifier()` reduced to arrays: per vectorizer its vocabulary and idf, and
    one coefficient row and intercept per label. `logits()` equals the pipeline's
    decision_function."""

    def __init__(self, vectorizers: list, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.vectorizers, self.coef, self.intercept = vectorizers, coef, intercept

    @classmethod
    def fit(cls, titles, targets: np.ndarray, C: float = 10.0, seed: int = 42,
            max_titles: int = MAX_FIT_TITLES) -> "TfidfModel":
        titles = np.asarray(titles, dtype=object)
        if len(titles) > max_titles:
            keep = np.random.default_rng(seed).choice(len(titles), max_titles, replace=False)
            titles, targets = titles[keep], targets[keep]
        # A label with under 2 train positives (or negatives) has nothing for liblinear to fit:
        # it keeps its prior log-odds (smoothed by half a title) and no coefficients. With
        # thousands of one-title labels this skips thousands of fits.
        positives = targets.sum(axis=0)
        fitted = np.minimum(positives, len(targets) - positives) >= MIN_FIT_POSITIVES
        intercept = np.log((positives + 0.5) / (len(targets) - positives + 0.5))
        if fitted.any():
            # every core: the other ranks of a run wait for this one at a barrier meanwhile
            pipeline = fit_classifier(titles, targets[:, fitted], C, seed)
            union, estimators = pipeline.steps[0][1], pipeline.steps[1][1].estimators_
        else:
            union, estimators = build_classifier(C, seed).steps[0][1].fit(titles), []
        vectorizers = [v for _, v in union.transformer_list]
        coef = np.zeros((len(fitted), sum(len(v.vocabulary_) for v in vectorizers)), np.float32)
        for j, est in zip(np.flatnonzero(fitted), estimators):
            coef[j], intercept[j] = est.coef_[0], est.intercept_[0]
        return cls(vectorizers, coef, np.asarray(intercept, np.float32))

    def logits(self, titles) -> np.ndarray:
        import scipy.sparse
        features = scipy.sparse.hstack([v.transform(list(titles)) for v in self.vectorizers])
        return np.asarray(features.tocsr() @ self.coef.T) + self.intercept

    def probs(self, titles) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(titles)))

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        meta, arrays = [], {"coef": self.coef, "intercept": self.intercept}
        for i, v in enumerate(self.vectorizers):
            terms = [""] * len(v.vocabulary_)
            for term, j in v.vocabulary_.items():
                terms[j] = term
            meta.append({**{k: getattr(v, k) for k in VECTORIZER_PARAMS}, "terms": terms})
            arrays[f"idf_{i}"] = v.idf_.astype(np.float64)
        (path / "vectorizers.json").write_text(json.dumps(meta))
        save_file(arrays, str(path / "weights.safetensors"))

    @classmethod
    def load(cls, path: Path) -> "TfidfModel":
        arrays = load_file(str(path / "weights.safetensors"))
        vectorizers = [TermVectorizer(**meta, idf=arrays[f"idf_{i}"]) for i, meta in
                       enumerate(json.loads((path / "vectorizers.json").read_text()))]
        return cls(vectorizers, arrays["coef"], arrays["intercept"])


class TermVectorizer:
    """A fitted sklearn TfidfVectorizer of build_classifier() as saved (its vocabulary, idf and
    VECTORIZER_PARAMS), whose transform() gives the same matrix without importing sklearn (seconds
    that a one-title command should not spend): sklearn's default token pattern and its word
    and char_wb n-grams, counts, 1 + log(count), idf, unit rows."""
    WORD = re.compile(r"(?u)\b\w\w+\b")  # sklearn's default token_pattern
    WHITE_SPACES = re.compile(r"\s\s+")

    def __init__(self, analyzer: str, ngram_range, sublinear_tf: bool, lowercase: bool,
                 terms: list[str], idf: np.ndarray) -> None:
        if analyzer not in ("word", "char_wb"):
            raise ValueError(f"TF-IDF analyzer {analyzer!r}: only word and char_wb are saved")
        self.analyzer, self.ngram_range = analyzer, tuple(ngram_range)
        self.sublinear_tf, self.lowercase = sublinear_tf, lowercase
        self.vocabulary_ = {term: j for j, term in enumerate(terms)}
        self.idf_ = np.asarray(idf, np.float64)

    def analyze(self, text: str) -> list[str]:
        """The n-grams of one text, as the sklearn analyzer lists them (repeats kept)."""
        if self.lowercase:
            text = text.lower()
        low, high = self.ngram_range
        if self.analyzer == "word":
            words = self.WORD.findall(text)
            return [" ".join(words[i:i + n]) for n in range(low, high + 1)
                    for i in range(len(words) - n + 1)]
        grams = []
        for word in self.WHITE_SPACES.sub(" ", text).split():
            word = f" {word} "
            # a word shorter than n gives itself once, for the shortest such n only
            for n in range(low, high + 1):
                grams += [word[i:i + n] for i in range(max(len(word) - n, 0) + 1)]
                if len(word) <= n:
                    break
        return grams

    def transform(self, texts):
        import scipy.sparse
        indptr, indices, vocabulary = [0], [], self.vocabulary_
        for text in texts:
            indices += [j for j in map(vocabulary.get, self.analyze(text)) if j is not None]
            indptr.append(len(indices))
        shape = (len(indptr) - 1, len(self.idf_))
        counts = scipy.sparse.csr_matrix((np.ones(len(indices)), np.asarray(indices, np.int64),
                                          np.asarray(indptr, np.int64)), shape=shape)
        counts.sum_duplicates()
        data = counts.data
        if self.sublinear_tf:
            data = np.log(data) + 1
        data *= self.idf_[counts.indices]
        rows = np.repeat(np.arange(shape[0]), np.diff(counts.indptr))
        norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=shape[0]))
        norms[norms == 0] = 1.0
        return scipy.sparse.csr_matrix((data / norms[rows], counts.indices, counts.indptr),
                                       shape=shape)


class Neighbours:
    """The kNN part: a title's score for a label is the share of its k closest train titles that
    have the label, each weighted by exp(cosine / TEMPERATURE). Titles are compared by the
    fine-tuned encoder's mean token states (`torch_backend.encode`); the train vectors are kept at
    half precision, in memory as on disk, so best/ predicts exactly what the run measured."""
    TEMPERATURE = 0.05

    def __init__(self, vectors: np.ndarray, targets: np.ndarray, k: int) -> None:
        self.vectors = np.asarray(vectors, np.float16).astype(np.float32)
        self.targets = np.asarray(targets, np.uint8)
        self.k = min(k, len(self.vectors))

    def probs(self, vectors: np.ndarray, chunk: int = 256) -> np.ndarray:
        out = np.empty((len(vectors), self.targets.shape[1]), np.float32)
        for start in range(0, len(vectors), chunk):
            sims = vectors[start:start + chunk] @ self.vectors.T
            top = closest(sims, self.k)
            weights = np.exp((np.take_along_axis(sims, top, axis=1) - 1) / self.TEMPERATURE)
            weights /= weights.sum(axis=1, keepdims=True)
            out[start:start + chunk] = np.einsum("nk,nkl->nl", weights, self.targets[top])
        return out

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "knn.json").write_text(json.dumps({"k": self.k,
                                                   "temperature": self.TEMPERATURE}))
        save_file({"vectors": self.vectors.astype(np.float16), "targets": self.targets},
                  str(path / "train.safetensors"))

    @classmethod
    def load(cls, path: Path) -> "Neighbours":
        arrays = load_file(str(path / "train.safetensors"))
        k = json.loads((path / "knn.json").read_text())["k"]
        return cls(arrays["vectors"], arrays["targets"], k)


def closest(sims: np.ndarray, k: int, stride: int = 16) -> np.ndarray:
    """The columns of each row's k largest similarities (of equal ones, the lowest column first).

    A full selection per row over every train title (np.argpartition) was most of the kNN
    part's time. The k-th largest of every `stride`-th column is a lower bound of the row's k-th
    largest, so only the columns at or above it (about k * stride of them) can be among the k:
    those are sorted, and the rest never touched again."""
    n, m = sims.shape
    if m < k * stride:
        bound = np.full(n, -np.inf, sims.dtype)
    else:
        bound = -np.partition(-sims[:, ::stride], k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(sims >= bound[:, None])
    order = np.lexsort((cols, -sims[rows, cols], rows))
    starts = np.searchsorted(rows[order], np.arange(n))
    return cols[order[starts[:, None] + np.arange(k)]]


def mix(parts: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted mean of the parts' probabilities."""
    return sum(weights[name] * probs for name, probs in parts.items())


def val_score(probs: np.ndarray, targets: np.ndarray, policy: str, at_least_one: bool) -> float:
    """What the mixing weights maximise on val: the mean of micro- and macro-F1 at the thresholds
    that `policy` picks on the same val data."""
    thresholds = choose_thresholds(probs, targets, policy)
    return sum(f1_counts(predict_labels(probs, thresholds, at_least_one), targets)) / 2


def tune_weights(parts: dict[str, np.ndarray], targets: np.ndarray, policy: str,
                 at_least_one: bool) -> tuple[dict[str, float], dict[tuple, float]]:
    """Each part's weight in the mix (steps of 0.1, summing to 1) with the best val score, and the
    score of every candidate. Ties go to the earlier parts: the transformer first."""
    candidates = [tuple(round(t / 10, 1) for t in ticks)
                  for ticks in itertools.product(range(11), repeat=len(parts)) if sum(ticks) == 10]
    scores = {w: val_score(mix(parts, dict(zip(parts, w))), targets, policy, at_least_one)
              for w in candidates}
    best = max(scores, key=lambda w: (round(scores[w], 12), w))
    return dict(zip(parts, best)), scores


@dataclass
class Decision:
    """How best/ turns a title's probabilities into areas, as picked on val at the end of a run."""
    thresholds: np.ndarray
    at_least_one: bool
    weights: dict[str, float]  # each part's share of the mix; {"transformer": 1.0}: it alone
    tfidf: TfidfModel | None
    neighbours: Neighbours | None
    test_probs: np.ndarray  # what best/ gives on test
    summary: dict  # flat metrics.json entries: val and test F1 of each part and of the mix
    table: str  # the same, as printed at the end of the run

    def save(self, best: Path, labels: list[str]) -> None:
        """thresholds.json, decision.json and the parts beside the transformer (tfidf/, knn/)."""
        from .results import write_json  # pandas: not for the tagger, which only loads
        for folder, part in ((TFIDF_DIR, self.tfidf), (KNN_DIR, self.neighbours)):
            if part is not None:
                tmp = best / (folder + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                part.save(tmp)
                shutil.rmtree(best / folder, ignore_errors=True)
                os.replace(tmp, best / folder)
        write_json(best / "thresholds.json", dict(zip(labels, map(float, self.thresholds))))
        write_json(best / DECISION_FILE, {"at_least_one": self.at_least_one,
                                          "weights": self.weights,
                                          "tfidf": TFIDF_DIR if self.tfidf else None,
                                          "knn": KNN_DIR if self.neighbours else None})


def encode_titles(best: Path, device, texts: dict, test_titles) -> dict[str, np.ndarray]:
    """best/'s encoder vectors of the train sample, val and test titles, for the kNN part. Rank 0
    encodes while the other ranks wait, so it may use every core."""
    import torch

    from .torch_backend import encode, load_model
    model, tokenizer = load_model(best, device)
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or threads)
    try:
        return {part: encode(model, tokenizer, titles, vectors=True)[1]
                for part, titles in (("train", texts["train"]), ("val", texts["val"]),
                                     ("test", list(test_titles)))}
    finally:
        torch.set_num_threads(threads)


def fit_parts(titles: list, vectors: np.ndarray | None, targets: np.ndarray, config) -> dict:
    """The parts beside the transformer, fitted on these titles (and their encoder vectors, for
    the kNN part when --knn is on)."""
    start = time.perf_counter()
    fitted = {"tfidf": TfidfModel.fit(titles, targets, seed=config.seed)}
    log.info("ensemble: TF-IDF model fitted on %d titles in %.1fs", len(titles),
             time.perf_counter() - start)
    if config.knn:
        fitted["knn"] = Neighbours(vectors, targets, config.knn)
    return fitted


def decide(config, data, val_probs: np.ndarray, test_probs: np.ndarray, best: Path,
           device) -> Decision:
    """Fit the parts beside the transformer on the train split (with --ensemble on), pick the
    mixing weights and the thresholds on val, and score every part on val and test the same way,
    so the run says which one won. With --refit on, the parts beside the transformer are then
    fitted again on train + val, for test and best/: val is labelled data that only picked the
    weights (docs/results/quality.md measures the gain)."""
    policy, fallback = config.threshold_policy, config.at_least_one
    val_y, test_y = data.targets["val"], data.targets["test"]
    parts = {"transformer": (val_probs, test_probs)}
    fitted = {}
    weights = {"transformer": 1.0}
    refit = 0  # the val titles that the parts beside the transformer were fitted again with
    if config.ensemble == "on":
        texts = data.titles()  # prepared.PreparedData: a sample of train, and val
        train_y = data.targets["train"][np.asarray(texts["train_index"], dtype=np.int64)]
        vectors = {}
        if config.knn:
            start = time.perf_counter()
            vectors = encode_titles(best, device, texts, data.test["title"])
            log.info("ensemble: %d train, val and test titles encoded for the kNN part in %.1fs",
                     sum(map(len, vectors.values())), time.perf_counter() - start)
        inputs = {"tfidf": {"val": texts["val"], "test": list(data.test["title"])},
                  "knn": vectors}
        fitted = fit_parts(texts["train"], vectors.get("train"), train_y, config)
        for name, part in fitted.items():
            parts[name] = (part.probs(inputs[name]["val"]), part.probs(inputs[name]["test"]))
        weights, _ = tune_weights({name: val for name, (val, _) in parts.items()}, val_y, policy,
                                  fallback)
        log.info("ensemble: weights picked on val: %s", describe(weights))
        if config.refit == "on":  # within the cap: above it the train sample alone fills it
            refit = min(len(val_y), MAX_FIT_TITLES - len(train_y))
            if not refit:
                log.info("ensemble: no refit: the train sample fills the %d-title cap",
                         MAX_FIT_TITLES)
        if refit:
            known = np.concatenate([vectors["train"], vectors["val"][:refit]]) if vectors else None
            fitted = fit_parts(texts["train"] + texts["val"][:refit], known,
                               np.concatenate([train_y, val_y[:refit]]), config)
            for name, part in fitted.items():
                parts[name] = (parts[name][0], part.probs(inputs[name]["test"]))
            log.info("ensemble: fitted again on %d train + %d val titles", len(train_y), refit)
        parts["mix"] = tuple(mix({name: p[i] for name, p in parts.items()}, weights)
                             for i in (0, 1))
    summary = {f"{name}_weight": w for name, w in weights.items()}
    if fitted:
        summary["refit_val_titles"] = refit
    lines = [f"{'(thresholds ' + policy + ')':28s} val micro-F1  val macro-F1  test micro-F1  "
             "test macro-F1"]
    for name, (val, test) in parts.items():
        thresholds = choose_thresholds(val, val_y, policy)
        scores = (*f1_counts(predict_labels(val, thresholds, fallback), val_y),
                  *f1_counts(predict_labels(test, thresholds, fallback), test_y))
        summary.update(zip([f"{name}_{k}" for k in ("val_micro_f1", "val_macro_f1",
                                                    "test_micro_f1", "test_macro_f1")], scores))
        lines.append(f"{name:28s} " + "  ".join(f"{x:12.4f}" for x in scores))
    if fitted:
        alone = [name for name, w in weights.items() if w == 1.0]
        winner = f"the {alone[0]} part alone" if alone else "the mix"
        lines.append(f"On val, {winner} scored best; best/ predicts with it (weights "
                     f"{describe(weights)}).")
        if refit:
            lines.append(f"For test and best/, the {' and '.join(fitted)} parts were fitted again "
                         f"on {len(train_y)} train + {refit} val titles (--refit on).")
    final = parts["mix" if fitted else "transformer"]
    return Decision(choose_thresholds(final[0], val_y, policy), fallback, weights,
                    fitted.get("tfidf"), fitted.get("knn"), final[1], summary, "\n".join(lines))


def describe(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {w:.1f}" for name, w in weights.items())


def load_decision(model_dir: Path) -> tuple[bool, dict[str, float], TfidfModel | None,
                                            Neighbours | None]:
    """(at_least_one, the parts' weights, TF-IDF model or None, kNN part or None) saved in a best/
    directory. A part of weight 0 is not loaded. A best/ of an earlier version is read too: one
    transformer weight and a TF-IDF part, or (no decision.json) the transformer alone with no
    fallback."""
    model_dir = Path(model_dir)
    path = model_dir / DECISION_FILE
    if not path.exists():
        return False, {"transformer": 1.0}, None, None
    saved = json.loads(path.read_text())
    weights = saved.get("weights") or {"transformer": saved["transformer_weight"],
                                       "tfidf": 1.0 - saved["transformer_weight"]}
    tfidf = TfidfModel.load(model_dir / saved["tfidf"]) \
        if saved["tfidf"] and weights.get("tfidf") else None
    neighbours = Neighbours.load(model_dir / saved["knn"]) \
        if saved.get("knn") and weights.get("knn") else None
    return saved["at_least_one"], weights, tfidf, neighbours
