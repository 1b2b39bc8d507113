"""Tag vacancy titles with their areas using a trained model (a run's `best/` directory).

    python -m vacancy.predict --model runs/my/best "Senior Java Developer" "Data Engineer / ML"
    python -m vacancy.predict --model runs/my/best --input titles.csv --output tagged.csv

A title's probabilities are the transformer's, mixed with the TF-IDF model and the kNN part saved
beside it when the run trained them (`--ensemble off`: the transformer alone). An area is predicted
when its probability reaches the per-label threshold saved with the model (thresholds.json, picked
on val), and a title with none gets its most probable area when the run said so (decision.json);
`--threshold T` uses T for every label instead, and `--top-k K` keeps at most the K most probable
of the predicted areas (alone: the K most probable areas). Titles are cleaned by the same function
as in training (data.clean_title).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported when used: --help answers before pandas loads
    import pandas as pd


class PredictError(ValueError):
    """Bad model directory or input file; the message names it."""


def select(probs: np.ndarray, thresholds: np.ndarray, top_k: int | None,
           at_least_one: bool = False) -> list[np.ndarray]:
    """Per title, the indices of its predicted labels, most probable first."""
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")
        chosen = order[row[order] >= thresholds[order]]
        if at_least_one and not len(chosen):
            chosen = order[:1]
        out.append(chosen[:top_k] if top_k else chosen)
    return out


def read_titles(path: str) -> pd.DataFrame:
    """The input CSV as it is (every column kept for the output), checked for a `title` column."""
    import pandas as pd
    if not Path(path).is_file():
        raise PredictError(f"--input {path}: no such file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise PredictError(f"--input {path}: the file is empty")
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise PredictError(f"--input {path}: cannot read as a UTF-8 CSV ({str(e).strip()})")
    titles = [c for c in df.columns if str(c).strip().lower() == "title"]
    if not titles:
        raise PredictError(f"--input {path}: no `title` column; found "
                           f"{', '.join(map(repr, df.columns))}")
    return df.rename(columns={titles[0]: "title"})


def model_dir(path: str) -> Path:
    """The saved model directory: `path` itself, or its best/ when given a whole run directory."""
    model = Path(path)
    if not model.is_dir():
        raise PredictError(f"--model {path}: no such directory")
    if (model / "best" / "config.json").is_file():
        return model / "best"
    if not (model / "config.json").is_file():
        raise PredictError(f"--model {path}: not a saved model (no config.json); pass a run's "
                           "best/ directory")
    return model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("titles", nargs="*", help="titles to tag (or use --input)")
    parser.add_argument("--model", required=True, help="a run's best/ directory")
    parser.add_argument("--input", help="CSV with a `title` column (other columns are kept)")
    parser.add_argument("--output", help="where --input's rows go, with `predicted` and p_<label> "
                                         "columns (default: print them)")
    parser.add_argument("--threshold", type=float, help="one threshold for every label instead "
                                                        "of the saved per-label ones")
    parser.add_argument("--top-k", type=int, help="at most this many areas per title, the most "
                                                  "probable first")
    parser.add_argument("--ensemble", choices=("on", "off"), default="on",
                        help="off: the transformer alone, without the TF-IDF model and kNN part "
                             "saved beside it (default: as the run saved it)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args(argv)
    if bool(args.titles) == bool(args.input):
        parser.error("give titles on the command line or --input CSV (one of the two)")
    if args.output and not args.input:
        parser.error("--output needs --input")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        parser.error(f"--threshold: must be in [0, 1], got {args.threshold}")
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top-k: must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        parser.error(f"--batch-size: must be >= 1, got {args.batch_size}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pandas as pd
    import transformers
    from .inference import load_tagger
    transformers.utils.logging.disable_progress_bar()
    try:
        path = model_dir(args.model)
        table = read_titles(args.input) if args.input else None
        try:
            tagger = load_tagger(path, ensemble=args.ensemble == "on")
        except (OSError, ValueError) as e:
            raise PredictError(f"--model {path}: cannot load ({str(e).splitlines()[0]})")
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels, thresholds = tagger.labels, tagger.thresholds
    if args.threshold is not None:
        thresholds = np.full(len(labels), args.threshold)
    titles = table["title"].tolist() if table is not None else args.titles
    probs = tagger.probs(titles, args.batch_size, args.max_length, progress=table is not None)
    chosen = select(probs, thresholds, args.top_k, tagger.at_least_one)
    names = np.array(labels)

    if table is None:
        for title, row, idx in zip(titles, probs, chosen):
            print(title)
            for j in idx:
                print(f"  {names[j]:<20} {row[j]:.3f}")
            if not len(idx):
                j = int(np.argmax(row))
                print(f"  (no area reaches its threshold; most probable: {names[j]} {row[j]:.3f})")
        return 0
    table["predicted"] = [" ".join(names[idx]) for idx in chosen]
    out = pd.concat([table, pd.DataFrame(probs, columns=[f"p_{x}" for x in labels])], axis=1)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(args.output, index=False, float_format="%.6f")
        print(f"wrote {len(out)} row(s) to {args.output}", file=sys.stderr)
    else:
        out.to_csv(sys.stdout, index=False, float_format="%.6f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
