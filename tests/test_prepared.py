"""The prepared-data cache (vacancy/prepared.py): the same data as preparing in memory, made once,
invalidated by what it depends on."""
import logging

import numpy as np
import pandas as pd
import pytest

from vacancy import data as vdata, prepared
from vacancy.config import TrainConfig
from vacancy.data import TitleDataset, clean_title, clean_titles, load_splits
from vacancy.model import load_tokenizer


@pytest.fixture
def csv(tmp_path, small_csv):
    """The small synthetic data, plus titles that get truncated, and a row with no area."""
    df = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    extra = pd.DataFrame({"title": ["Very " * 30 + "long Java developer"] * 3 + ["No area"],
                          "area": ["programmer"] * 3 + [""]})
    path = tmp_path / "data.csv"
    pd.concat([df, extra]).to_csv(path, index=False)
    return path


def config(tmp_path, csv, tiny_model, **kw):
    return TrainConfig(data=str(csv), model=str(tiny_model), output_dir=str(tmp_path / "run"),
                       max_length=16, **kw)


def test_prepared_data_equals_the_in_memory_path(tmp_path, csv, tiny_model, caplog):
    cfg = config(tmp_path, csv, tiny_model)
    tokenizer = load_tokenizer(cfg.model)
    with caplog.at_level(logging.INFO, logger="vacancy"):
        cold = prepared.prepare(cfg, tokenizer)
        warm = prepared.prepare(cfg, tokenizer)
    # today's path, written out: split, labels, leakage, and ids tokenized with truncation
    today = load_splits(str(csv), cfg.split_seed)
    for data in (cold, warm):
        assert data.labels.names == today.labels.names
        assert data.leaked == today.leaked
        pd.testing.assert_frame_equal(data.test, today.parts.test)
        for part in prepared.PARTS:
            titles = getattr(today.parts, part)["title"].tolist()
            ids = tokenizer(titles, truncation=True, max_length=16)["input_ids"]
            assert [x.tolist() for x in data.tokens[part]] == ids, part
            np.testing.assert_array_equal(data.targets[part], today.targets[part])
            dataset, expected = TitleDataset(data.tokens[part], data.targets[part]), \
                TitleDataset(ids, today.targets[part])
            assert dataset.lengths == expected.lengths
            for i in (0, len(dataset) - 1):
                assert dataset[i][1].tolist() == expected[i][1]
                assert (dataset[i][2] == expected[i][2]).all()
    assert isinstance(warm.tokens["train"].flat, np.memmap)
    assert warm.tokens["train"].flat.dtype == np.int32
    # made once (in a child process: its log is not captured here), then reused; what preparing
    # logged is said again on reuse
    assert caplog.text.count("data: preparing") == 1
    assert caplog.text.count("data: prepared cache") == 1
    assert "title(s) longer than 16 tokens were truncated" in caplog.text
    assert "dropped 1 row(s) with an empty title (0) or area (1)" in caplog.text
    assert f"{len(today.parts.train)} train / {len(today.parts.val)} val" in caplog.text


def test_the_cache_is_keyed_by_data_tokenizer_and_settings(tmp_path, csv, tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    key = prepared.cache_key(str(csv), tokenizer, 16, 42)
    assert key == prepared.cache_key(str(csv), load_tokenizer(str(tiny_model)), 16, 42)
    assert key != prepared.cache_key(str(csv), tokenizer, 32, 42)
    assert key != prepared.cache_key(str(csv), tokenizer, 16, 7)
    with open(csv, "a") as f:
        f.write("Data Engineer,programmer\n")
    assert key != prepared.cache_key(str(csv), tokenizer, 16, 42)
    other = load_tokenizer(str(tiny_model))
    other.add_tokens(["kubernetes"])
    assert prepared.cache_key(str(csv), other, 16, 42) != \
        prepared.cache_key(str(csv), tokenizer, 16, 42)


def test_a_changed_csv_is_prepared_again(tmp_path, csv, tiny_model):
    cfg = config(tmp_path, csv, tiny_model)
    tokenizer = load_tokenizer(cfg.model)
    before = prepared.prepare(cfg, tokenizer)
    with open(csv, "a") as f:
        f.write("Kubernetes Platform Engineer,programmer\n")
    after = prepared.prepare(cfg, tokenizer)
    assert sum(map(len, after.tokens.values())) == sum(map(len, before.tokens.values())) + 1
    assert len(list((tmp_path / ".cache").iterdir())) == 2


def test_bad_data_is_the_same_one_line_error_with_the_cache(tmp_path, tiny_model):
    path = tmp_path / "bad.csv"
    path.write_text("title;area\nJava developer;programmer\n")
    with pytest.raises(vdata.DataError, match="bad.csv: missing column\\(s\\) title, area; found"):
        prepared.prepare(config(tmp_path, path, tiny_model), load_tokenizer(str(tiny_model)))
    assert not list((tmp_path / ".cache").glob("*/meta.json"))


def test_parallel_cleaning_keeps_order_and_result(monkeypatch, small_csv):
    titles = pd.read_csv(small_csv, dtype=str)["title"].tolist()
    monkeypatch.setattr(vdata, "PARALLEL_FROM", 10)
    monkeypatch.setattr(vdata.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert clean_titles(titles) == [clean_title(t) for t in titles]
