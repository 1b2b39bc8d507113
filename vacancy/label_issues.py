"""`--drop-label-issues AUDIT_DIR`: leave the rows a label audit flagged out of the train split.

`python -m vacancy.audit` writes AUDIT_DIR/issues.csv, one line per flagged row: `row` (the
0-based position of the data row in the input CSV, as pandas.read_csv numbers it), `kind`
(conflict, suspect or both), `given` and `suggested` areas, and more. Only train loses rows: the
split is made first, on every row, exactly as without the flag, so val and test (and the scores)
stay those of a run without it. The label columns stay those fitted on the whole train split.

A conflict row whose suggested areas are its given ones (it agrees with its group's majority) is
kept: only the rows that look wrong go. Whether dropping them helps is measured in
docs/results/audit_training.md; the flag is off by default.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ConfigError
from .data import DataError, LabelledSplits, clean_titles, count_leaked, parse_labels, split

log = logging.getLogger("vacancy")

ISSUES = "issues.csv"
COLUMNS = ("row", "kind", "given", "suggested")
KINDS = ("conflict", "suspect", "both")


def read_flagged(audit_dir: str) -> np.ndarray:
    """The sorted, distinct data rows of AUDIT_DIR/issues.csv to leave out of train."""
    return np.unique(read_issues(audit_dir)["row"].to_numpy(np.int64))


def read_issues(audit_dir: str) -> pd.DataFrame:
    """The lines of AUDIT_DIR/issues.csv whose rows leave train: `row`, and `title` as the audit
    read it from the input ("" where the file has no title column)."""
    folder = Path(audit_dir)
    if not folder.is_dir():
        raise ConfigError(f"--drop-label-issues {audit_dir}: no such directory (the --output-dir "
                          "of python -m vacancy.audit)")
    path = folder / ISSUES
    if not path.is_file():
        raise DataError(f"{path}: not found (python -m vacancy.audit --output-dir {audit_dir} "
                        "writes it)")
    try:
        issues = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as CSV ({str(e).strip()})")
    missing = [c for c in COLUMNS if c not in issues.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (found "
                        f"{', '.join(issues.columns)})")
    rows = pd.to_numeric(issues["row"], errors="coerce")
    bad = rows.isna() | (rows < 0) | (rows != rows.round())
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: line {line + 2}: row {issues['row'].iloc[line]!r} is not a "
                        "0-based data row number")
    unknown = ~issues["kind"].isin(KINDS)
    if unknown.any():
        line = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(f"{path}: line {line + 2}: kind {issues['kind'].iloc[line]!r} is not one "
                        f"of {', '.join(KINDS)}")
    agrees = [parse_labels(g) == parse_labels(s) for g, s in zip(issues["given"],
                                                                 issues["suggested"])]
    keep = (issues["kind"] == "conflict").to_numpy() & np.array(agrees, dtype=bool)
    titles = issues["title"] if "title" in issues.columns else pd.Series("", index=issues.index)
    return pd.DataFrame({"row": rows.astype(np.int64), "title": titles})[~keep]


def input_rows(path: str) -> tuple[pd.DataFrame, int]:
    """For each row that data.read_csv keeps, in its order: `row`, its 0-based position among the
    file's data rows, `title`, cleaned, and `input_title`, as written; and the number of data
    rows. read_csv drops the rows whose cleaned title or areas are empty and renumbers the
    others; this reads the file again to number them as the file does (read_csv has checked the
    file already)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    df.columns = [str(c).strip().lower() for c in df.columns]
    titles = np.asarray(clean_titles(df["title"].tolist()), dtype=object)
    kept = np.array([bool(t) and bool(parse_labels(a)) for t, a in zip(titles, df["area"])],
                    dtype=bool)
    return pd.DataFrame({"row": np.flatnonzero(kept), "title": titles[kept],
                         "input_title": df["title"].to_numpy()[kept]}), len(df)


def drop_flagged(data: LabelledSplits, path: str, split_seed: int, audit_dir: str
                 ) -> tuple[LabelledSplits, dict]:
    """`data` (load_splits of `path`) with the flagged rows gone from train, and the counts for
    metrics.json."""
    issues = Path(audit_dir) / ISSUES
    lines = read_issues(audit_dir)
    flagged = np.unique(lines["row"].to_numpy(np.int64))
    rows, n_rows = input_rows(path)
    if flagged.size and flagged[-1] >= n_rows:
        raise DataError(f"{issues}: row {flagged[-1]} is beyond the {n_rows} data rows of {path}: "
                        "was the audit made from another file?")
    known = np.isin(flagged, rows["row"].to_numpy())
    if not known.all():
        raise DataError(f"{issues}: row {flagged[~known][0]} of {path} has no title or no area: "
                        "was the audit made from another file?")
    written = rows.set_index("row")["input_title"].loc[lines["row"]].str.strip().to_numpy()
    differ = (lines["title"].str.strip() != written).to_numpy() & (lines["title"] != "").to_numpy()
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise DataError(f"{issues}: row {lines['row'].iloc[i]} is {lines['title'].iloc[i]!r} "
                        f"there but {written[i]!r} in {path}: was the audit made from another "
                        "version of the file?")
    # data.split's order depends on the number of rows and the seed only: splitting the rows'
    # positions gives each part's positions, checked against the part's titles
    positions = split(rows, split_seed, path)
    for name in ("train", "val", "test"):
        if getattr(positions, name)["title"].tolist() != \
                getattr(data.parts, name)["title"].tolist():
            raise DataError(f"{path}: changed while it was read (the {name} titles differ)")
    drop = np.isin(positions.train["row"].to_numpy(), flagged)
    train = data.parts.train[~drop].reset_index(drop=True)
    targets = {**data.targets, "train": data.targets["train"][~drop]}
    counts = {"n_dropped": int(drop.sum()), "n_flagged_kept": int(len(flagged) - drop.sum())}
    log.info("label issues: dropped %d of %d train rows, flagged in %s; %d flagged row(s) fall "
             "in val/test and are kept there", counts["n_dropped"], len(drop), issues,
             counts["n_flagged_kept"])
    parts = type(data.parts)(train, data.parts.val, data.parts.test)
    return LabelledSplits(parts, data.labels, targets, count_leaked(train, data.parts.test)), \
        counts
