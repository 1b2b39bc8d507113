"""Would the transformer gain from val too? One more epoch over train + val, measured on a study.

    python studies/refit_transformer.py --study runs/study/major-e4 \
        --data ../shared/data/onet_titles_major.csv

`--refit on` fits the TF-IDF and kNN parts again on train + val once val has picked the mixing
weights; the transformer only learns from train. For each seed of a finished `quality_study.py`
study this trains the run's best/ one more epoch over train + val (AdamW, one process, the LRs
decaying linearly from --lr / --head-lr to 0), then scores on test, under the default rule: the
transformer before and after, the refitted mix of three as a run builds it (weights picked on val
with the train-only parts, vacancy.ensemble.decide) and the same mix with the longer-trained
transformer in it, its kNN part on the old encoder's vectors or on its own.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quality_study import print_seed_table, transformer_probs  # noqa: E402
from vacancy.data import PadCollator, load_splits  # noqa: E402
from vacancy.ensemble import Neighbours, TfidfModel, mix, tune_weights  # noqa: E402
from vacancy.inference import encode, load_checkpoint  # noqa: E402
from vacancy.metrics import f1_counts, predict_labels  # noqa: E402
from vacancy.model import head_parameter_names  # noqa: E402


def one_more_epoch(model, tokenizer, titles: list[str], targets: np.ndarray, lr: float,
                   head_lr: float, batch_size: int, seed: int) -> float:
    """Train `model` in place over the titles once, in random order; returns the seconds taken."""
    torch.manual_seed(seed)
    ids = tokenizer(titles, truncation=True, max_length=64)["input_ids"]
    order = np.random.default_rng(seed).permutation(len(ids))
    steps = -(-len(ids) // batch_size)
    head = head_parameter_names(model)
    params = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in params.items() if n not in head], "lr": lr},
         {"params": [p for n, p in params.items() if n in head], "lr": head_lr}],
        weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    collate, y = PadCollator(tokenizer.pad_token_id), torch.tensor(targets, dtype=torch.float32)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        rows = order[step * batch_size:(step + 1) * batch_size]
        batch = collate([(i, ids[i], torch.zeros(0)) for i in rows])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        torch.nn.functional.binary_cross_entropy_with_logits(logits, y[rows]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="a quality_study.py study folder")
    parser.add_argument("--data", required=True, help="the study's data")
    parser.add_argument("--lr", type=float, default=2e-5, help="encoder LR of the extra epoch")
    parser.add_argument("--head-lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    data = load_splits(args.data)
    targets, parts = data.targets, data.parts
    titles = {p: getattr(parts, p)["title"].tolist() for p in ("train", "val", "test")}
    train_val = titles["train"] + titles["val"]
    train_val_y = np.concatenate([targets["train"], targets["val"]])
    tfidf_val = TfidfModel.fit(titles["train"], targets["train"]).probs(titles["val"])
    tfidf_test = TfidfModel.fit(train_val, train_val_y).probs(titles["test"])  # refitted
    half = np.full(targets["val"].shape[1], 0.5)

    def score(probs: np.ndarray) -> tuple[float, float]:
        return f1_counts(predict_labels(probs, half, True), targets["test"])

    def knn_test(vectors: dict) -> np.ndarray:  # the kNN part refitted: train + val in memory
        memory = np.concatenate([vectors["train"], vectors["val"]])
        return Neighbours(memory, train_val_y, args.k).probs(vectors["test"])

    rows: dict[str, list] = {}
    for run_dir in sorted(Path(args.study).glob("s[0-9]*/")):
        transformer = transformer_probs(run_dir, parts, "cls")
        model, tokenizer, _, _ = load_checkpoint(run_dir / "best")
        vectors = {p: encode(model, tokenizer, titles[p], vectors=True)[1] for p in titles}
        knn_val = Neighbours(vectors["train"], targets["train"], args.k).probs(vectors["val"])
        weights, _ = tune_weights({"transformer": transformer["val"], "tfidf": tfidf_val,
                                   "knn": knn_val}, targets["val"], "0.5", True)
        seconds = one_more_epoch(model, tokenizer, train_val, train_val_y, args.lr,
                                 args.head_lr, args.batch_size, seed=int(run_dir.name[1:]))
        test_probs, test_vectors = encode(model, tokenizer, titles["test"], vectors=True)
        longer = {"test": test_vectors,
                  **{p: encode(model, tokenizer, titles[p], vectors=True)[1]
                     for p in ("train", "val")}}
        cells = {
            "transformer": score(transformer["test"]),
            "transformer, one more epoch": score(test_probs),
            "mix of 3, refit": score(mix({"transformer": transformer["test"],
                                          "tfidf": tfidf_test, "knn": knn_test(vectors)},
                                         weights)),
            "mix of 3, refit, one more epoch": score(mix({"transformer": test_probs,
                                                          "tfidf": tfidf_test,
                                                          "knn": knn_test(vectors)}, weights)),
            "same, kNN on its vectors": score(mix({"transformer": test_probs,
                                                   "tfidf": tfidf_test,
                                                   "knn": knn_test(longer)}, weights))}
        print(f"{run_dir.name}: weights " + ", ".join(f"{n} {w:.1f}" for n, w in weights.items())
              + f"; one more epoch over {len(train_val)} titles in {seconds:.0f}s", flush=True)
        for name, value in cells.items():
            rows.setdefault(name, []).append(value)
    print(f"\n{Path(args.study).name}: {len(titles['test'])} test titles; default rule; "
          f"mean ± std over {len(rows['transformer'])} seeds")
    print_seed_table(rows, "model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
