"""Bad input: a one-line error naming the file and field, or a counted warning and the run goes
on."""
import json
import logging

import pytest

from conftest import python
from vacancy.data import DataError, LabelSpace, read_csv, split, tokenize


def write(tmp_path, content, name="d.csv", mode="w"):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "the file is empty"),
    ("title,area\n", "has a header but no rows"),
    ("title,labels\nDev,programmer\n", "missing column\\(s\\) area; found 'title', 'labels'"),
    ("name,area\nDev,programmer\n", "missing column\\(s\\) title"),
    ("title;area\nDev;programmer\n", "does not look comma-separated"),
    ("title,area\n,\n  ,  \n", "no row has both a title and an area"),
    (b"title,area\nDev,programmer\nD\xe9veloppeur,programmer\n", "line 3 is not valid UTF-8"),
    ('title,area\n"Dev,programmer\nQA,qa\n', "cannot parse as CSV"),
])
def test_unusable_csv_gives_one_clear_error(tmp_path, content, message):
    path = tmp_path / "missing.csv" if content is None else write(tmp_path, content)
    with pytest.raises(DataError, match=message) as e:
        read_csv(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_messy_but_usable_csv_is_read(tmp_path, caplog):
    raw = ("\ufefftitle,area,source\r\nSenior QA!,  QA   Devops ,a\r\n,qa,b\r\nDev,   ,c\r\n"
           "nan,qa,d\r\nDev,programmer,e\r\ndev,PROGRAMMER,f\r\n")
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        df = read_csv(write(tmp_path, raw.encode("utf-8")))
    assert df["title"].tolist() == ["senior qa", "nan", "dev", "dev"]  # "nan" is a title here
    assert df["labels"].tolist() == [["devops", "qa"], ["qa"], ["programmer"], ["programmer"]]
    assert "dropped 2 row(s) with an empty title (1) or area (1)" in caplog.text
    assert "1 row(s) repeat an earlier title" in caplog.text


def test_label_edge_cases_are_warned_and_counted(caplog):
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        space = LabelSpace.fit([["qa"], ["qa"], ["devops", "qa"]])
        space.encode([["owner"], ["qa", "owner", "hr"]], "val")
        LabelSpace.fit([["qa"], ["qa"]])
    assert "train: 1 label(s) have a single example (devops)" in caplog.text
    assert "val: dropped 3 occurrence(s) of 2 label(s) not seen in train: hr, owner" in caplog.text
    assert "every title has the same label (qa)" in caplog.text


def test_too_few_rows_for_the_split():
    import pandas as pd
    df = pd.DataFrame({"title": list("abcdefghi"), "labels": [["x"]] * 9})
    with pytest.raises(DataError, match="d.csv: 9 usable row\\(s\\); .* needs at least 10"):
        split(df, path="d.csv")


def test_long_titles_are_truncated_and_counted(tiny_model, caplog):
    from vacancy.model import load_tokenizer
    tokenizer = load_tokenizer(str(tiny_model))
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        ids = tokenize(tokenizer, ["java developer", "very " * 100 + "long title"], 16, "train")
    assert [len(x) for x in ids] == [4, 16]
    assert "train: 1 title(s) longer than 16 tokens were truncated" in caplog.text


def cli_error(*args, **env):
    proc = python("train_ddp.py", *args, check=False, timeout=300, **env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith("error: "), proc.stderr
    return lines[-1]


def test_cli_bad_data_is_one_line(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    error_file = tmp_path / "error.json"  # what torchrun sets for each worker
    line = cli_error("--data", tmp_path / "none.csv", "--output-dir", tmp_path / "run",
                     TORCHELASTIC_ERROR_FILE=str(error_file))
    assert line == f"error: {tmp_path / 'none.csv'}: no such file"
    # the same line is the cause in torchrun's summary (test_cli.py: under a real torchrun)
    failure = ProcessFailure(local_rank=0, pid=1, exitcode=2, error_file=str(error_file))
    assert f"traceback : {line}\n" in ChildFailedError("train_ddp.py", {0: failure}).format_msg()


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "epochs: must be >= 1, got -1"),
    (["--epochs", "2", "--freeze-epochs", "3"], "--freeze-epochs (3) is larger than --epochs (2)"),
    (["--model", "./models/nowhere"], "--model ./models/nowhere: no such directory"),
    (["--model", "bert-base-uncased"], "Hugging Face Hub is disabled (HF_HUB_OFFLINE=1)"),
])
def test_cli_bad_flags_are_one_line(tmp_path, small_csv, args, message):
    line = cli_error("--data", small_csv, "--output-dir", tmp_path / "run", *args)
    assert message in line
    if "Hub" in message:
        assert "--model DIR" in line


def test_cli_config_file_wrong_type_and_unknown_key(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": "three"}))
    assert "epochs: expected int, got 'three'" in cli_error("--config", cfg)
    cfg.write_text(json.dumps({"epoch": 3}))
    assert f"--config {cfg}: unknown key(s) epoch" in cli_error("--config", cfg)


def test_output_dir_of_another_run_is_refused(tmp_path, small_csv):
    (tmp_path / "run" / "last").mkdir(parents=True)  # it trained at least one epoch
    (tmp_path / "run" / "config.json").write_text("{}")
    line = cli_error("--data", small_csv, "--output-dir", tmp_path / "run")
    assert "holds another run: pass --resume to continue it or --overwrite" in line
