"""Other rankings and filters for the audit's suspects, scored on saved out-of-fold probabilities.

    python studies/audit_noise.py --data ../shared/data/onet_titles_it.csv --noise 0.05 0.10 \
        --save-probs --work /tmp/audit2-work
    python studies/audit_variants.py /tmp/audit2-work/onet_titles_*-noise{5,10}.npz \
        --clean /tmp/audit2-work/onet_titles_major-noise0.npz

Reads the .npz files that `studies/audit_noise.py --save-probs` writes (one per file and noise
level: the injected labels, the truth and each part's out-of-fold probabilities) and scores, in
seconds per file, without fitting the parts again:
- probabilities: the audit's mix; each part alone; the mix's weight picked by out-of-fold log
  loss against the given labels (the injected truth is never used to pick anything); per-area
  Platt scaling and a per-area stacker (logistic regression on both parts' logits of every area),
  both fitted out of fold on the audit's own folds against the given labels;
- rankings: cleanlab's get_label_quality_scores methods and aggregators, adjust_pred_probs;
- filters: cleanlab's multilabel find_label_issues `filter_by` rules, and the lowest quality
  scores cut at cleanlab's own estimate of the number of issues.
--clean: an audit of the file with no noise injected; says which share of a noisier run's flags
that were not injected are flagged there too (the file's own noise).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

EPS = 1e-4  # probabilities are clipped to [EPS, 1 - EPS] before taking logits


def load(path: str) -> dict:
    z = np.load(path)
    parts = {k[len("part_"):]: z[k] for k in z.files if k.startswith("part_")}
    weights = {k[len("weight_"):]: float(z[k]) for k in z.files if k.startswith("weight_")}
    return {"name": Path(path).stem, "targets": z["targets"], "truth": z["truth"],
            "kind": z["kind"], "code": z["code"], "fold": z["fold"], "mixed": z["mixed"],
            "parts": parts, "weights": weights}


def labels_of(targets: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(row).tolist() for row in targets]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def log_loss(p: np.ndarray, targets: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log1p(-p)))


def weight_by_log_loss(d: dict) -> float:
    """The TF-IDF part's weight (steps of 0.1; the kNN part the rest) with the lowest out-of-fold
    log loss against the given labels."""
    tfidf, knn = d["parts"]["tfidf"][d["code"]], d["parts"]["knn"][d["code"]]
    losses = {w: log_loss(w * tfidf + (1 - w) * knn, d["targets"])
              for w in np.round(np.arange(0, 1.01, 0.1), 1)}
    return min(losses, key=losses.get)


def out_of_fold(features: np.ndarray, targets: np.ndarray, folds: np.ndarray,
                c: float) -> np.ndarray:
    """Per area, a logistic regression on `features` (rows x F, or rows x areas x F: that area's
    own features) fitted on the other folds' rows against the given labels, scoring each fold."""
    from sklearn.linear_model import LogisticRegression
    out = np.zeros(targets.shape, np.float64)
    for k in np.unique(folds):
        train, held = folds != k, folds == k
        for a in range(targets.shape[1]):
            x = features[:, a] if features.ndim == 3 else features
            y = targets[train, a]
            if y.min() == y.max():  # the other folds never (or always) give the area
                out[held, a] = y[0]
                continue
            model = LogisticRegression(C=c, max_iter=500).fit(x[train], y)
            out[held, a] = model.predict_proba(x[held])[:, 1]
    return out


def sources(d: dict) -> dict[str, np.ndarray]:
    """Per row probabilities to judge, by name."""
    code, parts, targets = d["code"], d["parts"], d["targets"]
    out = {"mix (audit: weights by F1)": d["mixed"][code]}
    for name, p in parts.items():
        out[f"{name} alone"] = p[code]
    if set(parts) == {"tfidf", "knn"}:
        w = weight_by_log_loss(d)
        d["log_loss_weight"] = w
        out["mix, weights by log loss"] = \
            w * parts["tfidf"][code] + (1 - w) * parts["knn"][code]
        mixed = logit(d["mixed"][code])[:, :, None]
        out["mix, Platt per area (out of fold)"] = out_of_fold(mixed, targets, d["fold"], 1.0)
        both = np.concatenate([logit(parts["tfidf"][code]), logit(parts["knn"][code])], axis=1)
        out["stacker per area on both parts' logits (out of fold)"] = \
            out_of_fold(both, targets, d["fold"], 1.0)
    return out


def worst(s, axis):
    return s.min(axis=axis)


def product(s, axis):
    return np.exp(np.log(np.maximum(s, 1e-12)).sum(axis=axis))


RANKINGS = {  # name: get_label_quality_scores' keyword arguments
    "self_confidence, EMA 0.8 (cleanlab default)": {},
    **{f"self_confidence, EMA {a}": {"aggregator_kwargs": {"method": "exponential_moving_average",
                                                           "alpha": a}}
       for a in (0.5, 0.95)},
    **{f"self_confidence, softmin T {t}": {"aggregator_kwargs": {"method": "softmin",
                                                                 "temperature": t}}
       for t in (0.01, 0.1, 1.0)},
    "self_confidence, worst area": {"aggregator_kwargs": {"method": worst}},
    "normalized_margin, worst area": {"method": "normalized_margin",
                                      "aggregator_kwargs": {"method": worst}},
    "confidence_weighted_entropy, worst area": {"method": "confidence_weighted_entropy",
                                                "aggregator_kwargs": {"method": worst}},
    "self_confidence, product over areas": {"aggregator_kwargs": {"method": product}},
    "self_confidence, EMA 0.8, adjust_pred_probs": {"adjust_pred_probs": True},
    "normalized_margin, EMA 0.8": {"method": "normalized_margin"},
    "confidence_weighted_entropy, EMA 0.8": {"method": "confidence_weighted_entropy"},
}
FILTERS = ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
           "predicted_neq_given", "low_self_confidence", "low_normalized_margin"]


