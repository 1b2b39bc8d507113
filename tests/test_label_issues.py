"""--drop-label-issues AUDIT_DIR (vacancy/label_issues.py): the rows an audit's issues.csv flags
leave train, and only train; the split stays the one without the flag. The issues.csv files are
made by hand here: the audit itself is not needed."""
import json
import logging

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_RUN, flags, python, torchrun
from vacancy import prepared
from vacancy.config import ConfigError, TrainConfig
from vacancy.data import DataError, load_splits
from vacancy.label_issues import drop_flagged, read_flagged
from vacancy.model import load_tokenizer

EMPTY_AREA, EMPTY_TITLE = 5, 9  # data rows that read_csv drops: the rows after them move up


@pytest.fixture
def csv(tmp_path, small_csv):
    """The small synthetic data with a distinct title per row (`... rowI`, I its data row), so that
    a title says which row of the file it came from, and two rows read_csv drops."""
    df = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    df["title"] = [f"{t} row{i}" for i, t in enumerate(df["title"])]
    df.loc[EMPTY_AREA, "area"] = ""
    df.loc[EMPTY_TITLE, "title"] = "(!)"
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    return path


def write_issues(folder, rows, kinds=None, given=None, suggested=None, titles=None):
    folder.mkdir(parents=True, exist_ok=True)
    n = len(rows)
    pd.DataFrame({"row": rows, "kind": kinds or ["suspect"] * n, "title": titles or [""] * n,
                  "given": given or ["qa"] * n, "suggested": suggested or ["hr"] * n,
                  "quality": [0.1] * n}).to_csv(folder / "issues.csv", index=False)
    return folder


def file_row(title: str) -> int:
    return int(title.rsplit("row", 1)[1])


def test_only_the_flagged_train_rows_go_and_the_split_is_unchanged(tmp_path, csv, caplog):
    plain = load_splits(str(csv))
    train_rows = [file_row(t) for t in plain.parts.train["title"]]
    test_rows = [file_row(t) for t in plain.parts.test["title"]]
    # train rows on both sides of the two rows read_csv drops, a test row, and a conflict row
    # that agrees with its group's majority (kept)
    flagged = [train_rows[0], train_rows[-1], max(r for r in train_rows if r < EMPTY_AREA),
               min(r for r in train_rows if r > EMPTY_TITLE), test_rows[0]]
    agreeing = train_rows[1]
    audit = write_issues(tmp_path / "audit", flagged + [agreeing],
                         kinds=["suspect", "both", "conflict", "suspect", "suspect", "conflict"],
                         given=["qa"] * 5 + ["hr qa"], suggested=["hr"] * 5 + ["qa  HR"])
    assert read_flagged(str(audit)).tolist() == sorted(set(flagged))

    with caplog.at_level(logging.INFO, logger="vacancy"):
        data, counts = drop_flagged(plain, str(csv), 42, str(audit))
    for part in ("val", "test"):
        pd.testing.assert_frame_equal(getattr(data.parts, part), getattr(plain.parts, part))
        np.testing.assert_array_equal(data.targets[part], plain.targets[part])
    kept = [r not in flagged for r in train_rows]
    assert [file_row(t) for t in data.parts.train["title"]] == \
        [r for r in train_rows if r not in flagged]
    np.testing.assert_array_equal(data.targets["train"], plain.targets["train"][kept])
    assert data.labels.names == plain.labels.names
    assert counts == {"n_dropped": 4, "n_flagged_kept": 1}
    assert f"label issues: dropped 4 of {len(train_rows)} train rows, flagged in " \
           f"{audit / 'issues.csv'}; 1 flagged row(s) fall in val/test" in caplog.text


