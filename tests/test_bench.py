"""Smoke tests of the benchmark scripts in bench/: each runs on a tiny configuration and prints
its table (timings are not checked: this machine is shared and noisy)."""
import re

import pytest

from conftest import python

NUMBER = r"[0-9]+(\.[0-9]+)?"


def table_rows(stdout: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows if not row[0].strip() == "---"]


@pytest.mark.slow
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
    """Four child processes: the pipeline on a small sample, the tagger on a larger one and the
    whole file, and on the run's test split. (A backend that does not load gets a row saying so.)"""
    out = python("bench/predict_throughput.py", "--model", ddp_run / "best", "--data", small_csv,
                 "--sample", 100, "--every-row-sample", 50, "--methods", "pipeline,torch",
                 "--work", tmp_path).stdout
    rows = [r for r in table_rows(out) if len(r) == 7][1:]
    assert [(r[2], r[3]) for r in rows] == [("pipeline", "50 (of 800: scaled)"),
                                            ("torch", "100"), ("torch", "800")]
    for row in rows:
        assert all(re.fullmatch(NUMBER, x) for x in row[4:]), row
    f1 = {r[0]: r[1] for r in table_rows(out) if len(r) == 5}
    assert re.fullmatch(r"0\.[0-9]{4}", f1["torch"])
    assert re.search(rf"small.csv: torch / pipeline: {NUMBER}x titles/s", out)
    assert re.search(r"torch peak RSS [0-9]+ MB at 100 rows, [0-9]+ MB at 800 rows", out)


@pytest.mark.slow
def test_gpu_throughput_runs_on_cpu_with_a_tiny_model():
    out = python("bench/gpu_throughput.py", "--tiny", "--steps", 2, "--warmup", 1,
                 "--batch-sizes", "4,8", "--precisions", "bf16,fp32").stdout
    rows = table_rows(out)[1:]
    assert [(r[0], r[1], r[2]) for r in rows] == [("bf16", "off", "4"), ("bf16", "off", "8"),
                                                  ("fp32", "off", "4"), ("fp32", "off", "8")]
    assert all(re.fullmatch(NUMBER, r[3]) and r[6] == "-" for r in rows)  # no MFU without a peak
    assert "CPU" in out.splitlines()[0]


@pytest.mark.slow
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
