"""The TF-IDF baseline and the comparison report, on the small synthetic CSV and the ddp_run."""
import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, python, run_env
from vacancy.baseline import main as baseline_main
from vacancy.compare import _duration, main as compare_main
from vacancy.metrics import evaluate


@pytest.fixture(scope="module")
def baselines(tmp_path_factory, small_csv):
    """Two real baseline runs: thresholds tuned on val, and a fixed high threshold (a worse run)."""
    root = tmp_path_factory.mktemp("baselines")
    python("-m", "vacancy.baseline", "--data", small_csv, "--output-dir", root / "tuned")
    python("-m", "vacancy.baseline", "--data", small_csv, "--output-dir", root / "strict",
           "--thresholds", "0.95")
    return root


def read_metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_baseline_writes_the_trainers_files(baselines, ddp_run):
    run = baselines / "tuned"
    metrics, trainer = read_metrics(run), read_metrics(ddp_run)
    assert set(trainer) <= set(metrics)  # same metrics.json shape as a transformer run
    assert metrics["model"] == "tfidf-logreg" and metrics["engine"] == "sklearn"
    assert metrics["world_size"] == 1 and metrics["epochs"] == []
    assert metrics["samples_per_s"] > 0 and metrics["best_val_loss"] > 0
    # the same split and label space as the trainer's on the same CSV
    assert [metrics[k] for k in ("n_train", "n_val", "n_test")] == \
        [trainer[k] for k in ("n_train", "n_val", "n_test")]
    assert set(metrics["per_label"]) == set(trainer["per_label"])
    assert set(metrics["per_label"]["programmer"]) == set(trainer["per_label"]["programmer"])
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "tfidf-logreg" and config["thresholds"] is None
    report = (run / "report.txt").read_text()
    assert "micro avg" in report and all(label in report for label in metrics["per_label"])


