"""The quality study behind the default decision rule: thresholds, the top-1 fallback and the mix
with the TF-IDF model, over several seeds, against the baseline on the same split.

    python studies/quality_study.py --data ../shared/data/onet_titles_it.csv --name it \
        --seeds 1 2 3 --out runs/study -- --epochs 6

Trains `train_ddp.py` once per seed (under torchrun with --nproc > 1; flags after `--` go to it;
finished runs are kept, so rerunning completes a study), scores each run's best/ on val and test,
fits the TF-IDF model on the same train split, and prints test micro-/macro-F1 as mean +- std over
the seeds for every (model, threshold policy, fallback) cell. The choices are made on val only;
test is only read to report them. docs/results/quality.md holds the tables and what they decided.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vacancy.data import load_splits  # noqa: E402
from vacancy.ensemble import TfidfModel, mix, tune_weights  # noqa: E402
from vacancy.metrics import choose_thresholds, f1_counts, predict_labels  # noqa: E402

POLICIES = ("0.5", "per-label", "shrunk", "global")


def train(data: str, run_dir: Path, seed: int, nproc: int, flags: list[str],
          pooling: str, label_weights: float) -> None:
    if (run_dir / "metrics.json").exists():
        return
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    resume = ["--resume"] if (run_dir / "config.json").exists() else []
    # the study mixes and thresholds the runs itself (cells below), from the transformer alone
    script = [str(ROOT / "train_ddp.py")]
    if pooling != "cls":
        script = [str(ROOT / "studies" / "pooling.py"), pooling]
    elif label_weights:
        script = [str(ROOT / "studies" / "label_weights.py"), str(label_weights)]
    cmd = [*launcher, *script, "--data", data, "--seed", str(seed),
           "--output-dir", str(run_dir), "--wandb", "off", "--ensemble", "off", *resume, *flags]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)


def transformer_probs(run_dir: Path, parts, pooling: str) -> dict[str, np.ndarray]:
    """val/test probabilities of the run's best/ (cached in study.npz)."""
    path = run_dir / "study.npz"
    if not path.exists():
        from vacancy.inference import load_checkpoint, predict_probs
        model, tokenizer, _, _ = load_checkpoint(run_dir / "best")  # the transformer alone
        if pooling == "mean":  # best/ loads as the stock class (studies/pooling.py)
            from pooling import apply
            apply(model, pooling)
        titles = {part: getattr(parts, part)["title"].tolist() for part in ("val", "test")}
        np.savez(path, **{part: predict_probs(model, tokenizer, t) for part, t in titles.items()})
    return dict(np.load(path))


def cells(probs: dict, targets: dict) -> dict[tuple, tuple[float, float]]:
    """(source, policy, fallback) -> test (micro-F1, macro-F1), every choice made on val."""
    out = {}
    for policy in POLICIES:
        for fallback in (False, True):
            for source in ("tfidf", "transformer", "mix"):
                if source == "mix":
                    both = {p: {name: probs[name][p] for name in ("transformer", "tfidf")}
                            for p in ("val", "test")}
                    w, _ = tune_weights(both["val"], targets["val"], policy, fallback)
                    val, test = mix(both["val"], w), mix(both["test"], w)
                else:
                    val, test = probs[source]["val"], probs[source]["test"]
                thresholds = choose_thresholds(val, targets["val"], policy)
                out[source, policy, fallback] = f1_counts(
                    predict_labels(test, thresholds, fallback), targets["test"])
    return out


def print_seed_table(rows: dict[str, list], first: str) -> None:
    """One line per row name: test micro- and macro-F1 as mean ± std over the seeds."""
    print(f"| {first} | test micro-F1 | test macro-F1 |\n| --- | ---: | ---: |")
    for name, values in rows.items():
        v = np.array(values)
        print(f"| {name} | {v[:, 0].mean():.4f} ± {v[:, 0].std():.4f} | "
              f"{v[:, 1].mean():.4f} ± {v[:, 1].std():.4f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--name", required=True, help="study folder under --out")
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--pooling", choices=("cls", "fresh", "mean"), default="cls",
                        help="what the classifier reads (studies/pooling.py); cls: the stock head")
    parser.add_argument("--label-weights", type=float, default=0.0, metavar="POWER",
                        help="weight each label's positives by (neg/pos)**POWER in the training "
                        "loss (studies/label_weights.py); 0: the stock loss")
    args, flags = parser.parse_known_args(argv)
    flags = [f for f in flags if f != "--"]
    if args.pooling == "mean" and "--no-frozen-cache" not in flags:
        flags.append("--no-frozen-cache")  # the cache holds the first token's state only
    study = Path(args.out) / args.name
    study.mkdir(parents=True, exist_ok=True)
    data = load_splits(args.data)
    targets = data.targets
    tfidf = TfidfModel.fit(data.parts.train["title"], targets["train"])
    tfidf_probs = {p: tfidf.probs(getattr(data.parts, p)["title"]) for p in ("val", "test")}

    per_seed, best_epochs = [], []
    for seed in args.seeds:
        run_dir = study / f"s{seed}"
        train(args.data, run_dir, seed, args.nproc, flags, args.pooling, args.label_weights)
        probs = {"tfidf": tfidf_probs,
                 "transformer": transformer_probs(run_dir, data.parts, args.pooling)}
        per_seed.append(cells(probs, targets))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        best_epochs.append(f"{metrics['best_epoch']}/{len(metrics['epochs'])}")

    print(f"\n{args.name}: {len(data.parts.test)} test titles, seeds {args.seeds}, best epoch "
          f"{', '.join(best_epochs)}, pooling {args.pooling}, label weights {args.label_weights}, "
          f"train flags {' '.join(flags) or '(defaults)'}")
    lines = ["| model | thresholds | at least one | test micro-F1 | test macro-F1 |",
             "| --- | --- | --- | ---: | ---: |"]
    rows = {}
    for key in per_seed[0]:
        values = np.array([s[key] for s in per_seed])
        mean, std = values.mean(axis=0), values.std(axis=0)
        rows["/".join(map(str, key))] = {"micro": values[:, 0].tolist(),
                                         "macro": values[:, 1].tolist()}
        lines.append(f"| {key[0]} | {key[1]} | {'yes' if key[2] else 'no'} | "
                     f"{mean[0]:.4f} ± {std[0]:.4f} | {mean[1]:.4f} ± {std[1]:.4f} |")
    print("\n".join(lines))
    (study / "study.md").write_text("\n".join(lines) + "\n")
    (study / "study.json").write_text(json.dumps({"data": args.data, "seeds": args.seeds,
                                                  "flags": flags, "pooling": args.pooling,
                                                  "label_weights": args.label_weights,
                                                  "cells": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
