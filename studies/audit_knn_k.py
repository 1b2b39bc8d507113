"""The audit's kNN part with other k, on audit_noise.py --save-probs' folds and TF-IDF parts.

    python studies/audit_knn_k.py --work /tmp/audit2-work

Encodes each file's distinct titles (the saved run's CSV), fits the kNN part again on the saved
folds for each k, mixes it with the saved TF-IDF part at the saved weight (not picked again) and
scores the worst-area ranking and cleanlab's default filter against the injected rows.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))
from audit_variants import (RANKINGS, flag, flag_scores, labels_of, load,  # noqa: E402
                            quality, rank_scores)

from vacancy.audit import encode_distinct, encoder_dir  # noqa: E402
from vacancy.console import setup_logging  # noqa: E402
from vacancy.data import read_csv  # noqa: E402
from vacancy.ensemble import Neighbours  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--work", required=True)
parser.add_argument("--k", type=int, nargs="+", default=[5, 10, 20, 40])
args = parser.parse_args()
setup_logging(main=True)
for base, levels in (("onet_titles_it", (5, 10)), ("onet_titles_major", (5, 10))):
    df = read_csv(f"{args.work}/{base}-noise10.csv", keep_row=True)
    codes, distinct = pd.factorize(df["title"], use_na_sentinel=False)
    vectors = encode_distinct(encoder_dir("minilm"), np.asarray(distinct, dtype=object))
    for level in levels:
        d = load(f"{args.work}/{base}-noise{level}.npz")
        assert (d["code"] == codes).all()
        t, targets, labels = d["truth"], d["targets"], labels_of(d["targets"])
        w = d["weights"]["tfidf"]
        fold_of_title = np.empty(len(distinct), np.int8)
        fold_of_title[codes] = d["fold"]
        for k in args.k:
            knn = np.zeros((len(distinct), targets.shape[1]), np.float32)
            for f in range(int(d["fold"].max()) + 1):
                train = np.flatnonzero(d["fold"] != f)
                held = np.flatnonzero(fold_of_title == f)
                knn[held] = Neighbours(vectors[codes[train]], targets[train], k).probs(
                    vectors[held])
            p = (w * d["parts"]["tfidf"] + (1 - w) * knn)[codes]
            a, pi = rank_scores(t, quality(labels, p, RANKINGS["self_confidence, worst area"]))
            n, pr, rc = flag_scores(t, flag(labels, p, "prune_by_noise_rate"))
            print(f"{base}-noise{level} k {k} (tfidf weight {w}): AUPRC {a:.3f}, P@inj {pi:.3f}; "
                  f"flagged {n}, precision {pr:.3f}, recall {rc:.3f}", flush=True)
