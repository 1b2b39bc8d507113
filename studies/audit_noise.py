"""How well `python -m vacancy.audit` finds labels that are known to be wrong: injected noise.

    python studies/audit_noise.py --data ../shared/data/onet_titles_major.csv \
        ../shared/data/onet_titles_it.csv --noise 0.05 0.10

With a fixed seed, corrupts a share of each file's rows, in equal thirds: one area swapped for
another the row does not have, a wrong area added, one of two or more areas dropped (where too
few rows have two areas, the rest are swaps). Then runs the audit on the corrupted file (its real
code, in this process, the encoder vectors of a file computed once for all noise levels: only
the labels change) and scores cleanlab's verdict against the corrupted rows: precision and
recall of the rows it flags, precision at as many rows as were injected, and AUPRC (sklearn's
average precision of the ranking by quality score, low first), overall and per kind (that
kind's rows against the rows not injected, the other kinds left out). The files' own label noise
counts against precision: a row flagged that was not injected may be wrong already.

With --save-probs, also writes each run's out-of-fold probabilities with the labels judged and the
truth to WORK/NAME.npz (save_probs), so that other rankings and filters can be scored on them in
seconds (studies/audit_variants.py) without fitting again.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vacancy.audit import encode_distinct, parse_args as audit_args, run_audit  # noqa: E402
from vacancy.console import setup_logging  # noqa: E402

KINDS = ("swap", "add", "drop")


def corrupt(areas: list[list[str]], share: float, seed: int) -> tuple[list[list[str]], np.ndarray,
                                                                      np.ndarray]:
    """(corrupted area lists, indices of the corrupted rows, their kind 0/1/2 as KINDS)."""
    rng = np.random.default_rng(seed)
    names = sorted({a for row in areas for a in row})
    n = round(share * len(areas))
    multi = np.flatnonzero([len(row) >= 2 for row in areas])
    n_drop = min(n // 3, len(multi))
    dropped = rng.choice(multi, n_drop, replace=False)
    rest = rng.permutation(np.setdiff1d(np.arange(len(areas)), dropped))[:n - n_drop]
    n_add = n // 3
    kinds = np.concatenate([np.full(n_drop, 2), np.full(n_add, 1),
                            np.full(len(rest) - n_add, 0)])
    rows = np.concatenate([dropped, rest])
    out = [list(row) for row in areas]
    for i, kind in zip(rows, kinds):
        others = [a for a in names if a not in out[i]]
        if kind == 2:
            out[i].remove(out[i][rng.integers(len(out[i]))])
        elif kind == 1:
            out[i].append(others[rng.integers(len(others))])
        else:
            out[i][rng.integers(len(out[i]))] = others[rng.integers(len(others))]
    return out, rows, kinds


def score(audit, truth: np.ndarray) -> dict:
    judged = audit.judgement
    injected = truth[audit.rows]  # read_csv's order: rows may have been dropped
    flagged = judged.flagged
    top = np.argsort(judged.quality, kind="stable")[:injected.sum()]
    return {"flagged": int(flagged.sum()), "injected": int(injected.sum()),
            "precision": injected[flagged].mean() if flagged.any() else float("nan"),
            "recall": flagged[injected].mean(),
            "precision_at_injected": injected[top].mean(),
            "auprc": average_precision_score(injected, -judged.quality)}


def save_probs(path: Path, audit, targets: np.ndarray, truth: np.ndarray,
               kinds_of_row: np.ndarray) -> None:
    """Per row (read_csv's order): `targets` (the corrupted labels judged), `truth` (injected or
    not), `kind` (KINDS' index, -1: not injected), `code` (the row's distinct title), `fold`;
    per distinct title: each part's out-of-fold probabilities (`part_NAME`) and their `mixed`;
    the mix's weights (`weight_NAME`)."""
    fit = audit.fit
    arrays = {f"part_{name}": p for name, p in fit.parts.items()}
    arrays.update({f"weight_{name}": np.float64(w) for name, w in fit.weights.items()})
    np.savez_compressed(path, targets=targets, truth=truth[audit.rows], names=audit.names,
                        kind=kinds_of_row[audit.rows], code=audit.codes, fold=fit.folds,
                        mixed=fit.mixed, **arrays)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--knn", type=int, default=10)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "audit-noise"))
    parser.add_argument("--save-probs", action="store_true",
                        help="write each run's out-of-fold probabilities to WORK/NAME.npz")
    args = parser.parse_args(argv)
    setup_logging(main=True)
    cache: dict = {}

    def encode_once(folder, titles):
        key = (folder, len(titles), hash(tuple(titles)))
        if key not in cache:
            cache[key] = encode_distinct(folder, titles)
        return cache[key]

    results = []
    for data in args.data:
        raw = pd.read_csv(data, dtype=str, keep_default_na=False)
        areas = [a.split() for a in raw["area"]]
        for share in args.noise:
            noisy, rows, kinds = corrupt(areas, share, args.seed)
            name = f"{Path(data).stem}-noise{round(100 * share)}"
            path = Path(args.work) / f"{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            raw.assign(area=[" ".join(x) for x in noisy]).to_csv(path, index=False)
            truth = np.zeros(len(raw), bool)
            truth[rows] = True
            start = time.perf_counter()
            audit = run_audit(audit_args([
                "--data", str(path), "--output-dir", str(Path(args.work) / name), "--folds",
                str(args.folds), "--encoder", args.encoder, "--knn", str(args.knn),
                "--seed", str(args.seed), "--overwrite"]), encode=encode_once)
            wall = time.perf_counter() - start
            result = score(audit, truth)
            for k, kind in enumerate(KINDS):
                of_kind = truth.copy()
                of_kind[rows[kinds != k]] = False
                result[f"recall_{kind}"] = audit.judgement.flagged[of_kind[audit.rows]].mean()
                # this kind's rows against the rows not injected (the other kinds left out)
                keep = (of_kind | ~truth)[audit.rows]
                result[f"auprc_{kind}"] = average_precision_score(
                    of_kind[audit.rows][keep], -audit.judgement.quality[keep])
            result.update(name=name, weights=audit.summary["weights"], wall_s=wall)
            if args.save_probs:
                kind_of_row = np.full(len(raw), -1, np.int8)
                kind_of_row[rows] = kinds
                save_probs(Path(args.work) / f"{name}.npz", audit, audit.targets, truth,
                           kind_of_row)
            results.append(result)
            print(f"{name}: {result}", flush=True)

    print("\n| data | injected | flagged | precision | recall | precision at injected | AUPRC "
          "| recall swap / add / drop | AUPRC swap / add / drop | mix | wall s |")
    print("|" + " --- |" * 11)
    for r in results:
        mix = ", ".join(f"{k} {w:.1f}" for k, w in r["weights"].items())
        print(f"| {r['name']} | {r['injected']} | {r['flagged']} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['precision_at_injected']:.3f} | {r['auprc']:.3f} | "
              f"{r['recall_swap']:.2f} / {r['recall_add']:.2f} / {r['recall_drop']:.2f} | "
              f"{r['auprc_swap']:.2f} / {r['auprc_add']:.2f} / {r['auprc_drop']:.2f} | "
              f"{mix} | {r['wall_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
