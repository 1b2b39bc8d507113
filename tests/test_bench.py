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


def test_predict_throughput(ddp_run):
    out = python("bench/predict_throughput.py", "--model", ddp_run / "best", "--rows", 40,
                 "--repeats", 1, "--pipeline-batch-sizes", "1,8").stdout
    rows = table_rows(out)[1:]
    assert [r[0] for r in rows] == ["vacancy predict_probs (batch 256)",
                                    "transformers pipeline (batch 1)",
                                    "transformers pipeline (batch 8)"]
    assert rows[0][2] == "1.00x" and all(re.fullmatch(NUMBER, r[1]) for r in rows)


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
