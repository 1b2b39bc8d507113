"""Smoke tests of the benchmark scripts in bench/: each runs on a tiny configuration and prints
its table (timings are not checked: this machine is shared and noisy). bench/supcon.py's loss is
checked by hand."""
import re

import pytest

from conftest import ROOT, python

NUMBER = r"[0-9]+(\.[0-9]+)?"


def table_rows(stdout: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows if not row[0].strip() == "---"]


def test_train_throughput_runs_every_method(tiny_model, small_csv):
    out = python("bench/train_throughput.py", "--model", tiny_model, "--data", small_csv,
                 "--rows", 300, "--steps", 2, "--frozen-epochs", 2, "--unfrozen-epochs", 1).stdout
    rows = {row[0]: row[1:] for row in table_rows(out)[1:]}
    assert set(rows) == {"ours", "ours, --no-group-by-length", "ours, --no-frozen-cache",
                         "notebook loop", "transformers.Trainer"}
    for name in ("ours", "notebook loop", "transformers.Trainer"):
        frozen, unfrozen, memory, recipe, f1 = rows[name]
        assert all(re.fullmatch(NUMBER, x) for x in (unfrozen, memory, recipe, f1)), rows[name]
    assert re.fullmatch(rf"{NUMBER} \(1st\), {NUMBER} \(later\)", rows["ours"][0])
    assert rows["ours, --no-frozen-cache"][1] == "-"  # it runs the frozen epochs only
    assert re.search(rf"frozen epoch, cache / no cache: {NUMBER}x after the first", out)
    assert re.search(rf"recipe wall time, notebook / ours: {NUMBER}x", out)


def test_predict_throughput_end_to_end(ddp_run, small_csv, tmp_path):
    """Four child processes: the pipeline on a sample, the tagger on the sample and the whole
    file, and on the run's test split. (A backend that does not load gets a row saying so.)"""
    out = python("bench/predict_throughput.py", "--model", ddp_run / "best", "--data", small_csv,
                 "--sample", 100, "--methods", "pipeline,torch", "--work", tmp_path).stdout
    rows = [r for r in table_rows(out) if len(r) == 7][1:]
    assert [(r[2], r[3]) for r in rows] == [("pipeline", "100 (of 800: scaled)"),
                                            ("torch", "100"), ("torch", "800")]
    for row in rows:
        assert all(re.fullmatch(NUMBER, x) for x in row[4:]), row
    f1 = {r[0]: r[1] for r in table_rows(out) if len(r) == 5}
    assert re.fullmatch(r"0\.[0-9]{4}", f1["torch"])
    assert re.search(rf"small.csv: torch / pipeline: {NUMBER}x titles/s", out)
    assert re.search(r"torch peak RSS [0-9]+ MB at 100 rows, [0-9]+ MB at 800 rows", out)


def test_gpu_throughput_runs_on_cpu_with_a_tiny_model():
    out = python("bench/gpu_throughput.py", "--tiny", "--steps", 2, "--warmup", 1,
                 "--batch-sizes", "4,8", "--precisions", "bf16,fp32").stdout
    rows = table_rows(out)[1:]
    assert [(r[0], r[1], r[2]) for r in rows] == [("bf16", "off", "4"), ("bf16", "off", "8"),
                                                  ("fp32", "off", "4"), ("fp32", "off", "8")]
    assert all(re.fullmatch(NUMBER, r[3]) and r[6] == "-" for r in rows)  # no MFU without a peak
    assert "CPU" in out.splitlines()[0]


def test_profile_step(tiny_model):
    out = python("bench/profile_step.py", "--model", tiny_model, "--steps", 2, "--top", 5).stdout
    phases = [r[0] for r in table_rows(out)[1:]]
    assert phases == ["batch", "forward", "loss + backward", "step", "total"]
    assert "aten::" in out  # the profiler's operator table


def test_compare_speed():
    out = python("bench/compare_speed.py", "--runs", 4, "--titles", 300, "--labels", 5,
                 "--resamples", 200, "--repeats", 1).stdout
    rows = table_rows(out)[1:]
    assert [r[0] for r in rows] == ["read runs", "groups + bootstrap",
                                    "report (error analysis included)", "chart",
                                    "python -m vacancy.compare (all of it)"]
    assert all(re.fullmatch(NUMBER, r[1]) and re.fullmatch(NUMBER, r[2]) for r in rows)


