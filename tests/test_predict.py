"""`python -m vacancy.predict` on the ddp_run's best/, and agreement with plain transformers."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import python, run_env, torchrun
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


# --- streaming: formats, de-duplication, resume, bad rows, ranks ---------------------------------

STREAM_TITLES = ["Senior Java Developer", "senior java developer!", "", "Data Engineer / ML",
                 "!!!", "Senior Java Developer", "QA Engineer", "data engineer ml",
                 "Head of QA & Test Automation", "QA Engineer"]


def stream_table() -> pd.DataFrame:
    return pd.DataFrame({"id": range(len(STREAM_TITLES)), "Title": STREAM_TITLES,
                         "note": [f"n{i}" for i in range(len(STREAM_TITLES))]})


def write_table(table: pd.DataFrame, path) -> None:
    path = str(path)
    if path.endswith(".parquet"):
        table.to_parquet(path, index=False)
    elif path.endswith(".jsonl"):
        table.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        table.to_csv(path, index=False)


def read_table(path) -> pd.DataFrame:
    path = str(path)
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    if path.endswith(".jsonl"):
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, keep_default_na=False)


def tag(best, src, out, *flags) -> int:
    return main(["--model", str(best), "--input", str(src), "--output", str(out),
                 "--chunk-rows", "3", "--batch-size", "2", *map(str, flags)])


@pytest.mark.parametrize("ext", ["csv", "csv.gz", "parquet", "jsonl"])
def test_each_format_round_trips_its_columns_in_chunks(best, tmp_path, ext, capsys):
    src, out = tmp_path / f"in.{ext}", tmp_path / f"out.{ext}"
    write_table(stream_table(), src)
    assert tag(best, src, out, "--probs") == 0
    assert not (tmp_path / f"out.{ext}.parts").exists()  # joined and removed
    assert not (tmp_path / f"out.{ext}.tmp").exists()
    table = read_table(out)
    labels = sorted(saved_thresholds(best))
    assert list(table.columns) == ["id", "title", "note", "predicted", *[f"p_{x}" for x in labels]]
    assert table["id"].tolist() == list(range(len(STREAM_TITLES)))  # every row, in order
    assert table["title"].tolist() == STREAM_TITLES and table["note"].tolist()[-1] == "n9"
    if ext != "csv":  # the same areas as the CSV's, and (CSV, JSON) the same 6 decimals
        reference = tmp_path / "ref.csv"
        write_table(stream_table(), reference)
        assert tag(best, reference, tmp_path / "ref_out.csv", "--probs") == 0
        ref = read_table(tmp_path / "ref_out.csv")
        assert table["predicted"].fillna("").tolist() == ref["predicted"].tolist()
        np.testing.assert_allclose(pd.to_numeric(table[f"p_{labels[0]}"], errors="coerce"),
                                   pd.to_numeric(ref[f"p_{labels[0]}"], errors="coerce"),
                                   atol=1e-6)
    empty = [i for i, t in enumerate(STREAM_TITLES) if not clean_title(t)]
    assert empty == [2, 4]  # "" and "!!!": no area, despite the run's at-least-one rule
    assert all(not table["predicted"].fillna("")[i] for i in empty)
    areas = table["predicted"].fillna("")
    assert all(areas[i] for i in range(len(STREAM_TITLES)) if i not in empty)
    err = capsys.readouterr().err
    assert "warning: " in err and "2 row(s) tagged with no area" in err
    if ext == "parquet":  # types are kept: the ids are still integers
        assert str(pd.read_parquet(out)["id"].dtype) == "int64"


def test_probabilities_are_opt_in_and_formats_convert(best, tmp_path):
    src = tmp_path / "in.csv"
    write_table(stream_table(), src)
    assert tag(best, src, tmp_path / "out.parquet") == 0
    table = pd.read_parquet(tmp_path / "out.parquet")
    assert list(table.columns) == ["id", "title", "note", "predicted"]
    assert table["id"].tolist() == [str(i) for i in range(len(STREAM_TITLES))]  # CSV: text


def test_each_distinct_cleaned_title_is_scored_once_in_sorted_batches(best, tmp_path, monkeypatch):
    from vacancy.inference import Tagger
    batches = []
    original = Tagger.probs

    def counting(self, titles, *args, **kwargs):
        batches.append(list(titles))
        return original(self, titles, *args, **kwargs)

    monkeypatch.setattr(Tagger, "probs", counting)
    src = tmp_path / "in.csv"
    write_table(stream_table(), src)
    assert tag(best, src, tmp_path / "out.csv") == 0
    scored = [t for batch in batches for t in batch]
    distinct = {clean_title(t) for t in STREAM_TITLES} - {""}
    assert sorted(scored) == sorted(distinct)  # once each, over chunks of 3 rows
    assert all(len(b) <= 2 and len(b[0]) <= len(b[-1]) for b in batches)
    table = read_table(tmp_path / "out.csv")
    assert table["predicted"][0] == table["predicted"][1] == table["predicted"][5]


class Killed(Exception):
    pass


def test_resume_continues_a_killed_run_and_gives_the_same_file(best, tmp_path, monkeypatch,
                                                               capsys):
    from vacancy import predict
    from vacancy.inference import Tagger
    src = tmp_path / "in.csv.gz"
    write_table(stream_table(), src)
    whole = tmp_path / "whole.csv.gz"
    assert tag(best, src, whole, "--probs") == 0

    commit = predict.Parts.commit

    def kill_after_first(self, i, *args, **kwargs):
        if i == 1:
            raise Killed()
        return commit(self, i, *args, **kwargs)

    out = tmp_path / "out.csv.gz"
    with monkeypatch.context() as patch:
        patch.setattr(predict.Parts, "commit", kill_after_first)
        with pytest.raises(Killed):
            tag(best, src, out, "--probs")
    assert not out.exists() and (tmp_path / "out.csv.gz.parts" / "part-00000.csv.gz").exists()
    assert tag(best, src, out, "--probs", "--top-k", "1", "--resume") == 2  # other flags
    assert "was made with another input, model or flags" in capsys.readouterr().err

    scored = []
    original = Tagger.probs

    def counting(self, titles, *args, **kwargs):
        scored.extend(titles)
        return original(self, titles, *args, **kwargs)

    monkeypatch.setattr(Tagger, "probs", counting)
    assert tag(best, src, out, "--probs", "--resume") == 0
    assert out.read_bytes() == whole.read_bytes()
    # chunk 0's titles came back from the parts: only the later chunks' new ones were scored
    first_chunk = {clean_title(t) for t in STREAM_TITLES[:3]} - {""}
    assert scored and not first_chunk & set(scored)
    assert "2 row(s) tagged with no area" in capsys.readouterr().err  # the killed part counted


def test_bad_rows_get_no_area_and_one_warning(best, tmp_path, capsys):
    src = tmp_path / "bad.csv"
    src.write_bytes(b"title,x\nJava Developer,1\nIngenieur f\xfcr Software,2\n,3\n"
                    b"QA,4,extra\nData Engineer,5\n")
    out = tmp_path / "out.csv"
    assert tag(best, src, out) == 0
    table = read_table(out)
    assert table["x"].tolist() == [1, 2, 3, 5]
    assert [bool(p) for p in table["predicted"]] == [True, False, False, True]
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith("warning: ")]
    assert len(warnings) == 2, err
    assert f"--input {src}: 2 row(s) tagged with no area: 1 with an empty title, 1 with none " \
           "or an unreadable one (rows 2, 3)" in warnings[0]
    assert "1 line(s) with more fields than the header" in warnings[1]

    src = tmp_path / "bad.jsonl"
    src.write_text('{"title": "Java Developer", "n": 1}\nnot json\n{"title": 5, "n": 3}\n'
                   '{"n": 4}\n')
    assert tag(best, src, tmp_path / "out.jsonl") == 0
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r.get("n") for r in records] == [1, None, 3, 4]
    assert [bool(r["predicted"]) for r in records] == [True, False, False, False]
    err = capsys.readouterr().err
    assert "3 row(s) tagged with no area" in err and "1 line(s) not a JSON object" in err


def test_bad_input_is_one_line_naming_the_file(best, ddp_run, tmp_path, capsys):
    def error(*argv) -> str:
        assert main(list(map(str, argv))) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        return err

    src = tmp_path / "names.parquet"
    pd.DataFrame({"name": ["Java Developer"]}).to_parquet(src)
    assert f"--input {src}: no `title` column; found 'name'" in \
        error("--model", best, "--input", src)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    assert f"--input {broken}: cannot read as parquet" in error("--model", best, "--input", broken)
    odd = tmp_path / "titles.xlsx"
    odd.write_text("x")
    assert f"--input {odd}: unknown extension" in error("--model", best, "--input", odd)
    good = tmp_path / "in.csv"
    write_table(stream_table(), good)
    assert f"--output {tmp_path}/o.txt: unknown extension" in \
        error("--model", best, "--input", good, "--output", tmp_path / "o.txt")

    partial = tmp_path / "partial"
    shutil.copytree(best, partial)
    (partial / "tokenizer.json").unlink()
    (partial / "model.safetensors").unlink()
    assert f"--model {partial}: incomplete best/ directory, missing model.safetensors or " \
           "pytorch_model.bin, tokenizer.json or vocab.txt" in error("--model", partial, "x")

    stopped = tmp_path / "runs" / "my"  # a run that stopped before its first epoch ended
    stopped.mkdir(parents=True)
    shutil.copy(ddp_run / "config.json", stopped)
    (stopped / "train.log").write_text("")
    assert error("--model", stopped, "x") == \
        f"error: {stopped} holds no best/ (the run did not finish an epoch)\n"


def test_help_names_the_module_and_both_model_forms():
    out = python("-m", "vacancy.predict", "--help").stdout
    assert out.startswith("usage: python -m vacancy.predict")
    assert "a run's best/ directory, or the run directory" in " ".join(out.split())
    assert "--probs" in out and "--resume" in out


def test_an_empty_title_on_the_command_line_gets_no_area(best, capsys):
    assert main(["--model", str(best), "", "Java Developer"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["", "  (empty title: no area)"] and out[2] == "Java Developer"
    assert len(out) > 3


def test_two_ranks_under_torchrun_give_the_one_process_file(best, small_csv, tmp_path):
    """Byte for byte: the batches are cut as in one process, and rank 0 writes. One thread per
    process on both sides, as torchrun sets it."""
    import torch
    src = tmp_path / "in.csv"
    pd.read_csv(small_csv, dtype=str, keep_default_na=False)[:240].to_csv(src, index=False)
    flags = ["--model", best, "--input", src, "--probs", "--chunk-rows", 100, "--batch-size", 16]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(list(map(str, [*flags, "--output", tmp_path / "one.csv.gz"]))) == 0
    finally:
        torch.set_num_threads(threads)
    torchrun(2, "-m", "vacancy.predict", *flags, "--output", tmp_path / "two.csv.gz")
    one, two = (tmp_path / "one.csv.gz").read_bytes(), (tmp_path / "two.csv.gz").read_bytes()
    assert len(pd.read_csv(tmp_path / "one.csv.gz")) == 240
    assert one == two


def test_slurm_predict_script_parses_and_refuses_to_run_outside_a_job():
    import subprocess
    from conftest import ROOT
    script = ROOT / "slurm" / "predict.sh"
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    env = {k: v for k, v in run_env().items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "submit this script with sbatch" in proc.stderr
    assert '-m vacancy.predict "$@" --resume' in script.read_text()