def test_the_prepared_cache_keys_the_dropped_rows_and_samples_train_without_them(
        tmp_path, csv, tiny_model, caplog):
    plain = load_splits(str(csv))
    flagged = [file_row(t) for t in plain.parts.train["title"][:30]]
    raw = pd.read_csv(csv, dtype=str, keep_default_na=False)["title"]
    audit = write_issues(tmp_path / "audit", flagged, titles=[f" {raw[r]} " for r in flagged])
    config = TrainConfig(data=str(csv), model=str(tiny_model), output_dir=str(tmp_path / "run"),
                         drop_label_issues=str(audit))
    tokenizer = load_tokenizer(config.model)
    with caplog.at_level(logging.INFO, logger="vacancy"):
        cold, warm = prepared.prepare(config, tokenizer), prepared.prepare(config, tokenizer)
    assert caplog.text.count("label issues: dropped 30 of") == 1  # said again from the cache...
    assert caplog.text.count("data: prepared cache") == 1  # ...which was made once
    for data in (cold, warm):
        assert data.label_issues == {"n_dropped": 30, "n_flagged_kept": 0}
        assert len(data.tokens["train"]) == len(data.targets["train"]) == \
            len(plain.parts.train) - 30
        assert len(data.tokens["test"]) == len(plain.parts.test)
        texts = data.titles()
        assert not {file_row(t) for t in texts["train"]} & set(flagged)
        assert max(texts["train_index"]) < len(data.targets["train"])
    without = prepared.prepare(TrainConfig(data=str(csv), model=str(tiny_model),
                                           output_dir=str(tmp_path / "run")), tokenizer)
    assert len(without.tokens["train"]) == len(plain.parts.train) and not without.label_issues
    assert len(list((tmp_path / ".cache").glob("*/meta.json"))) == 2


def test_a_bad_audit_dir_is_one_line_naming_the_file(tmp_path, csv):
    plain = load_splits(str(csv))
    with pytest.raises(ConfigError, match="--drop-label-issues .*/nowhere: no such directory"):
        read_flagged(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty/issues.csv: not found"):
        read_flagged(str(tmp_path / "empty"))
    audit = write_issues(tmp_path / "a", [1, 2])
    pd.read_csv(audit / "issues.csv").drop(columns="row").to_csv(audit / "issues.csv")
    with pytest.raises(DataError, match=r"a/issues.csv: missing column\(s\) row"):
        read_flagged(str(audit))
    write_issues(audit, ["3", "x"])
    with pytest.raises(DataError, match="a/issues.csv: line 3: row 'x' is not a 0-based"):
        read_flagged(str(audit))
    write_issues(audit, [3, 800])
    with pytest.raises(DataError, match="a/issues.csv: row 800 is beyond the 800 data rows of"):
        drop_flagged(plain, str(csv), 42, str(audit))
    raw = pd.read_csv(csv, dtype=str, keep_default_na=False)["title"]
    write_issues(audit, [3, 4], titles=[raw[3], "Data Engineer"])  # "": not checked
    with pytest.raises(DataError, match=f"a/issues.csv: row 4 is 'Data Engineer' there but "
                                        f"'{raw[4]}' in .*: was the audit made from another"):
        drop_flagged(plain, str(csv), 42, str(audit))
    write_issues(audit, [3, EMPTY_AREA])
    with pytest.raises(DataError, match=f"a/issues.csv: row {EMPTY_AREA} of .* has no title or "
                                        "no area"):
        drop_flagged(plain, str(csv), 42, str(audit))


def test_the_flag_in_a_real_run(tmp_path, tiny_model, small_csv):
    plain = load_splits(str(small_csv))
    audit = write_issues(tmp_path / "audit", list(range(40)))  # the file's first 40 rows
    out = tmp_path / "run"
    settings = {**TINY_RUN, "epochs": 1}
    proc = torchrun(2, "train_ddp.py", *flags(data=small_csv, model=tiny_model, output_dir=out,
                                              drop_label_issues=audit, **settings))
    line = [x for x in proc.stdout.splitlines() + proc.stderr.splitlines()
            if "label issues: dropped" in x]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(line) == 1, proc.stdout + proc.stderr  # rank 0 only
    assert f"dropped {metrics['n_dropped']} of {len(plain.parts.train)} train rows" in line[0]
    assert metrics["n_dropped"] + metrics["n_flagged_kept"] == 40 and metrics["n_dropped"] > 20
    assert metrics["n_train"] == len(plain.parts.train) - metrics["n_dropped"]
    assert metrics["n_test"] == len(plain.parts.test)
    assert json.loads((out / "config.json").read_text())["drop_label_issues"] == str(audit)

    proc = python("train_ddp.py", "--data", small_csv, "--model", tiny_model, "--output-dir",
                  tmp_path / "bad", "--drop-label-issues", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and not (tmp_path / "bad").exists()
    assert proc.stderr.strip().splitlines() == [
        f"error: --drop-label-issues {tmp_path / 'nowhere'}: no such directory (the --output-dir "
        "of python -m vacancy.audit)"]
