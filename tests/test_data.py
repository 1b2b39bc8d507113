import logging
import random
import re
from pathlib import Path

import numpy as np
import pytest
import pandas as pd
import regex
import torch
from sklearn.model_selection import train_test_split

import vacancy.data as vdata
from conftest import python
from vacancy.data import (LabelSpace, PadCollator, TokenIds, _clean_title_nltk, clean_title,
                          clean_titles, count_leaked, parse_labels, read_csv, split, tokenize)
from vacancy.synth import generate

ROOT = Path(__file__).resolve().parent.parent


def test_clean_title_lowercases_and_drops_punctuation_tokens():
    assert clean_title("Senior C++ Developer (Imunify, Kyiv) / ML-engineer") == \
        "senior c++ developer imunify kyiv ml-engineer"
    assert clean_title("  ...  ") == ""
    once = clean_title("Data Engineer / ML Engineer!")
    assert clean_title(once) == once  # prediction may clean already-clean text


# what the fast cleaning must get right: quotes, contractions, the final period, the ends of a
# title, whitespace of every kind, characters that (?i) takes for ASCII letters
ADVERSARIAL = [
    '"quoted" title', "''double'' single", "``tick`` x", 'say "hi"', '("x")', "[''y'']", '{"a"}',
    '<"b">', '"', '""', '"""', "'", "''", "'''", "`a", "``", "```", "a``b", "a`", '"a', 'a"',
    ' "a', '("', "'\"'", "«a»", "“a”", "‘a’", "„a“", "a’s", "a’ll", "end.»", "end.'", "end.'\"",
    "can't", "cannot", "Cannot", "can not", "gonna", "gon na", "gotta go", "wanna", "wanna\tbe",
    "wanna.", "wanna!", "x wanna", "wannabe", "lemme", "gimme", "d'ye", "more'n", "whaddya",
    "whatcha", "'tis", "'twas", " 'tis x", "x 'tis", "x'tis", "'tis.", "i'll", "you're", "isn't",
    "we've", "don't", "DON'T", "n't", "x'd", "x'm", "x'll", "x'LL", "X'RE", "x're", "'re", "'ve x",
    "it's", "A'S", "'s", "a 's", "o'neil", "rock 'n' roll", "'quoted'", "ends with'", "'start",
    "a' b", "a 'b", "a 'b 'c", "x' ", "gımme", "gİmme", "cannoſ", "x 'tiſ", "İstanbul", "KELVIN",
    "...", "a...", "a...b", "a..", "..", ".", "etc.", "sr. dev", "dev sr.", "dev.)", 'dev.")',
    "dev .", "a.b.", "a. ", "end.\t", "end .  ", "(end.)", "a . b .", "1.2.3", "v1.0", "e.g. dev",
    "i.e.", "u.s. army", "ph.d.", "m.sc", "3.5", "3.", "a -- b", "a--b", "a---b", "a—b", "a – b",
    "a‒b", "a―b", "\u2015\u2015", " - ", "-", "a-", "-a", "(a)", "[a]", "{a}", "<a>", "a(b)c",
    "((a))", "a)", "(", "c++", "c#", ".net", "node.js", "asp.net mvc", "1,000", "1,000.50", "a,1",
    "&amp;", "50%", "$100", "@home", "#1", "a;b", "a:b", "a:", "a,", ":a", ",a", "1:2", "a ,b",
    "a , b", "a,,b", "a::b", "::", "a:/", "a,/", "a*b", "**", "a?!", "?", "!a", "a/b", "a\\b",
    "a|b", "~a", "^a", "a_b", "http://x.com/a?b=c&d=e", "https://www.example.com.",
    "me@mail.com", "john.doe@x.org.", "", "   ", "a\tb", "a\r\nb", "a\nb", "\n", "a.\nb.", "\t",
    "\x0b", "\x0c", "a\x1cb", "a.\x1c", "a\x1f", "a.\r", "a,\r", "\r\"a", "a\u00a0b", "a\u2028b",
    "a.\u2028", "a,\u2028",
    "a\u3000.", "a\x85.", "wanna\u00a0x", "a\u200bb", "e\u0301", "\u0301", "x\u0301'y", "'\u0301a",
    "ß", "ﬁ", "ǅ", "Σ", "ς", "۱,۲", "١.٢", "a,١", "a,\u0660", "٫", "dev (m/f/d)",
    "dev (w/m/d) - remote", "dev | remote", "Senior C++ Developer (Imunify, Kyiv) / ML-engineer",
]