def quality(labels, probs, kwargs) -> np.ndarray:
    from cleanlab.multilabel_classification.rank import get_label_quality_scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # float32 mixes can pass 1 by a rounding error, which cleanlab's entropy refuses
        probs = np.clip(probs.astype(np.float64), 0, 1)
        return np.asarray(get_label_quality_scores(labels, probs, **kwargs), np.float64)


def flag(labels, probs, filter_by: str, frac_noise: float = 1.0) -> np.ndarray:
    from cleanlab.multilabel_classification.filter import find_label_issues
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(find_label_issues(labels, probs, filter_by=filter_by,
                                            frac_noise=frac_noise), bool)


def rank_scores(truth: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """(AUPRC of the ranking, low quality first; precision among the #injected lowest)."""
    from sklearn.metrics import average_precision_score
    top = np.argsort(q, kind="stable")[:truth.sum()]
    return average_precision_score(truth, -q), truth[top].mean()


def flag_scores(truth: np.ndarray, flagged: np.ndarray) -> tuple[int, float, float]:
    return (int(flagged.sum()), truth[flagged].mean() if flagged.any() else float("nan"),
            flagged[truth].mean())


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probs", nargs="+", help="audit_noise.py --save-probs files")
    parser.add_argument("--clean", nargs="*", default=[],
                        help="the same files' audits at 0%% noise (audit_noise.py --noise 0)")
    args = parser.parse_args(argv)
    data = [load(p) for p in args.probs]
    names = [d["name"] for d in data]
    ranking: dict[str, list[str]] = {}
    filtering: dict[str, list[str]] = {}
    for d in data:
        start = time.perf_counter()
        labels, truth = labels_of(d["targets"]), d["truth"]
        for source, probs in sources(d).items():
            kinds = RANKINGS if source.startswith("mix (audit") else \
                {k: v for k, v in RANKINGS.items() if "default" in k or "worst" in k
                 or "T 0.01" in k}
            for rank, kwargs in kinds.items():
                auprc, at_injected = rank_scores(truth, quality(labels, probs, kwargs))
                ranking.setdefault(f"{source} / {rank}", []).append(
                    f"{auprc:.3f} / {at_injected:.3f}")
            rules = FILTERS if source.startswith("mix (audit") else ["prune_by_noise_rate"]
            for rule in rules:
                n, precision, recall = flag_scores(truth, flag(labels, probs, rule))
                filtering.setdefault(f"{source} / {rule}", []).append(
                    f"{n} / {precision:.3f} / {recall:.3f}")
            if source.startswith("mix (audit"):
                filtering.setdefault(f"{source} / prune_by_noise_rate, frac_noise 0.5", []).append(
                    "{} / {:.3f} / {:.3f}".format(
                        *flag_scores(truth, flag(labels, probs, "prune_by_noise_rate", 0.5))))
            # the lowest quality scores (worst area), as many as the default filter flags or half
            n = int(flag(labels, probs, "prune_by_noise_rate").sum())
            q = quality(labels, probs, RANKINGS["self_confidence, worst area"])
            for share in (1.0, 0.5):
                cut = np.zeros(len(truth), bool)
                cut[np.argsort(q, kind="stable")[:int(share * n)]] = True
                filtering.setdefault(f"{source} / lowest quality, {share:g} x the default's "
                                     "count", []).append(
                    "{} / {:.3f} / {:.3f}".format(*flag_scores(truth, cut)))
        print(f"{d['name']}: {len(truth)} rows, {truth.sum()} injected; mix weights by F1 "
              f"{d['weights']}, by log loss tfidf {d.get('log_loss_weight')}; scored in "
              f"{time.perf_counter() - start:.0f} s", flush=True)

    print("\nRanking: AUPRC / precision at #injected\n")
    print(table(["probabilities / ranking"] + names, [[k] + v for k, v in ranking.items()]))
    print("\nFiltering: flagged / precision / recall\n")
    print(table(["probabilities / filter"] + names, [[k] + v for k, v in filtering.items()]))

    for path in args.clean:
        clean = load(path)
        base = clean["name"].rsplit("-noise", 1)[0]
        flagged0 = flag(labels_of(clean["targets"]), clean["mixed"][clean["code"]],
                        "prune_by_noise_rate")
        print(f"\n{clean['name']}: the audit flags {flagged0.sum()} of {len(flagged0)} rows "
              f"({100 * flagged0.mean():.1f}%) with no noise injected")
        for d in data:
            if d["name"].rsplit("-noise", 1)[0] != base:
                continue
            flagged = flag(labels_of(d["targets"]), d["mixed"][d["code"]], "prune_by_noise_rate")
            other = flagged & ~d["truth"]
            both = other & flagged0
            wrong = d["truth"] | flagged0  # if every row flagged at 0% were truly wrong
            labels = labels_of(d["targets"])
            scores = [rank_scores(wrong, quality(labels, d["mixed"][d["code"]], RANKINGS[k]))[0]
                      for k in ("self_confidence, EMA 0.8 (cleanlab default)",
                                "self_confidence, worst area")]
            print(f"{d['name']}: {flagged.sum()} flagged, {other.sum()} of them not injected; "
                  f"{both.sum()} of those ({100 * both.sum() / max(other.sum(), 1):.1f}%) "
                  f"flagged at 0% too. Counting the rows flagged at 0% as wrong too: precision "
                  f"{wrong[flagged].mean():.3f}, AUPRC {scores[0]:.3f} (EMA 0.8) / "
                  f"{scores[1]:.3f} (worst area)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
