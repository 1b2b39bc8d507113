"""Does a fine-tuned run's encoder (`vacancy.audit --encoder RUN`) find injected label errors
better than the offline MiniLM?

    python studies/audit_encoder.py --data ../shared/data/onet_titles_it.csv \
        ../shared/data/onet_titles_major.csv --work /tmp/audit-encoder

Per file: corrupts --noise of the rows as studies/audit_noise.py does (the same seed gives the
same rows), trains the default recipe on the corrupted file (`torchrun --standalone
--nproc_per_node 2 train_ddp.py`; a finished run is kept), then audits the corrupted file twice,
the kNN part over MiniLM and over the run's best/, and scores each ranking (worst area) and
cleanlab's flags against the injected rows: on every row, on the run's train rows (the encoder
was fitted to their corrupted labels) and on the others (val and test: labels it never saw).
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from audit_noise import corrupt  # noqa: E402
from audit_variants import flag_scores, rank_scores  # noqa: E402

from vacancy.audit import parse_args as audit_args, run_audit  # noqa: E402
from vacancy.console import setup_logging  # noqa: E402
from vacancy.data import read_csv, split  # noqa: E402


def scores(quality: np.ndarray, flagged: np.ndarray, injected: np.ndarray) -> str:
    auprc, at_injected = rank_scores(injected, quality)
    n, precision, recall = flag_scores(injected, flagged)
    return (f"{injected.sum()} | {auprc:.3f} | {at_injected:.3f} | {n} | {precision:.3f} | "
            f"{recall:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--noise", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=0, help="the noise's seed")
    parser.add_argument("--work", required=True)
    parser.add_argument("--encoder", default="minilm", help="the encoder to compare the run with")
    parser.add_argument("--train-args", default="",
                        help="more train_ddp.py flags, as one string (default: the default recipe)")
    args = parser.parse_args(argv)
    setup_logging(main=True)
    lines = []
    for data in args.data:
        raw = pd.read_csv(data, dtype=str, keep_default_na=False)
        noisy, rows, _ = corrupt([a.split() for a in raw["area"]], args.noise, args.seed)
        name = f"{Path(data).stem}-noise{round(100 * args.noise)}"
        work = Path(args.work) / name
        work.mkdir(parents=True, exist_ok=True)
        path = work / "noisy.csv"
        raw.assign(area=[" ".join(x) for x in noisy]).to_csv(path, index=False)
        run = work / "run"
        if not (run / "metrics.json").exists():
            subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2",
                            str(ROOT / "train_ddp.py"), "--data", str(path), "--output-dir",
                            str(run), *shlex.split(args.train_args),
                            *(["--resume"] if run.exists() else [])], check=True)
        truth = np.zeros(len(raw), bool)
        truth[rows] = True
        in_train = np.zeros(len(raw), bool)
        in_train[split(read_csv(path, keep_row=True)).train["row"].to_numpy()] = True
        for encoder in (args.encoder, str(run)):
            audit = run_audit(audit_args(["--data", str(path), "--output-dir",
                                          str(work / f"audit-{Path(encoder).name}"),
                                          "--seed", str(args.seed), "--encoder", encoder,
                                          "--overwrite"]))
            judged, injected, train = audit.judgement, truth[audit.rows], in_train[audit.rows]
            label = {"minilm": "MiniLM", str(run): "the run's best/"}.get(encoder, encoder)
            for rows_name, keep in (("all", slice(None)), ("train", train), ("val + test", ~train)):
                lines.append(f"| {name} | {label} | {rows_name} | " + scores(
                    judged.quality[keep], judged.flagged[keep], injected[keep]) + " |")
            print(lines[-3:], flush=True)
    print("\n| data | kNN encoder | rows | injected | AUPRC | precision at injected | flagged | "
          "precision | recall |")
    print("|" + " --- |" * 9)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
