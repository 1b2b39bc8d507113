"""A third part for the mix, measured before it is built: the labels of the closest train titles.

    python bench/knn_study.py --study runs/study/major-e4 \
        --data ../shared/data/onet_titles_major.csv

Reads a finished `quality_study.py` study (each seed's best/ and its cached val/test
probabilities). For each seed it embeds train, val and test with best/'s fine-tuned encoder (the
mean of the last layer's token states, L2-normalised; `--encoder pretrained`: the MiniLM it started
from, as sentence-transformers uses it), scores each title by the labels of its K most similar
train titles (softmax of cosine / TEMPERATURE), and compares on test, under the default rule
(threshold 0.5, at least one area): the transformer, the TF-IDF model and the kNN part alone, the
two-part mix of today's runs, and a three-part mix whose weights (steps of 0.1) are picked on val.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vacancy.data import load_splits  # noqa: E402
from vacancy.ensemble import TfidfModel, mix, tune_weight  # noqa: E402
from vacancy.metrics import f1_counts, predict_labels  # noqa: E402
from vacancy.model import resolve_model  # noqa: E402

TEMPERATURE = 0.05
STEPS = np.round(np.linspace(0, 1, 11), 2)


@torch.no_grad()
def embed(encoder_dir: str, titles: list[str], batch_size: int = 256) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    encoder = AutoModel.from_pretrained(encoder_dir).eval()
    out = []
    for start in range(0, len(titles), batch_size):
        batch = tokenizer(titles[start:start + batch_size], padding=True, truncation=True,
                          max_length=64, return_tensors="pt")
        states = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"][:, :, None].to(states.dtype)
        out.append(torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=1))
    return torch.cat(out).numpy()


def knn_probs(queries: np.ndarray, keys: np.ndarray, key_targets: np.ndarray, k: int) -> np.ndarray:
    """Each query's label scores: the softmax-weighted labels of its k most similar keys."""
    out = np.empty((len(queries), key_targets.shape[1]), dtype=np.float32)
    for start in range(0, len(queries), 2048):
        sims = queries[start:start + 2048] @ keys.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        weights = np.exp((np.take_along_axis(sims, top, axis=1) - 1) / TEMPERATURE)
        weights /= weights.sum(axis=1, keepdims=True)
        out[start:start + 2048] = np.einsum("nk,nkl->nl", weights, key_targets[top])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="a quality_study.py study folder")
    parser.add_argument("--data", required=True, help="the study's data")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--encoder", choices=("fine-tuned", "pretrained"), default="fine-tuned")
    args = parser.parse_args(argv)
    data = load_splits(args.data)
    targets, parts = data.targets, data.parts
    titles = {p: getattr(parts, p)["title"].tolist() for p in ("train", "val", "test")}
    tfidf = TfidfModel.fit(parts.train["title"], targets["train"])
    tfidf_probs = {p: tfidf.probs(titles[p]) for p in ("val", "test")}
    half = np.full(targets["val"].shape[1], 0.5)

    def score(probs: np.ndarray, part: str) -> tuple[float, float]:
        return f1_counts(predict_labels(probs, half, True), targets[part])

    rows: dict[str, list] = {}
    study = Path(args.study)
    for run_dir in sorted(study.glob("s[0-9]*/")):
        encoder = str(run_dir / "best") if args.encoder == "fine-tuned" else resolve_model("minilm")
        vectors = {p: embed(encoder, titles[p]) for p in titles}
        knn = {p: knn_probs(vectors[p], vectors["train"], targets["train"], args.k)
               for p in ("val", "test")}
        model = dict(np.load(run_dir / "study.npz"))
        w, _ = tune_weight(model["val"], tfidf_probs["val"], targets["val"], "0.5", True)
        two = mix(model["test"], tfidf_probs["test"], w)
        grid = [(a, b) for a in STEPS for b in STEPS if a + b <= 1 + 1e-9]

        def three(a, b, part):
            return a * model[part] + b * tfidf_probs[part] + (1 - a - b) * knn[part]
        a, b = max(grid, key=lambda ab: (score(three(*ab, "val"), "val")[0], ab))
        cells = {"transformer": score(model["test"], "test"),
                 "tfidf": score(tfidf_probs["test"], "test"),
                 "knn": score(knn["test"], "test"),
                 "mix of two": score(two, "test"),
                 "mix of three": score(three(a, b, "test"), "test")}
        print(f"{run_dir.name}: weights transformer {w:.1f} (two); {a:.1f} / tfidf {b:.1f} / "
              f"knn {1 - a - b:.1f} (three)", flush=True)
        for name, value in cells.items():
            rows.setdefault(name, []).append(value)
    print(f"\n{study.name}: kNN over the {args.encoder} encoder, k={args.k}, "
          f"{len(parts.test)} test titles; default rule; mean ± std over {len(rows['knn'])} seeds")
    print("| part | test micro-F1 | test macro-F1 |\n| --- | ---: | ---: |")
    for name, values in rows.items():
        v = np.array(values)
        print(f"| {name} | {v[:, 0].mean():.4f} ± {v[:, 0].std():.4f} | "
              f"{v[:, 1].mean():.4f} ± {v[:, 1].std():.4f} |")
    (study / f"knn-{args.encoder}-k{args.k}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
