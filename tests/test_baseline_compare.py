"""The TF-IDF baseline and the comparison report, on the small synthetic CSV and the ddp_run."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, python, run_env
from test_bootstrap import preds, recomputed_interval
from test_wandb import items, read_wandb_records, wandb_env
from vacancy.baseline import main as baseline_main
from vacancy.compare import GROUP_METRICS, Entry, Run, _duration, draw_chart, error_sections
from vacancy.compare import main as compare_main
from vacancy.metrics import evaluate


@pytest.fixture(scope="module")
def baselines(tmp_path_factory, small_csv):
    """Two real baseline runs: thresholds tuned on val, and a fixed high threshold (a worse run)."""
    root = tmp_path_factory.mktemp("baselines")
    python("-m", "vacancy.baseline", "--data", small_csv, "--output-dir", root / "tuned",
           "--thresholds", "per-label")
    python("-m", "vacancy.baseline", "--data", small_csv, "--output-dir", root / "strict",
           "--thresholds", "0.95")
    return root


def read_metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_baseline_writes_the_trainers_files(baselines, ddp_run):
    run = baselines / "tuned"
    metrics, trainer = read_metrics(run), read_metrics(ddp_run)
    # same metrics.json shape as a transformer run, but for what only a trainer run reports:
    # its parts (transformer, TF-IDF, mix) and early stopping
    trainer_only = {k for k in trainer if k.split("_")[0] in ("transformer", "tfidf", "mix")}
    assert set(trainer) - trainer_only - {"stopped_early"} <= set(metrics)
    assert metrics["model"] == "tfidf-logreg" and metrics["engine"] == "sklearn"
    assert metrics["world_size"] == 1 and metrics["epochs"] == []
    assert metrics["samples_per_s"] > 0 and metrics["best_val_loss"] > 0
    # the same split and label space as the trainer's on the same CSV
    assert [metrics[k] for k in ("n_train", "n_val", "n_test")] == \
        [trainer[k] for k in ("n_train", "n_val", "n_test")]
    assert set(metrics["per_label"]) == set(trainer["per_label"])
    assert set(metrics["per_label"]["programmer"]) == set(trainer["per_label"]["programmer"])
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "tfidf-logreg" and config["thresholds"] == "per-label"
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
        again, _ = evaluate(probs, targets, thresholds, labels, at_least_one=True)
        assert again["micro_f1"] == pytest.approx(metrics["micro_f1"], abs=1e-4)
        assert again["macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-4)


def test_baseline_fits_again_on_train_and_val_unless_told_not_to(baselines, small_csv, tmp_path):
    refit = read_metrics(baselines / "strict")
    assert refit["refit_val_titles"] == refit["n_val"] > 0
    python("-m", "vacancy.baseline", "--data", small_csv, "--output-dir", tmp_path,
           "--thresholds", "0.95", "--no-refit")
    alone = read_metrics(tmp_path)
    assert alone["refit_val_titles"] == 0 and alone["best_val_loss"] == refit["best_val_loss"]
    probs = [pd.read_csv(d / "test_predictions.csv").filter(like="p_").to_numpy()
             for d in (tmp_path, baselines / "strict")]
    assert np.abs(probs[0] - probs[1]).max() > 1e-3


def test_baseline_refuses_to_overwrite_and_reports_bad_data(baselines, tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert baseline_main(["--data", str(missing), "--output-dir", str(baselines / "tuned")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert baseline_main(["--data", str(missing), "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such file\n"


def test_baseline_fits_when_joblib_maps_the_data_to_its_workers(small_csv, tmp_path, capsys):
    # joblib memory-maps arrays over 1 MB for its worker processes (O*NET major's train split
    # is past that; its baseline crashed with `WRITEBACKIFCOPY base is read-only`): here every
    # array is mapped, so the small set goes the same way
    joblib = pytest.importorskip("joblib")
    with joblib.parallel_config(max_nbytes=1):
        assert baseline_main(["--data", str(small_csv), "--output-dir", str(tmp_path)]) == 0
    assert read_metrics(tmp_path)["micro_f1"] > 0.5
    # it prints as a training run does: warnings so marked, and where the results went
    lines = capsys.readouterr().out.splitlines()
    assert any(re.fullmatch(rf"warning: {re.escape(str(small_csv))}: [0-9]+ row\(s\) repeat an "
                            "earlier title after cleaning", line) for line in lines), lines
    assert lines[-1] == (f"run directory: {tmp_path} (metrics.json, report.txt, "
                         "test_predictions.csv, train.log)")
    assert lines[-1] in (tmp_path / "train.log").read_text()


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
    # Against the baseline: the margin, its interval (recomputed independently) and a verdict
    # that calls a win only when the interval excludes 0.
    base = read_metrics(baselines / "tuned")["micro_f1"]
    margin = f"{trainer['micro_f1'] - base:+.4f}"
    claim = re.search(rf"`{ddp_run.name}`: (wins|loses|no measurable difference) on micro-F1 "
                      rf"\({re.escape(margin)} \[([-+.\d]+), ([-+.\d]+)\]\)", text)
    assert claim, text
    low, high = float(claim[2]), float(claim[3])
    assert claim[1] == ("wins" if low > 0 else "loses" if high < 0 else "no measurable difference")
    reported, expected = recomputed_interval(text, ddp_run.name, "tuned", [ddp_run],
                                             [baselines / "tuned"])
    assert (low, high) == reported and reported == pytest.approx(expected, abs=1e-4)
    assert "### Label pairs most often confused" in text
    assert "### Titles every run gets wrong" in text


def test_compare_rejects_a_directory_without_metrics(baselines, tmp_path, capsys):
    (tmp_path / "unfinished").mkdir()
    assert compare_main([str(baselines / "tuned"), str(tmp_path / "unfinished")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "unfinished" / "metrics.json") in err
    assert compare_main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing'}: no such run directory\n"


@pytest.mark.slow
def test_compare_models_script_runs_the_study(tmp_path, small_csv, tiny_model):
    """scripts/compare_models.sh end to end: baseline, a model frozen-only and
    frozen-then-unfrozen, the report; a second call keeps the finished runs."""
    import subprocess
    out = tmp_path / "study"
    env = run_env(MODELS=str(tiny_model), EPOCHS="2", FREEZE_EPOCHS="1", SEEDS="1 2",
                  TRAIN_FLAGS="--batch-size 32 --lr 3e-4")
    # run from tmp_path with relative paths: the script must not change directory
    cmd = ["bash", str(ROOT / "scripts" / "compare_models.sh"), str(small_csv), "study"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1800)  # 5 runs: minutes, more on a busy machine
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = tiny_model.name
    for seed in (1, 2):  # one directory per seed, trained with that seed
        frozen = read_metrics(out / f"{name}-frozen-seed{seed}")
        unfrozen = read_metrics(out / f"{name}-unfrozen-seed{seed}")
        assert [e["phase"] for e in frozen["epochs"]] == ["frozen", "frozen"]
        assert [e["phase"] for e in unfrozen["epochs"]] == ["frozen", "unfrozen"]
        config = json.loads((out / f"{name}-unfrozen-seed{seed}" / "config.json").read_text())
        assert config["seed"] == seed
    text = (out / "comparison.md").read_text()
    rows = table_rows(text, "| run |")
    assert [r[0] for r in rows] == ["baseline", *(f"{name}-{v}-seed{s}" for v in
                                                  ("frozen", "unfrozen") for s in (1, 2))]
    groups = table_rows(text, "| model (runs) |")
    assert [(r[0], r[1]) for r in groups] == [("baseline", "1"), (f"{name}-frozen", "2"),
                                              (f"{name}-unfrozen", "2")]
    assert (out / "comparison.png").exists()
    before = {p: os.stat(p).st_mtime_ns for p in out.glob("*/metrics.json")}
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and again.stdout.count("(finished)") == 4
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


def hand_made_entries(seeds: int, baseline_score: float) -> list[Entry]:
    """The baseline and a model of `seeds` runs, as compare groups them; every metric the same
    score in a run."""
    def run(name, engine, score):
        return Run(name, Path(name), {}, {"engine": engine, "per_label": {},
                                          **{key: score for key, _ in GROUP_METRICS}})
    return [Entry("baseline", [run("baseline", "sklearn", baseline_score)]),
            Entry("model", [run(f"model-seed{i}", "ddp", 0.99 + 0.002 * i) for i in range(seeds)])]


@pytest.mark.parametrize("seeds, baseline_score, zoomed", [(1, 0.985, True), (3, 0.985, True),
                                                           (1, 0.2, False)])
def test_chart_labels_its_axes_and_captions_only_what_it_draws(seeds, baseline_score, zoomed,
                                                               tmp_path):
    fig = draw_chart(hand_made_entries(seeds, baseline_score), tmp_path / "comparison.png")
    assert [ax.get_title() for ax in fig.axes] == [f"test {name}" for _, name in GROUP_METRICS]
    for ax, (_, name) in zip(fig.axes, GROUP_METRICS):
        start = ax.get_xlim()[0]
        if zoomed:  # scores within 0.01 of each other: the axis starts near them, and says so
            assert 0.9 < start < baseline_score
            assert ax.get_xlabel() == f"{name} (axis from {start:.3f}, not 0)"
        else:
            assert start == 0 and ax.get_xlabel() == name
        whiskers = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
        dots = [line for line in ax.lines if line.get_marker() == "."]
        assert len(whiskers) == len(dots) == (seeds > 1)
    caption = fig.get_suptitle()
    if seeds > 1:
        assert "dots: seeds" in caption and "whisker: min-max" in caption
    else:
        assert "dots" not in caption and "whisker" not in caption and "seeds" not in caption


def test_titles_every_run_gets_wrong_are_told_in_a_sentence():
    right = preds([("x", "a", "a", {"a": .9}), ("y", "b", "b", {"b": .9})])
    wrong = preds([("x", "a", "b", {"b": .9}), ("y", "b", "b", {"b": .9})])

    def first_line(*predictions):
        entries = [Entry(f"r{i}", [Run(f"r{i}", Path(f"r{i}"), {}, {}, p)])
                   for i, p in enumerate(predictions)]
        section = "\n".join(error_sections(entries)).split("### Titles every run gets wrong")[1]
        return section.strip().splitlines()[0]
    assert first_line(right, wrong) == ("Each of the 2 test titles has its label set predicted "
                                        "exactly by at least one run (of 2).")
    assert first_line(wrong, wrong) == ("No run (of 2) predicts the label set of 1 of the 2 test "
                                        "titles exactly; it follows.")


def copy_run(src, dst, seed=None, **metrics):
    """A copy of a finished run's result files, with another seed and metrics."""
    import shutil
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("best", "last", "wandb"))
    if seed is not None:
        config = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps({**config, "seed": seed,
                                                     "output_dir": str(dst)}))
    (dst / "metrics.json").write_text(json.dumps({**read_metrics(src), **metrics}))
    return dst