def test_refit_transformer_trains_one_more_epoch_over_train_and_val(ddp_run, small_csv, tmp_path):
    import shutil

    from vacancy.data import load_splits
    shutil.copytree(ddp_run / "best", tmp_path / "study" / "s1" / "best")
    out = python("bench/refit_transformer.py", "--study", tmp_path / "study", "--data", small_csv,
                 "--batch-size", 32).stdout
    parts = load_splits(small_csv).parts
    assert f"one more epoch over {len(parts.train) + len(parts.val)} titles" in out
    rows = table_rows(out)[1:]
    assert [r[0] for r in rows] == ["transformer", "transformer, one more epoch",
                                    "mix of 3, refit", "mix of 3, refit, one more epoch",
                                    "same, kNN on its vectors"]
    assert all(re.fullmatch(rf"{NUMBER} ± {NUMBER}", cell) for r in rows for cell in r[1:])
    assert (tmp_path / "study" / "s1" / "study.npz").exists()  # the run's own probabilities


def test_knn_study_scores_each_part_and_the_other_mixes(ddp_run, small_csv, tmp_path):
    import shutil
    run = tmp_path / "study" / "s1"
    shutil.copytree(ddp_run / "best", run / "best")
    shutil.copy(ddp_run / "config.json", run)
    out = python("bench/knn_study.py", "--study", tmp_path / "study", "--data", small_csv,
                 "--variants").stdout
    rows = table_rows(out)[1:]
    assert [r[0] for r in rows] == ["transformer", "tfidf", "knn", "mix of 2", "mix of 3",
                                    "tfidf, refit", "mix of 3, refit", "mix of 3, refit, stacked",
                                    "mix of 4, refit"]
    assert all(re.fullmatch(rf"{NUMBER} ± {NUMBER}", cell) for r in rows for cell in r[1:])
    assert re.search(r"s1: weights of the mix of 4: transformer [0-9.]+, tfidf [0-9.]+, "
                     r"knn [0-9.]+, knn, pretrained [0-9.]+", out)


def test_label_noise_splits_test_titles_by_twin_and_scores_each_run(ddp_run, small_csv, tmp_path):
    import json
    import sys

    from vacancy.synth import main as synth
    sys.path.insert(0, str(ROOT / "bench"))
    from label_noise import words
    assert words("QA Specialists, quality assurance specialist") == \
        words("quality assurance specialist qa specialist")

    out = python("bench/label_noise.py", "--data", small_csv, "--runs", ddp_run).stdout
    twinned, total = map(int, re.search(r"([0-9]+) of ([0-9]+) test titles have a train or val "
                                        r"twin", out).groups())
    assert re.search(r"the whole file: [0-9]+ pairs of titles have the same words; 100.0% of "
                     r"them the same label set", out)  # the synthetic labels follow from words
    rows = {r[0]: r[1:] for r in table_rows(out)[1:]}
    assert list(rows) == ["with a twin", "without", "all"]
    assert twinned and rows["with a twin"][1] == "1.000 / 1.000"
    assert [int(rows[name][0]) for name in rows] == [twinned, total - twinned, total]
    micro = json.loads((ddp_run / "metrics.json").read_text())["micro_f1"]
    assert rows["all"][2].startswith(f"{micro:.3f} / ")  # the run's own test micro-F1

    other = tmp_path / "other.csv"
    synth(["--rows", "800", "--seed", "2", "--out", str(other)])
    proc = python("bench/label_noise.py", "--data", other, "--runs", ddp_run, check=False)
    assert proc.returncode == 2 and f"{ddp_run}: its test titles are not those of" in proc.stderr
    proc = python("bench/label_noise.py", "--data", small_csv, "--runs", tmp_path, check=False)
    assert proc.returncode == 2 and f"{tmp_path}/test_predictions.csv: not found" in proc.stderr


def test_supcon_loss_by_hand():
    import sys

    import numpy as np
    import torch
    sys.path.insert(0, str(ROOT / "bench"))
    from supcon import supcon
    vectors = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])  # the third is normalised
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # 0 and 1 share a label
    s = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.8]]) / 0.1  # cosines of titles 0 and 1 to all
    by_hand = -np.mean([s[0, 1] - np.log(np.exp(s[0, 1]) + np.exp(s[0, 2])),
                        s[1, 0] - np.log(np.exp(s[1, 0]) + np.exp(s[1, 2]))])
    assert supcon(vectors, labels).item() == pytest.approx(by_hand, rel=1e-5)
    alone = torch.ones(3, 2, requires_grad=True)  # no title shares a label: no term, still a graph
    loss = supcon(alone, torch.eye(3, 2))
    assert loss.item() == 0.0 and loss.requires_grad