def test_baseline_metrics_follow_from_its_predictions(baselines):
    """metrics.json is what evaluate() gives on test_predictions.csv at the saved thresholds."""
    for name, fixed in (("tuned", None), ("strict", 0.95)):
        metrics = read_metrics(baselines / name)
        table = pd.read_csv(baselines / name / "test_predictions.csv", keep_default_na=False)
        assert len(table) == metrics["n_test"]
        labels = sorted(metrics["per_label"])
        probs = table[[f"p_{x}" for x in labels]].to_numpy()
        targets = np.array([[x in row.split() for x in labels] for row in table["area"]])
        thresholds = np.array([metrics["per_label"][x]["threshold"] for x in labels])
        if fixed is not None:
            assert np.all(thresholds == fixed)
        else:
            assert len(set(thresholds)) > 1  # tuned per label on val
        again, _ = evaluate(probs, targets, thresholds, labels)
        assert again["micro_f1"] == pytest.approx(metrics["micro_f1"], abs=1e-4)
        assert again["macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-4)


def test_baseline_refuses_to_overwrite_and_reports_bad_data(baselines, tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert baseline_main(["--data", str(missing), "--output-dir", str(baselines / "tuned")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert baseline_main(["--data", str(missing), "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such file\n"


def table_rows(markdown: str, header_start: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with `header_start`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_compare_report_rows_chart_and_conclusion(baselines, ddp_run, tmp_path):
    runs = [baselines / "tuned", baselines / "strict", ddp_run]
    out = tmp_path / "report" / "comparison.md"
    python("-m", "vacancy.compare", *runs, "--out", out)
    text = out.read_text()
    assert (tmp_path / "report" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![main test metrics](comparison.png)" in text

    rows = {row[0]: row for row in table_rows(text, "| run |")}
    assert set(rows) == {"tuned", "strict", ddp_run.name}
    header = [c.strip() for c in text.splitlines()[
        next(i for i, x in enumerate(text.splitlines()) if x.startswith("| run |"))].strip("|")
        .split("|")]
    col = {name: i for i, name in enumerate(header)}
    trainer = read_metrics(ddp_run)
    row = rows[ddp_run.name]
    assert row[col["engine"]] == "ddp" and row[col["world size"]] == "2"
    assert (row[col["frozen ep."]], row[col["unfrozen ep."]]) == ("1", "2")
    assert row[col["micro-F1"]] == f"{trainer['micro_f1']:.4f}"
    assert row[col["best val loss"]] == f"{trainer['best_val_loss']:.4f}"
    assert rows["tuned"][col["engine"]] == "sklearn"
    assert rows["tuned"][col["model"]] == "tfidf-logreg"

    labels = table_rows(text, "| label |")
    assert [r[0] for r in labels] == sorted(trainer["per_label"])
    strict = read_metrics(baselines / "strict")["per_label"]
    assert [r[3].strip("*") for r in labels] == [f"{strict[x]['f1']:.3f}" for x in sorted(strict)]

    # The conclusion names the runs that really have the best micro- and macro-F1.
    names = {"tuned": baselines / "tuned", "strict": baselines / "strict", ddp_run.name: ddp_run}
    for key, title in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1")):
        scores = {name: read_metrics(path)[key] for name, path in names.items()}
        line = next(x for x in text.splitlines() if x.startswith(f"- Best test {title}:"))
        named = set(re.findall(r"`([^`]+)`", line))
        assert named == {n for n, s in scores.items() if s == max(scores.values())}
        assert f"({max(scores.values()):.4f})" in line
    base = read_metrics(baselines / "tuned")["micro_f1"]
    margin = f"{trainer['micro_f1'] - base:+.4f}"
    assert re.search(rf"`{ddp_run.name}` (beats|does not beat) it on micro-F1 "
                     rf"\({re.escape(margin)};", text)


def test_compare_rejects_a_directory_without_metrics(baselines, tmp_path, capsys):
    (tmp_path / "unfinished").mkdir()
    assert compare_main([str(baselines / "tuned"), str(tmp_path / "unfinished")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "unfinished" / "metrics.json") in err
    assert compare_main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing'}: no such run directory\n"


def test_compare_models_script_runs_the_study(tmp_path, small_csv, tiny_model):
    """scripts/compare_models.sh end to end: baseline, a model frozen-only and
    frozen-then-unfrozen, the report; a second call keeps the finished runs."""
    import subprocess
    out = tmp_path / "study"
    env = run_env(MODELS=str(tiny_model), EPOCHS="2", FREEZE_EPOCHS="1",
                  TRAIN_FLAGS="--batch-size 32 --lr 3e-4")
    # run from tmp_path with relative paths: the script must not change directory
    cmd = ["bash", str(ROOT / "scripts" / "compare_models.sh"), str(small_csv), "study"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = tiny_model.name
    frozen, unfrozen = read_metrics(out / f"{name}-frozen"), read_metrics(out / f"{name}-unfrozen")
    assert [e["phase"] for e in frozen["epochs"]] == ["frozen", "frozen"]
    assert [e["phase"] for e in unfrozen["epochs"]] == ["frozen", "unfrozen"]
    rows = table_rows((out / "comparison.md").read_text(), "| run |")
    assert [r[0] for r in rows] == ["baseline", f"{name}-frozen", f"{name}-unfrozen"]
    assert (out / "comparison.png").exists()
    before = {p: os.stat(p).st_mtime_ns for p in out.glob("*/metrics.json")}
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and again.stdout.count("(finished)") == 2
    assert {p: os.stat(p).st_mtime_ns for p in out.glob("*/metrics.json")} == before


def test_compare_flags_the_train_time_of_a_resumed_run(ddp_run, tmp_path, capsys):
    """After a resume, train_seconds covers only the last attempt: the report says so."""
    import shutil
    copy = tmp_path / "resumed"
    shutil.copytree(ddp_run, copy, ignore=shutil.ignore_patterns("best", "last", "wandb"))
    metrics = read_metrics(copy)
    epoch_seconds = sum(e["seconds"] for e in metrics["epochs"])
    metrics["train_seconds"] = round(metrics["epochs"][-1]["seconds"] / 2, 1)
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert compare_main([str(ddp_run), str(copy)]) == 0
    text = capsys.readouterr().out
    row = {r[0]: r for r in table_rows(text, "| run |")}
    assert row["resumed"][-2].endswith("(†)") and not row[ddp_run.name][-2].endswith("(†)")
    assert "`resumed` was resumed" in text
    assert f"its epochs took {_duration(epoch_seconds)} in all" in text