def test_compare_groups_seeds_and_reports_mean_and_spread(ddp_run, baselines, tmp_path, capsys):
    seeds = [copy_run(ddp_run, tmp_path / f"tiny-seed{i}", seed=i, micro_f1=f1)
             for i, f1 in ((1, 0.61), (2, 0.65), (3, 0.66))]
    other = copy_run(ddp_run, tmp_path / "tiny-lr", seed=1)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "lr": 1.0}))  # another recipe
    assert compare_main([str(baselines / "tuned"), *map(str, seeds), str(other)]) == 0
    text = capsys.readouterr().out
    rows = {r[0]: r for r in table_rows(text, "| model (runs) |")}
    assert list(rows) == ["tuned", "tiny", "tiny-lr"] and rows["tiny"][1] == "3"
    v = np.array([0.61, 0.65, 0.66])
    assert rows["tiny"][2] == f"{v.mean():.4f} ± {v.std(ddof=1):.4f} (0.6100-0.6600)"
    assert rows["tiny-lr"][1] == "1"
    means = {"tuned": read_metrics(baselines / "tuned")["micro_f1"], "`tiny` (3 seeds)": v.mean(),
             "tiny-lr": read_metrics(ddp_run)["micro_f1"]}
    best = max(means, key=means.get)
    assert f"- Best test micro-F1{' (mean)' if 'seeds' in best else ''}: " \
        f"{best if 'seeds' in best else f'`{best}`'} ({means[best]:.4f})." in text
    assert "`tiny` (3 seeds): " in text


