import logging
import string
from pathlib import Path

import numpy as np
import pytest
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from vacancy.data import (LabelSpace, PadCollator, TokenIds, _word_tokenizer, clean_title,
                          clean_titles, count_leaked, parse_labels, read_csv, split, tokenize)

ROOT = Path(__file__).resolve().parent.parent


def test_clean_title_lowercases_and_drops_punctuation_tokens():
    assert clean_title("Senior C++ Developer (Imunify, Kyiv) / ML-engineer") == \
        "senior c++ developer imunify kyiv ml-engineer"
    assert clean_title("  ...  ") == ""
    once = clean_title("Data Engineer / ML Engineer!")
    assert clean_title(once) == once  # prediction may clean already-clean text


def nltk_clean(text):  # clean_title without its plain-words shortcut
    tokens = _word_tokenizer().tokenize(str(text).lower())
    return " ".join(t for t in tokens if not all(c in string.punctuation for c in t))


@pytest.mark.parametrize("data", ["data/vacancies.csv", "../shared/data/onet_titles_major.csv",
                                  "../shared/data/onet_titles_it.csv"])
def test_the_plain_words_shortcut_cleans_as_nltk_does(data):
    path = ROOT / data
    if not path.exists():
        pytest.skip(f"{data} is not here")
    titles = pd.read_csv(path, dtype=str, keep_default_na=False)["title"].unique().tolist()
    titles += ["We cannot hire", "gonna Be", "WANNA code", "gotta go", "lemme", "gimme 5",
               "cannotx", "  a   b ", "Dev 2", "It's", "", "\tq\na"]
    assert [clean_title(t) for t in titles] == [nltk_clean(t) for t in titles]


def test_titles_are_cleaned_and_tokenized_once_each_in_order(tiny_model):
    from vacancy.model import load_tokenizer
    titles = ["Java Dev", "java dev", "QA (remote)", "Java Dev", "very " * 40 + "long", "QA"]
    assert clean_titles(titles) == [clean_title(t) for t in titles]
    tokenizer = load_tokenizer(str(tiny_model))
    ids = tokenize(tokenizer, titles, 16, "train", chunk=2)
    assert [ids[i].tolist() for i in range(len(titles))] == \
        tokenizer(titles, truncation=True, max_length=16)["input_ids"]
    both = ids.take(np.array([2, 0]))
    assert [both[0].tolist(), both[1].tolist()] == [ids[2].tolist(), ids[0].tolist()]
    assert len(TokenIds(np.zeros(0, np.int32), np.zeros(1, np.int64)).take(np.array([], int))) == 0


def test_parse_labels_normalises_spacing_and_case():
    assert parse_labels("  Analyst   IT_security analyst ") == ["analyst", "it_security"]
    assert parse_labels("   ") == []


def test_split_is_the_notebooks(tmp_path):
    df = pd.DataFrame({"title": [f"t{i}" for i in range(100)], "labels": [["a"]] * 100})
    parts = split(df, seed=42)
    rest, test = train_test_split(df, train_size=0.9, random_state=42)
    train, val = train_test_split(rest, train_size=0.8, random_state=42)
    assert list(parts.test["title"]) == list(test["title"])
    assert list(parts.train["title"]) == list(train["title"])
    assert list(parts.val["title"]) == list(val["title"])
    assert (len(parts.train), len(parts.val), len(parts.test)) == (72, 18, 10)


def test_labels_fit_on_train_and_unseen_ones_are_dropped_with_a_count(caplog):
    space = LabelSpace.fit([["qa"], ["devops", "qa"]])
    assert space.names == ["devops", "qa"]
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        y = space.encode([["qa", "owner"], ["owner"], ["devops"]], "test")
    np.testing.assert_array_equal(y, [[0, 1], [0, 0], [1, 0]])
    assert "test: dropped 2 occurrence(s) of 1 label(s) not seen in train: owner" in caplog.text


def test_leakage_counts_test_titles_seen_in_train():
    train = pd.DataFrame({"title": ["java developer", "qa engineer"]})
    test = pd.DataFrame({"title": ["java developer", "devops", "java developer"]})
    assert count_leaked(train, test) == 2


def test_read_csv_cleans_drops_and_ignores_extra_columns(tmp_path, caplog):
    path = tmp_path / "d.csv"
    path.write_text("title,area,extra\nSenior QA!,QA  devops,x\n,qa,y\nDev,   ,z\n"
                    "Dev,programmer,w\n")
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        df = read_csv(path)
    assert list(df.columns) == ["title", "labels"]
    assert df["title"].tolist() == ["senior qa", "dev"]
    assert df["labels"].tolist() == [["devops", "qa"], ["programmer"]]
    assert "dropped 2 row(s) with an empty title (1) or area (1); first at line 3" in caplog.text


def test_batches_pad_to_their_longest_title():
    collate = PadCollator(pad_id=0)
    batch = collate([(0, [101, 5, 102], torch.zeros(2)), (1, [101, 102], torch.ones(2))])
    assert batch["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    padded = PadCollator(0, multiple_of=8)([(0, [1, 2, 3], torch.zeros(1))])
    assert padded["input_ids"].shape[1] == 8
