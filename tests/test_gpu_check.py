"""bench/gpu_check.sh in CPU mode: the one-call GPU check runs end to end and reports every step."""
import subprocess
import tarfile

import pytest

from conftest import ROOT, run_env


@pytest.mark.slow
def test_gpu_check_cpu_mode_runs_every_step_and_summarises_it(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu_check.sh", str(out), "--cpu"], cwd=ROOT,
                          env=run_env(), capture_output=True, text=True, timeout=3600)
    summary = (out / "summary.md").read_text()
    assert proc.returncode == 0, proc.stderr[-3000:] + summary
    assert "failed" not in summary and "timed out" not in summary, summary
    assert "multi-GPU NCCL" in summary and "cannot be tested on one GPU" in summary
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines()
            if line.startswith("| ")}
    for run in ("train_fp32", "train_bf16", "opt_base", "opt_log_every_1", "opt_ddp_tuned",
                "opt_ddp_default"):
        cells = [c.strip() for c in rows[run].split("|")[1:-1]]
        assert cells[1] == "all", rows[run]  # every output file written
        assert 0 <= float(cells[3]) <= 1 and float(cells[6]) > 0, rows[run]  # F1, samples/s
    assert rows["train_bf16"].split("|")[3].strip() == "bf16"
    assert "skipped in CPU mode" in rows["deepspeed"] and "skipped in CPU mode" in \
        rows["opt_compile"]
    assert "| bf16 | off | 8 |" in summary  # bench/gpu_throughput.py's table
    assert "transformers.Trainer" in summary  # bench/train_throughput.py's table
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"logs/env.log", "logs/train_bf16.log", "logs/train_bf16/history.jsonl"} <= names