def test_compare_leaves_out_runs_on_other_test_titles(baselines, tmp_path, capsys):
    moved = copy_run(baselines / "strict", tmp_path / "shuffled")
    table = pd.read_csv(moved / "test_predictions.csv", keep_default_na=False)
    table.iloc[::-1].to_csv(moved / "test_predictions.csv", index=False)
    (tmp_path / "old").mkdir()  # a run from before test_predictions.csv: rows, no intervals
    (tmp_path / "old" / "metrics.json").write_text((baselines / "strict" / "metrics.json")
                                                   .read_text())
    config = json.loads((baselines / "strict" / "config.json").read_text())
    (tmp_path / "old" / "config.json").write_text(json.dumps({**config, "C": 1.0}))  # not a seed
    assert compare_main([str(baselines / "tuned"), str(moved), str(tmp_path / "old")]) == 0
    text = capsys.readouterr().out
    assert "`shuffled`: `shuffled` was tested on other titles or labels than `tuned`" in text
    assert f"`old`: no intervals or error analysis ({tmp_path / 'old' / 'test_predictions.csv'}" \
        in text
    assert re.search(r"`old`: [-+.\d]+ on micro-F1 \(no interval, so no verdict\)", text)


def test_compare_logs_one_offline_wandb_run(baselines, tmp_path):
    out = tmp_path / "cmp" / "comparison.md"
    python("-m", "vacancy.compare", baselines / "tuned", baselines / "strict", "--out", out,
           "--wandb",
           "--wandb-group", "study", WANDB_MODE="offline", **wandb_env(tmp_path))
    [path] = (tmp_path / "cmp" / "wandb").rglob("*.wandb")
    records = {}
    for r in read_wandb_records(path):
        records.setdefault(r.WhichOneof("record_type"), []).append(r)
    [run] = [r.run for r in records["run"]]
    assert (run.run_group, run.display_name, run.job_type) == ("study", "comparison", "comparison")
    [flat] = [items(r.history.item) for r in records["history"]]
    row = {}  # {"comparison/runs": {"_type": ..., "path": ...}, ...}
    for key, value in flat.items():
        if isinstance(key, tuple):
            row.setdefault(key[0], {})[key[1]] = value
    assert row["comparison/chart"]["_type"] == "image-file"
    table = row["comparison/runs"]
    assert table["_type"] == "table-file" and table["nrows"] == 2
    logged = json.loads((path.parent / "files" / table["path"]).read_text())
    micro = logged["columns"].index("micro_f1")
    assert [r[micro] for r in logged["data"]] == \
        [read_metrics(baselines / name)["micro_f1"] for name in ("tuned", "strict")]
    diffs = json.loads((path.parent / "files" / row["comparison/differences"]["path"]).read_text())
    text = out.read_text()
    for name, ref, metric, value, low, high, verdict in diffs["data"]:
        assert f"{value:+.4f} [{low:+.4f}, {high:+.4f}] ({verdict})" in text
