"""Audit the labels of a vacancy CSV: titles whose areas contradict each other or look wrong.

    python -m vacancy.audit --data my.csv --output-dir audits/my
    python -m vacancy.audit --data my.csv --output-dir audits/my --encoder runs/my/best

When more model changes stop moving the scores, the labels are often the limit. The audit reads
the CSV as training does (vacancy.data.read_csv) and finds two kinds of issue:
- conflicts (vacancy.conflicts): rows made of the same words (the same title after cleaning, or
  the same words in another order or with a plural "s") whose label sets differ;
- suspects (vacancy.suspects): rows whose given areas disagree with what the other rows imply,
  by cleanlab's multi-label confident learning over out-of-fold probabilities of the TF-IDF model
  and the kNN part over an encoder (the offline MiniLM by default, or a finished run's best/:
  on injected noise no better, docs/results/audit.md).
It writes issues.csv (one row per issue, worst first; `row` is the data row's 0-based position
in the input, as pandas.read_csv numbers it), summary.json, report.md and noise_per_area.png into
--output-dir. One process; no GPU needed.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when used: --help answers before numpy, pandas and torch load
    import numpy as np

log = logging.getLogger("vacancy")
ISSUES_FILE, SUMMARY_FILE, REPORT_FILE = "issues.csv", "summary.json", "report.md"
PLOT_FILE, LOG_FILE = "noise_per_area.png", "audit.log"
ENCODE_CHUNK = 20_000  # distinct titles per progress line
# rows each fold's parts fit on at most: all of O*NET major's other folds (35k), 5 x 40k on 1M
FIT_TITLES = 40_000


class AuditError(ValueError):
    """Bad flag or input; the message names it."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True, help="CSV with `title` and `area` columns")
    parser.add_argument("--output-dir", required=True, help="where the audit's files go")
    parser.add_argument("--folds", type=int, default=5,
                        help="K of the K-fold cross-fitting that gives out-of-fold probabilities")
    parser.add_argument("--encoder", default="minilm",
                        help="the kNN part's encoder: minilm (offline), a model directory, or a "
                             "run directory / its best/")
    parser.add_argument("--knn", type=int, default=10,
                        help="neighbours of the kNN part (0: TF-IDF alone, no encoder)")
    parser.add_argument("--knn-max-titles", type=int, default=100_000,
                        help="leave the kNN part out above this many distinct titles: each must "
                             "be encoded, ~1,000 titles/s on 2 CPU cores (0: no limit)")
    parser.add_argument("--max-fit-titles", type=int, default=FIT_TITLES,
                        help="each fold's TF-IDF model and kNN part fit on at most this many rows "
                             "of the other folds (a fixed random sample): K fits of the trainer's "
                             "100k would take most of 10 minutes on 2 cores")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an audit already in --output-dir")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error(f"--folds: must be >= 2, got {args.folds}")
    if args.knn < 0 or args.knn_max_titles < 0:
        parser.error("--knn and --knn-max-titles: must be >= 0")
    if args.max_fit_titles < 1:
        parser.error(f"--max-fit-titles: must be >= 1, got {args.max_fit_titles}")
    return args


def encoder_dir(name: str) -> str:
    """The encoder's folder: the offline MiniLM, a model directory, or a run's best/."""
    if name == "minilm":
        from .model import ModelError, resolve_model
        try:
            return resolve_model("minilm")
        except ModelError as e:
            raise AuditError(str(e).replace("--model", "--encoder"))
    path = Path(name)
    if not path.is_dir():
        raise AuditError(f"--encoder {name}: no such directory")
    if (path / "best" / "config.json").is_file():
        return str(path / "best")
    if not (path / "config.json").is_file():
        raise AuditError(f"--encoder {name}: not a saved model (no config.json); pass a model "
                         "directory or a run's best/")
    return str(path)


