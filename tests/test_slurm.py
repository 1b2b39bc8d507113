"""`sbatch --nodes=2 slurm/train.sh` on a real Slurm cluster: two slurmd on this machine pose as the
nodes n1 and n2 (tests/slurm_cluster.py), each runs one torchrun with one CPU process."""
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, flags, logged_steps, read_jsonl, run_env
from slurm_cluster import FINAL, SlurmCluster, missing
from vacancy.evaluate import evaluate_checkpoint

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

# Two epochs so that a job can be requeued between its first checkpoint and its end.
TINY_JOB = dict(epochs=2, freeze_epochs=1, batch_size=16)
CPU_JOB = ("--nodes=2", "--gpus-per-node=0", "--cpus-per-task=1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def submit(cluster, workdir, tiny_model, small_csv, **job) -> str:
    """Submit slurm/train.sh from the repo root, as the README says, but run it in `workdir` (so
    its logs/ and runs/ land there), on the tiny model."""
    (workdir / "logs").mkdir()
    # the job finds torchrun on PATH, as on a cluster where the environment is activated
    env = run_env(PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    return cluster.sbatch(*CPU_JOB, f"--chdir={workdir}", "slurm/train.sh",
                          *flags(data=small_csv, model=tiny_model, **{**TINY_JOB, **job}), cwd=ROOT,
                          env=env)


def read_log(path):
    # srun merges the output of both nodes; a write cut mid-character must not fail the test
    return path.read_text(errors="replace")


def job_files(workdir, job_id):
    return workdir / "runs" / f"vacancy-{job_id}", workdir / "logs" / f"vacancy-{job_id}.out"


def test_sbatch_trains_across_two_nodes(cluster, tmp_path, tiny_model, small_csv):
    job_id = submit(cluster, tmp_path, tiny_model, small_csv)
    job = cluster.wait(job_id)
    run, log_file = job_files(tmp_path, job_id)
    log = read_log(log_file)
    assert job["JobState"] == "COMPLETED", log[-4000:]
    assert job["NodeList"] == "n[1-2]" and job["Restarts"] == "0"
    # one torchrun on each node, joined into one world of 2 processes
    assert "node n1: torchrun node rank 0" in log and "node n2: torchrun node rank 1" in log
    assert "x world size 2 =" in log
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]

    # the output directory came from the job, and it holds a complete run
    assert json.loads((run / "config.json").read_text())["output_dir"] == f"runs/vacancy-{job_id}"
    for name in ("best/model.safetensors", "best/thresholds.json", "best/config.json",
                 "last/model.safetensors", "report.txt", "history.jsonl"):
        assert (run / name).is_file(), name
    predictions = pd.read_csv(run / "test_predictions.csv", keep_default_na=False)
    assert len(predictions) == metrics["n_test"]
    epochs = [r["epoch"] for r in read_jsonl(run / "history.jsonl") if r["kind"] == "epoch"]
    assert epochs == [1, 2]

    single, _ = evaluate_checkpoint(run / "best", str(small_csv))
    for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
        assert single[key] == pytest.approx(metrics[key], abs=1e-12), key
    assert single["per_label"] == metrics["per_label"]


def test_requeued_job_resumes_from_its_last_checkpoint(cluster, tmp_path, tiny_model, small_csv):
    job_id = submit(cluster, tmp_path, tiny_model, small_csv)
    run, log_file = job_files(tmp_path, job_id)
    job = cluster.wait(job_id, until=lambda job: (run / "last").exists()
                       or job["JobState"] in FINAL, every=0.5)
    # interrupted in epoch 2, after epoch 1's checkpoint and before the end of the run
    assert job["JobState"] == "RUNNING", read_log(log_file)[-4000:]
    assert not (run / "metrics.json").exists()
    cluster.scontrol("requeue", job_id)  # kills the job and puts it back in the queue

    job = cluster.wait(job_id, until=lambda job: job["Restarts"] == "1"
                       and job["JobState"] in FINAL)
    log = read_log(log_file)  # both attempts: the script appends
    assert job["JobState"] == "COMPLETED", log[-4000:]
    assert "DUE TO JOB REQUEUE" in log and f"job {job_id}, restart 1:" in log

    metrics = json.loads((run / "metrics.json").read_text())
    per_epoch = metrics["optimizer_steps"] // 2
    assert f"resumed from runs/vacancy-{job_id}/last at epoch 1 (step {per_epoch})" in log
    # each epoch finished once: epoch 1 in the first attempt, epoch 2 only in the second
    assert log.count("epoch 1/2 ") == 1 and log.count("epoch 2/2 ") == 1
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    history = read_jsonl(run / "history.jsonl")  # appended to by both attempts
    assert [r["epoch"] for r in history if r["kind"] == "epoch"] == [1, 2]
    steps = [r["step"] for r in history if r["kind"] == "step"]
    assert steps.count(per_epoch) == 1  # epoch 1 was not trained again...
    # ...the second attempt went on from the first record of epoch 2, to the end
    epoch2 = [s for s in logged_steps(2 * per_epoch, per_epoch) if s > per_epoch]
    resumed = len(steps) - 1 - steps[::-1].index(epoch2[0])
    assert steps[resumed:] == epoch2
    assert metrics["optimizer_steps"] == 2 * per_epoch


def test_time_limit_warning_saves_mid_epoch_and_requeues(cluster, tmp_path, tiny_model,
                                                         small_csv):
    # What Slurm does 120 s before --time runs out (#SBATCH --signal=B:USR1@120), sent by hand:
    # the job saves last/ at its next optimizer step, requeues itself, and the next attempt goes
    # on from that very step to the end. Small batches and no frozen epoch make the run long
    # enough (3 x 72 steps) for the signal to land inside it.
    assert "#SBATCH --signal=B:USR1@" in (ROOT / "slurm" / "train.sh").read_text()
    # (a step record every step: the history is checked step by step below)
    job_id = submit(cluster, tmp_path, tiny_model, small_csv, epochs=3, freeze_epochs=0,
                    batch_size=4, save_every_steps=5, log_every=1)
    run, log_file = job_files(tmp_path, job_id)
    job = cluster.wait(job_id, until=lambda job: (run / "last").exists()
                       or job["JobState"] in FINAL, every=0.2)
    assert job["JobState"] == "RUNNING", read_log(log_file)[-4000:]
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=cluster.env, check=True,
                   timeout=30)

    job = cluster.wait(job_id, until=lambda job: job["Restarts"] == "1"
                       and job["JobState"] in FINAL)
    log = read_log(log_file)
    assert job["JobState"] == "COMPLETED", log[-4000:]
    assert "time limit near: saving last/, then requeueing" in log
    stopped = re.search(r"stopped at step (\d+), (\d+) of \d+ batches into epoch (\d)", log)
    assert stopped, log[-4000:]
    step, batches, epoch = map(int, stopped.groups())
    # nothing was lost: the next attempt starts at the step the first one stopped at
    assert (f"resumed from runs/vacancy-{job_id}/last at epoch {epoch - 1} (step {step}), "
            f"{batches} batches into epoch {epoch}") in log
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    steps = [r["step"] for r in read_jsonl(run / "history.jsonl") if r["kind"] == "step"]
    assert steps == list(range(1, metrics["optimizer_steps"] + 1))
    assert metrics["optimizer_steps"] == 3 * 72


def test_submitting_from_outside_the_repo_fails_with_one_line(cluster, tmp_path):
    (tmp_path / "logs").mkdir()
    job_id = cluster.sbatch(*CPU_JOB, ROOT / "slurm" / "train.sh", cwd=tmp_path)
    job = cluster.wait(job_id)
    log = read_log(job_files(tmp_path, job_id)[1])
    assert job["JobState"] == "FAILED" and job["ExitCode"] == "2:0"
    assert log.strip() == (f"error: {tmp_path}/train_ddp.py not found: submit from the "
                           "repository root")
