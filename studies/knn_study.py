"""The kNN part of the mix (the labels of the closest train titles), measured on a study's runs.

    python studies/knn_study.py --study runs/study/major-e4 \
        --data ../shared/data/onet_titles_major.csv

Reads a finished `quality_study.py` study (each seed's best/ and its cached val/test
probabilities). For each seed it embeds train, val and test with best/'s fine-tuned encoder (the
mean of the last layer's token states, L2-normalised; `--encoder pretrained`: the MiniLM it started
from, as sentence-transformers uses it), scores each title by the labels of its K most similar
train titles (vacancy.ensemble.Neighbours, as a run builds it with --knn K), and compares on test,
under the default rule (threshold 0.5, at least one area): the transformer, the TF-IDF model and
the kNN part alone, the mix of the first two and the mix of all three, weights picked on val as a
run picks them (vacancy.ensemble.tune_weights). The rows marked "refit" are what a run does with
--refit on (the default): the TF-IDF and kNN parts fitted again on train + val for test, the
weights kept; "tfidf, refit" is `vacancy.baseline` with its default --refit.

`--variants` adds two other ways to combine the parts, each beside "mix of 3, refit": a stacked
mix (one logistic regression over the three parts' log-odds, shared by every label, fitted on
val) and a fourth part (the kNN part over the encoder the run started from, unchanged by
fine-tuning), the four weights picked on val as tune_weights picks three.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quality_study import print_seed_table, transformer_probs  # noqa: E402
from vacancy.data import load_splits  # noqa: E402
from vacancy.ensemble import Neighbours, TfidfModel, fit_parts, mix, tune_weights  # noqa: E402
from vacancy.inference import encode, load_checkpoint  # noqa: E402
from vacancy.metrics import f1_counts, predict_labels  # noqa: E402
from vacancy.model import resolve_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="a quality_study.py study folder")
    parser.add_argument("--data", required=True, help="the study's data")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--encoder", choices=("fine-tuned", "pretrained"), default="fine-tuned")
    parser.add_argument("--variants", action="store_true",
                        help="also score the stacked mix and the mix of four (above)")
    args = parser.parse_args(argv)
    data = load_splits(args.data)
    targets, parts = data.targets, data.parts
    titles = {p: getattr(parts, p)["title"].tolist() for p in ("train", "val", "test")}
    tfidf = TfidfModel.fit(parts.train["title"], targets["train"])
    tfidf_probs = {p: tfidf.probs(titles[p]) for p in ("val", "test")}
    refit_config = argparse.Namespace(seed=42, knn=args.k)
    train_val_y = np.concatenate([targets["train"], targets["val"]])
    half = np.full(targets["val"].shape[1], 0.5)

    def score(probs: np.ndarray) -> tuple[float, float]:
        return f1_counts(predict_labels(probs, half, True), targets["test"])

    rows: dict[str, list] = {}
    study = Path(args.study)
    pretrained = None  # the vectors of the encoder the runs started from: the same for every seed
    for run_dir in sorted(study.glob("s[0-9]*/")):
        model, tokenizer, _, _ = load_checkpoint(run_dir / "best")
        vectors = {p: encode(model, tokenizer, titles[p], vectors=True)[1] for p in titles}
        if pretrained is None and (args.encoder == "pretrained" or args.variants):
            pretrained = pretrained_vectors(model, tokenizer, run_dir, titles)
        if args.encoder == "pretrained":
            vectors = pretrained
        knn = Neighbours(vectors["train"], targets["train"], args.k)
        by_part = {"transformer": transformer_probs(run_dir, parts, "cls"), "tfidf": tfidf_probs,
                   "knn": {p: knn.probs(vectors[p]) for p in ("val", "test")}}
        cells = {name: score(probs["test"]) for name, probs in by_part.items()}
        for mixed in (("transformer", "tfidf"), ("transformer", "tfidf", "knn")):
            val = {name: by_part[name]["val"] for name in mixed}
            weights, _ = tune_weights(val, targets["val"], "0.5", True)
            cells[f"mix of {len(mixed)}"] = score(
                mix({name: by_part[name]["test"] for name in mixed}, weights))
            print(f"{run_dir.name}: weights of the mix of {len(mixed)}: "
                  + ", ".join(f"{n} {w:.1f}" for n, w in weights.items()), flush=True)
        refit = fit_parts(titles["train"] + titles["val"],
                          np.concatenate([vectors["train"], vectors["val"]]), train_val_y,
                          refit_config)
        refit_test = {"transformer": by_part["transformer"]["test"],
                      "tfidf": refit["tfidf"].probs(titles["test"]),
                      "knn": refit["knn"].probs(vectors["test"])}
        cells["tfidf, refit"] = score(refit_test["tfidf"])
        cells["mix of 3, refit"] = score(mix(refit_test, weights))  # the weights of the mix of 3
        if args.variants:
            val = {name: by_part[name]["val"] for name in refit_test}
            cells["mix of 3, refit, stacked"] = score(stack(val, targets["val"], refit_test))
            val["knn, pretrained"] = Neighbours(pretrained["train"], targets["train"],
                                                args.k).probs(pretrained["val"])
            refit_test["knn, pretrained"] = Neighbours(
                np.concatenate([pretrained["train"], pretrained["val"]]), train_val_y,
                args.k).probs(pretrained["test"])
            four, _ = tune_weights(val, targets["val"], "0.5", True)
            cells["mix of 4, refit"] = score(mix(refit_test, four))
            print(f"{run_dir.name}: weights of the mix of 4: "
                  + ", ".join(f"{n} {w:.1f}" for n, w in four.items()), flush=True)
        for name, value in cells.items():
            rows.setdefault(name, []).append(value)
    print(f"\n{study.name}: kNN over the {args.encoder} encoder, k={args.k}, "
          f"{len(parts.test)} test titles; default rule; mean ± std over {len(rows['knn'])} seeds")
    print_seed_table(rows, "part")
    (study / f"knn-{args.encoder}-k{args.k}.json").write_text(json.dumps(rows, indent=1))
    return 0


def pretrained_vectors(model, tokenizer, run_dir: Path, titles: dict) -> dict:
    """The titles' vectors under the encoder the run started from (its config's --model), loaded
    into the fine-tuned model's encoder: only the encoder's states are used."""
    from transformers import AutoModel
    start = json.loads((run_dir / "config.json").read_text())["model"]
    model.base_model.load_state_dict(AutoModel.from_pretrained(resolve_model(start)).state_dict())
    return {p: encode(model, tokenizer, titles[p], vectors=True)[1] for p in titles}


def stack(val: dict, val_y: np.ndarray, test: dict) -> np.ndarray:
    """A logistic regression over the parts' log-odds, one coefficient per part shared by every
    label, fitted on val's (title, label) pairs: the test probabilities it gives."""
    from sklearn.linear_model import LogisticRegression

    def log_odds(parts: dict) -> np.ndarray:
        p = np.clip(np.stack([parts[name].ravel() for name in val], axis=1), 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))
    model = LogisticRegression(max_iter=1000).fit(log_odds(val), val_y.ravel())
    return model.predict_proba(log_odds(test))[:, 1].reshape(-1, val_y.shape[1])


if __name__ == "__main__":
    sys.exit(main())