def encode_distinct(folder: str, titles) -> np.ndarray:
    """Every distinct title's encoder vector (mean token states, unit length: what the kNN part
    compares), on every core, with a progress line per ENCODE_CHUNK titles."""
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .inference import encode
    transformers.utils.logging.set_verbosity_error()  # a plain encoder gets a new head: expected
    transformers.utils.logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    except (OSError, ValueError) as e:
        raise AuditError(f"--encoder {folder}: cannot load ({str(e).splitlines()[0]})")
    torch.set_num_threads(os.cpu_count() or 1)
    out = np.zeros((len(titles), model.config.hidden_size), np.float32)
    start = time.perf_counter()
    for first in range(0, len(titles), ENCODE_CHUNK):
        chunk = list(titles[first:first + ENCODE_CHUNK])
        out[first:first + len(chunk)] = encode(model, tokenizer, chunk, vectors=True)[1]
        done = first + len(chunk)
        log.info("encoder: %d/%d distinct titles (%d%%), %.0f titles/s", done, len(titles),
                 100 * done // len(titles), done / (time.perf_counter() - start))
    return out


@dataclass
class Audit:
    """What run_audit found: the summary written, and per row (in read_csv's order, `rows` their
    input positions; `targets` their areas as judged, columns `names`; `codes` their distinct
    title) the conflicts and cleanlab's verdict (None: no suspects looked for)."""
    summary: dict
    rows: np.ndarray
    names: list[str]
    targets: np.ndarray
    codes: np.ndarray
    conflicts: object  # conflicts.find_conflicts' table
    judgement: object | None  # suspects.Judgement
    fit: object | None  # suspects.CrossFit: the out-of-fold probabilities judged


def run_audit(args: argparse.Namespace, encode=None) -> Audit:
    """The whole audit; `encode(folder, distinct_titles) -> vectors` replaces encode_distinct
    (studies/audit_noise.py encodes a file's titles once for several label corruptions)."""
    import numpy as np
    import pandas as pd

    from .conflicts import describe_groups, find_conflicts, label_key, words
    from .data import LabelSpace, read_csv
    from .suspects import cross_fit, judge, make_folds

    seconds, clock = {}, time.perf_counter()
    folder = encoder_dir(args.encoder) if args.knn else None
    df = read_csv(args.data, keep_row=True)
    codes, distinct = pd.factorize(df["title"], use_na_sentinel=False)
    distinct = np.asarray(distinct, dtype=object)
    labels = LabelSpace(sorted({x for row in df["labels"] for x in row}))
    targets = labels.encode(df["labels"], "data").astype(np.uint8)
    log.info("data: %d rows, %d distinct titles, %d areas", len(df), len(distinct), len(labels))
    seconds["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    conflicts = find_conflicts(df["title"].tolist(), df["labels"].tolist())
    groups = describe_groups(conflicts, df["title"].tolist())
    log.info("conflicts: %d group(s) of same-word titles with different label sets, %d rows "
             "(%d disagree with their group's majority)", len(groups), len(conflicts),
             int(conflicts["disagrees"].sum()))
    seconds["conflicts"] = time.perf_counter() - clock

    single = labels.names[0] if len(labels) == 1 else None
    counts = targets.sum(axis=0)
    rare = [name for name, n in zip(labels.names, counts) if n < 2]
    if single:
        log.warning("%s: every row has the one area %r: no area can be wrong against another, "
                    "so there are no suspects to find (conflicts only)", args.data, single)
    elif rare:
        log.warning("%s: %d area(s) have a single row (%s): no other row supports them, so the "
                    "audit may flag that row", args.data, len(rare), ", ".join(rare[:10]))
    fit = judgement = None
    if not single:
        clock = time.perf_counter()
        group_of_row = pd.factorize(pd.Series(distinct).map(words).to_numpy()[codes])[0]
        n_groups = int(group_of_row.max()) + 1
        if n_groups < args.folds:
            raise AuditError(f"--folds {args.folds}: {args.data} has {n_groups} group(s) of "
                             "distinct titles; pass a smaller --folds")
        folds = make_folds([label_key(x) for x in df["labels"]], group_of_row, args.folds,
                           args.seed)
        seconds["folds"] = time.perf_counter() - clock
        vectors = None
        if folder and args.knn_max_titles and len(distinct) > args.knn_max_titles:
            log.warning("suspects: %d distinct titles > --knn-max-titles %d: the kNN part is left "
                        "out (TF-IDF alone); raise the limit to encode them all", len(distinct),
                        args.knn_max_titles)
        elif folder:
            clock = time.perf_counter()
            vectors = (encode or encode_distinct)(folder, distinct)
            seconds["encode"] = time.perf_counter() - clock
        clock = time.perf_counter()
        fit = cross_fit(distinct, codes, targets, folds, vectors, args.knn, args.seed,
                        args.max_fit_titles)
        seconds["cross_fit"] = time.perf_counter() - clock
        log.info("suspects: out-of-fold probabilities mixed with weights %s (picked by "
                 "out-of-fold F1 against the given labels)", fit.weights)
        clock = time.perf_counter()
        judgement = judge(targets, fit.mixed[codes])
        seconds["cleanlab"] = time.perf_counter() - clock
        log.info("suspects: cleanlab flags %d of %d rows (%.1f%%)", judgement.flagged.sum(),
                 len(df), 100 * judgement.flagged.mean())

    from .audit_report import write_outputs
    summary = write_outputs(Path(args.output_dir), args, df, labels.names, targets, codes,
                            conflicts, groups, fit, judgement, seconds)
    return Audit(summary, df["row"].to_numpy(), labels.names, targets, codes, conflicts, judgement,
                 fit)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.output_dir)
    if (out / SUMMARY_FILE).exists() and not args.overwrite:
        print(f"error: --output-dir {out} holds an earlier audit: pass --overwrite to replace it",
              file=sys.stderr)
        return 2
    from .console import _Formatter, setup_logging
    from .data import DataError
    setup_logging(main=True)
    out.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(out / LOG_FILE, mode="w")
    file.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                 "%Y-%m-%d %H:%M:%S"))
    logging.getLogger().addHandler(file)
    try:
        summary = run_audit(args).summary
    except (AuditError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        logging.getLogger().removeHandler(file)
        file.close()
    issues = summary["issues"]
    print(f"audit directory: {out} ({ISSUES_FILE}, {SUMMARY_FILE}, {REPORT_FILE}, {PLOT_FILE}, "
          f"{LOG_FILE})")
    print(f"issues: {issues['rows']} rows ({issues['conflict']} conflict, {issues['suspect']} "
          f"suspect, {issues['both']} both), worst first: {out / ISSUES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
