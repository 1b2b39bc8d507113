"""`python -m vacancy.predict` on the ddp_run's best/, and agreement with plain transformers."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import python
from vacancy.data import clean_title
from vacancy.inference import load_checkpoint, predict_probs
from vacancy.predict import main

RAW_TITLES = ["Senior Java Developer", "Data Engineer / ML", "Malware Analyst (Imunify Security)!",
              "IT-Support: Helpdesk, 1st level", "Head of QA & Test Automation"]


@pytest.fixture(scope="module")
def best(ddp_run):
    return ddp_run / "best"


def saved_thresholds(best):
    return json.loads((best / "thresholds.json").read_text())


def test_csv_in_csv_out_matches_the_transformers_pipeline(best, tmp_path):
    """The CLI on raw titles gives the probabilities that
    `pipeline("text-classification", top_k=None, function_to_apply="sigmoid")` gives on the same
    titles cleaned. The pipeline does not clean: callers must apply data.clean_title first."""
    from transformers import pipeline
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(len(RAW_TITLES)), "Title": RAW_TITLES}).to_csv(src, index=False)
    out = tmp_path / "out" / "tagged.csv"
    python("-m", "vacancy.predict", "--model", best, "--input", src, "--output", out,
           "--batch-size", "2", "--probs")
    table = pd.read_csv(out, keep_default_na=False)
    assert table["id"].tolist() == list(range(len(RAW_TITLES)))  # other columns kept, in order
    assert table["title"].tolist() == RAW_TITLES

    thresholds = saved_thresholds(best)
    labels = sorted(thresholds)
    ours = table[[f"p_{x}" for x in labels]].to_numpy()
    tag = pipeline("text-classification", model=str(best), top_k=None,
                   function_to_apply="sigmoid")
    theirs = [{d["label"]: d["score"] for d in row}
              for row in tag([clean_title(t) for t in RAW_TITLES])]
    assert all(set(row) == set(labels) for row in theirs)
    np.testing.assert_allclose(ours, [[row[x] for x in labels] for row in theirs], atol=1e-5)
    for p, predicted in zip(ours, table["predicted"]):  # the saved per-label thresholds
        expected = {x for x, q in zip(labels, p) if q >= thresholds[x]} or \
            {labels[int(np.argmax(p))]}  # at least one area (decision.json)
        assert set(predicted.split()) == expected


def printed_areas(text: str) -> dict[str, dict[str, float]]:
    """{title: {area: probability}} from predict's command-line output."""
    out, title = {}, None
    for line in text.splitlines():
        if not line.startswith("  "):
            title = line
            out[title] = {}
        elif not line.strip().startswith("("):
            area, p = line.split()
            out[title][area] = float(p)
    return out


def test_titles_on_the_command_line_use_the_saved_thresholds(best, capsys):
    assert main(["--model", str(best), *RAW_TITLES]) == 0
    printed = printed_areas(capsys.readouterr().out)
    assert list(printed) == RAW_TITLES
    model, tokenizer, labels, thresholds = load_checkpoint(best)
    probs = predict_probs(model, tokenizer, RAW_TITLES)
    for title, row in zip(RAW_TITLES, probs):
        expected = {x: p for x, p, t in zip(labels, row, thresholds) if p >= t} or \
            {labels[int(np.argmax(row))]: row.max()}
        assert set(printed[title]) == set(expected)
        for area, p in printed[title].items():
            assert p == pytest.approx(expected[area], abs=1e-3)


def test_top_k_and_threshold_override(best, capsys):
    model, tokenizer, labels, _ = load_checkpoint(best)
    probs = predict_probs(model, tokenizer, RAW_TITLES)
    # threshold 0: every label qualifies, so top-k picks the k most probable
    assert main(["--model", str(best), "--threshold", "0", "--top-k", "2", *RAW_TITLES]) == 0
    printed = printed_areas(capsys.readouterr().out)
    for title, row in zip(RAW_TITLES, probs):
        assert list(printed[title]) == [labels[j] for j in np.argsort(-row)[:2]]
    # a threshold above every probability leaves each title its most probable area (the run
    # saved at_least_one), and nothing with --no-at-least-one's rule
    top = float(probs.max())
    assert main(["--model", str(best), "--threshold", str(min(1.0, top + 1e-3)), *RAW_TITLES]) == 0
    printed = printed_areas(capsys.readouterr().out)
    for title, row in zip(RAW_TITLES, probs):
        assert list(printed[title]) == [labels[int(np.argmax(row))]]


def test_bad_model_dir_and_csv_give_one_line_errors(best, tmp_path, capsys):
    assert main(["--model", str(tmp_path / "missing"), "x"]) == 2
    assert capsys.readouterr().err == f"error: --model {tmp_path / 'missing'}: no such directory\n"
    (tmp_path / "empty").mkdir()
    assert main(["--model", str(tmp_path / "empty"), "x"]) == 2
    assert "no config.json" in capsys.readouterr().err
    src = tmp_path / "names.csv"
    src.write_text("name,area\nJava Developer,programmer\n")
    assert main(["--model", str(best), "--input", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(src) in err and "no `title` column" in err


def test_a_whole_run_directory_means_its_best_model(ddp_run, capsys):
    assert main(["--model", str(ddp_run), "--top-k", "1", "--threshold", "0",
                 "Java Developer"]) == 0
    assert len(printed_areas(capsys.readouterr().out)["Java Developer"]) == 1
