"""The TF-IDF model that trains beside the transformer, and the mix of their probabilities.

On small data a linear model over word and character n-grams is a strong rival of a fine-tuned
encoder, and the two make different mistakes, so a weighted mean of their probabilities beats both
(docs/results/quality.md). The run fits the TF-IDF model on the same train split in seconds, picks
the weight on val (0 and 1 included: the mix is never worse than its better part on val), and saves
it in `best/` as JSON and safetensors: nothing is pickled.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .metrics import choose_thresholds, f1_counts, predict_labels
from .results import write_json

log = logging.getLogger("vacancy")
TFIDF_DIR = "tfidf"
DECISION_FILE = "decision.json"
# Fitting on more titles than this buys the linear model little and costs minutes: on millions of
# titles it fits on a random sample of this size (docs/results/quality.md has the timings).
MAX_FIT_TITLES = 100_000
WEIGHTS = np.round(np.linspace(0, 1, 11), 2)  # candidate transformer weights


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
        # every core: the other ranks of a run wait for this one at a barrier meanwhile. joblib
        # hands large arrays to its workers memory-mapped, read-only by default, and liblinear
        # refuses those (`WRITEBACKIFCOPY base is read-only`): copy-on-write maps it accepts
        import joblib
        with joblib.parallel_config(mmap_mode="c"):
            pipeline = build_classifier(C, seed, n_jobs=-1).fit(titles, targets)
        union, ovr = pipeline.steps[0][1], pipeline.steps[1][1]
        coef, intercept = [], []
        for est in ovr.estimators_:
            if hasattr(est, "coef_"):
                coef.append(est.coef_[0])
                intercept.append(est.intercept_[0])
            else:  # a label present in every (or no) train title: sklearn's constant predictor
                coef.append(np.zeros(sum(len(v.vocabulary_) for _, v in union.transformer_list)))
                intercept.append(20.0 if est.y_ else -20.0)
        return cls([v for _, v in union.transformer_list], np.asarray(coef, np.float32),
                   np.asarray(intercept, np.float32))

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
        from sklearn.feature_extraction.text import TfidfVectorizer
        arrays = load_file(str(path / "weights.safetensors"))
        vectorizers = []
        for i, meta in enumerate(json.loads((path / "vectorizers.json").read_text())):
            terms = meta.pop("terms")
            meta["ngram_range"] = tuple(meta["ngram_range"])
            v = TfidfVectorizer(**meta, vocabulary={t: j for j, t in enumerate(terms)})
            v.idf_ = arrays[f"idf_{i}"]  # sklearn's setter: a vectorizer fitted from arrays
            vectorizers.append(v)
        return cls(vectorizers, arrays["coef"], arrays["intercept"])


def mix(model_probs: np.ndarray, tfidf_probs: np.ndarray, weight: float) -> np.ndarray:
    return weight * model_probs + (1 - weight) * tfidf_probs


def val_score(probs: np.ndarray, targets: np.ndarray, policy: str, at_least_one: bool) -> float:
    """What the mixing weight maximises on val: the mean of micro- and macro-F1 at the thresholds
    that `policy` picks on the same val data."""
    thresholds = choose_thresholds(probs, targets, policy)
    return sum(f1_counts(predict_labels(probs, thresholds, at_least_one), targets)) / 2


def tune_weight(model_probs: np.ndarray, tfidf_probs: np.ndarray, targets: np.ndarray,
                policy: str, at_least_one: bool) -> tuple[float, dict[float, float]]:
    """The transformer's weight in the mix with the best val score, and the score of every
    candidate (ties go to the transformer)."""
    scores = {float(w): val_score(mix(model_probs, tfidf_probs, w), targets, policy, at_least_one)
              for w in WEIGHTS}
    best = max(scores, key=lambda w: (round(scores[w], 12), w))
    return best, scores


@dataclass
class Decision:
    """How best/ turns a title's probabilities into areas, as picked on val at the end of a run."""
    thresholds: np.ndarray
    at_least_one: bool
    weight: float  # the transformer's weight in the mix; 1.0: the transformer alone
    tfidf: TfidfModel | None
    test_probs: np.ndarray  # what best/ gives on test
    summary: dict  # flat metrics.json entries: val and test F1 of each part and of the mix
    table: str  # the same, as printed at the end of the run

    def save(self, best: Path, labels: list[str]) -> None:
        """thresholds.json, decision.json and (with a TF-IDF part) tfidf/, beside the weights."""
        if self.tfidf is not None:
            tmp = best / (TFIDF_DIR + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.tfidf.save(tmp)
            shutil.rmtree(best / TFIDF_DIR, ignore_errors=True)
            os.replace(tmp, best / TFIDF_DIR)
        write_json(best / "thresholds.json", dict(zip(labels, map(float, self.thresholds))))
        write_json(best / DECISION_FILE, {"at_least_one": self.at_least_one,
                                          "transformer_weight": self.weight,
                                          "tfidf": TFIDF_DIR if self.tfidf else None})


def decide(config, data, val_probs: np.ndarray, test_probs: np.ndarray) -> Decision:
    """Fit the TF-IDF model (with --ensemble on), pick the mixing weight and the thresholds on
    val, and score every part on val and test the same way, so the run says which one won."""
    policy, fallback = config.threshold_policy, config.at_least_one
    val_y, test_y = data.targets["val"], data.targets["test"]
    parts = {"transformer": (val_probs, test_probs)}
    tfidf, weight = None, 1.0
    if config.ensemble == "on":
        start = time.perf_counter()
        texts = data.titles()  # prepared.PreparedData: a sample of train, and val
        train_targets = data.targets["train"][np.asarray(texts["train_index"], dtype=np.int64)]
        tfidf = TfidfModel.fit(texts["train"], train_targets, seed=config.seed)
        parts["tfidf"] = (tfidf.probs(texts["val"]), tfidf.probs(data.test["title"]))
        weight, _ = tune_weight(val_probs, parts["tfidf"][0], val_y, policy, fallback)
        parts["mix"] = tuple(mix(m, t, weight)
                             for m, t in zip(parts["transformer"], parts["tfidf"]))
        log.info("ensemble: TF-IDF model fitted on %d train titles in %.1fs; transformer weight "
                 "%.1f picked on val", len(texts["train"]),
                 time.perf_counter() - start, weight)
    summary = {"transformer_weight": weight}
    lines = [f"{'(thresholds ' + policy + ')':28s} val micro-F1  val macro-F1  test micro-F1  "
             "test macro-F1"]
    for name, (val, test) in parts.items():
        thresholds = choose_thresholds(val, val_y, policy)
        scores = (*f1_counts(predict_labels(val, thresholds, fallback), val_y),
                  *f1_counts(predict_labels(test, thresholds, fallback), test_y))
        summary.update(zip([f"{name}_{k}" for k in ("val_micro_f1", "val_macro_f1",
                                                    "test_micro_f1", "test_macro_f1")], scores))
        label = f"mix (transformer weight {weight:.1f})" if name == "mix" else name
        lines.append(f"{label:28s} " + "  ".join(f"{x:12.4f}" for x in scores))
    if tfidf is not None:
        winner = {0.0: "the TF-IDF model alone",
                  1.0: "the transformer alone"}.get(weight, "the mix")
        lines.append(f"best/ predicts with the mix; on val {winner} scored best")
    final = parts["mix" if tfidf is not None else "transformer"]
    return Decision(choose_thresholds(final[0], val_y, policy), fallback, weight, tfidf,
                    final[1], summary, "\n".join(lines))


def load_decision(model_dir: Path) -> tuple[bool, float, TfidfModel | None]:
    """(at_least_one, transformer weight, TF-IDF model or None) saved in a best/ directory; a
    best/ of an earlier version (no decision.json) is the transformer alone, no fallback."""
    path = Path(model_dir) / DECISION_FILE
    if not path.exists():
        return False, 1.0, None
    saved = json.loads(path.read_text())
    tfidf = TfidfModel.load(Path(model_dir) / saved["tfidf"]) if saved["tfidf"] else None
    return saved["at_least_one"], saved["transformer_weight"], tfidf