def random_titles(n: int, seed: int = 0) -> list[str]:
    """Strings over a punctuation-heavy alphabet, and strings of the rules' own pieces."""
    rng = random.Random(seed)
    alphabet = list("abcdnotegilmrswy01 .,:;'\"`()[]{}<>-–—!?&%$#@*/\\+=_|~^\t\n«»“”‘’„"
                    "\u0130\u0131\u017f\u212a\u00a0\u2028\u2029\x1c\x85\r\u0301١")
    pieces = ["can", "not", "gon", "gim", "g\u0131m", "me", "na", "wan", "'t", "is", "was", "'ll",
              "n't", "'s", "'re", "''", '"', "`", "...", "--", ".", ",", ":", "(", ")", " ", "  ",
              "\t", "d", "'ye", "more", "'n", "x", "1", "'", "\u017f", "»", "\n"]
    chars = ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(n // 2)]
    return chars + ["".join(rng.choices(pieces, k=rng.randint(0, 12))) for _ in range(n // 2)]


def test_the_fast_cleaning_is_on_with_this_nltk():
    assert vdata._one_line_rules() is not None  # else the identity tests below test NLTK alone


@pytest.mark.parametrize("data", ["data/vacancies.csv", "../shared/data/onet_titles_major.csv",
                                  "../shared/data/onet_titles_it.csv", "synthetic", "adversarial",
                                  "random"])
def test_cleaning_is_nltks_exactly(data):
    if data == "synthetic":
        titles = [title for title, _ in generate(5000, seed=1)]
    elif data == "adversarial":
        titles = ADVERSARIAL + [t.upper() for t in ADVERSARIAL]
    elif data == "random":
        titles = random_titles(6000)
    else:
        path = ROOT / data
        if not path.exists():
            pytest.skip(f"{data} is not here")
        titles = pd.read_csv(path, dtype=str, keep_default_na=False)["title"].unique().tolist()
    reference = [_clean_title_nltk(t) for t in titles]
    assert clean_titles(titles) == reference
    assert [clean_title(t) for t in titles] == reference


def test_what_the_rewrites_assume_of_the_regex_engines():
    everything = "".join(map(chr, range(0x80, 0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    # the gates of the (?i) rules: no other character stands for an ASCII letter
    assert sorted(re.findall("(?i)[a-z]", everything)) == sorted(vdata._FOLDS_TO_ASCII)
    # the whitespace rule may be skipped: str.split splits at all of NLTK's \s, and more
    everything = "".join(map(chr, range(0x80))) + everything
    assert set(regex.findall(r"\s", everything)) <= {c for c in everything if c.isspace()}


def test_a_rule_this_nltk_does_not_know_turns_the_fast_cleaning_off(monkeypatch, caplog):
    rules = dict(vdata._ONE_LINE)
    del rules[(r"--", r" -- ")]
    monkeypatch.setattr(vdata, "_ONE_LINE", rules)
    vdata._one_line_rules.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="vacancy"):
            assert vdata._one_line_rules() is None
            assert clean_titles(["a--b", "Dev's (x)"]) == ["a b", "dev 's x"]
        assert "a tokenizer rule the fast cleaning does not know ('--', ' -- ')" in caplog.text
    finally:
        vdata._one_line_rules.cache_clear()
        vdata._rules_for.cache_clear()


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


def test_the_cleaning_benchmark_runs_and_finds_no_difference(tmp_path):
    out = python("bench/clean_speed.py", "--rows", 400, "--sample", 100, "--onet", "",
                 "--skip-train", "--work", tmp_path).stdout
    assert "| titles_400_numbered0.88.csv | 400 |" in out
    assert "0 differ from NLTK" in out
