"""Faults: killed saves, killed ranks, resume, non-finite losses, unsafe checkpoints,
determinism."""
import json
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY_RUN, flags, python, read_jsonl, run_env, torchrun
from vacancy import checkpoint
from vacancy.checkpoint import CheckpointError
from vacancy.config import TrainConfig
from vacancy.engine import DDPEngine
from vacancy.model import load_model
from vacancy.trainer import MAX_BAD_STEPS, Trainer, TrainingError


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.3, 0.7, 1.1, 1.6])
def test_kill_during_save_leaves_the_previous_checkpoints_loadable(tmp_path, tiny_model, delay):
    from transformers import AutoModelForSequenceClassification
    proc = subprocess.Popen([sys.executable, "tests/checkpoint_writer.py", str(tiny_model),
                             str(tmp_path)], cwd=ROOT, env=run_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    while proc.stdout.readline().strip() != "1":  # wait until one complete version exists
        assert proc.poll() is None, "checkpoint writer died"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoint.recover(tmp_path)  # what the next start does
    best = AutoModelForSequenceClassification.from_pretrained(tmp_path / "best")
    meta = json.loads((tmp_path / "best" / "training_meta.json").read_text())
    assert best.classifier.bias[0].item() == meta["epoch"] >= 1  # weights and meta agree
    model = load_model(str(tiny_model), ["a", "b"])
    state = checkpoint.load_last(tmp_path, model)
    assert model.classifier.bias[0].item() == state["version"] >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "last"]


def kill_rank_1_in_epoch_2(restart: str, args: list[str], out, before_relaunch=None):
    """Rank 1 is SIGKILLed halfway through epoch 2. `torchrun --max-restarts 1` restarts both
    workers in place, and they resume on their own; or the job is launched again with --resume,
    as a user (or a Slurm requeue: tests/test_slurm.py) would. Returns the run that finished."""
    if restart == "torchrun":
        return torchrun(2, "tests/instrumented_train.py", *args, timeout=300,
                        extra_torchrun=("--max-restarts", "1"), VACANCY_FAULT="kill:1:2")
    killed = torchrun(2, "tests/instrumented_train.py", *args, check=False, timeout=300,
                      VACANCY_FAULT="kill:1:2")
    assert killed.returncode != 0 and not (out / "metrics.json").exists()
    if before_relaunch:
        before_relaunch()
    return torchrun(2, "tests/instrumented_train.py", *args, "--resume", timeout=300)


@pytest.mark.parametrize("restart", ["torchrun", "relaunch"])
def test_killed_rank_resumes_and_ends_like_an_uninterrupted_run(restart, tmp_path, ddp_run,
                                                                tiny_model, small_csv):
    out = tmp_path / "run"
    args = flags(data=small_csv, model=tiny_model, output_dir=out, **TINY_RUN)
    proc = kill_rank_1_in_epoch_2(restart, args, out)
    assert "resumed from" in proc.stdout and "at epoch 1 " in proc.stdout, proc.stdout[-3000:]
    resumed = json.loads((out / "metrics.json").read_text())
    straight = json.loads((ddp_run / "metrics.json").read_text())
    assert resumed["optimizer_steps"] == straight["optimizer_steps"]
    for key in ("micro_f1", "macro_f1", "samples_f1", "best_val_loss", "best_epoch", "per_label"):
        assert resumed[key] == straight[key], key
    assert [e["val_loss"] for e in resumed["epochs"]] == [e["val_loss"] for e in straight["epochs"]]
    # the history reads as one run: every step record once, in order
    steps = [r["step"] for r in read_jsonl(out / "history.jsonl") if r["kind"] == "step"]
    assert steps == [r["step"] for r in read_jsonl(ddp_run / "history.jsonl")
                     if r["kind"] == "step"]


@pytest.mark.parametrize("restart", ["torchrun", "relaunch"])
def test_killed_mid_epoch_resumes_from_its_last_step(restart, tmp_path, ddp_run, tiny_model,
                                                     small_csv):
    # As above, but last/ is also written every 4 optimizer steps: the run goes on from the last
    # of those inside epoch 2, not from the end of epoch 1, and still ends exactly like ddp_run
    # (which saved only at epoch ends): same steps, dropout, train loss means and metrics.
    out = tmp_path / "run"
    # a step record every step, so the history can be checked step by step
    args = flags(data=small_csv, model=tiny_model, output_dir=out, save_every_steps=4,
                 log_every=1, **TINY_RUN)

    def before_relaunch():  # the position inside the epoch is per rank: another world size is
        wrong = python("train_ddp.py", *args, "--resume", check=False)  # refused
        assert wrong.returncode == 2 and wrong.stderr.strip().splitlines()[-1] == (
            f"error: {out}/last was saved inside epoch 2 by 2 process(es): resume it with 2, "
            "not 1"), wrong.stderr[-3000:]

    proc = kill_rank_1_in_epoch_2(restart, args, out, before_relaunch)
    straight = json.loads((ddp_run / "metrics.json").read_text())
    per_epoch = straight["optimizer_steps"] // TINY_RUN["epochs"]
    killed_at = per_epoch + per_epoch // 2  # instrumented_train.py: halfway through epoch 2
    saved_at = killed_at // 4 * 4
    assert per_epoch < saved_at < killed_at  # the test means something only if this holds
    batches = (saved_at - per_epoch) * TINY_RUN["grad_accum"]
    assert (f"resumed from {out}/last at epoch 1 (step {saved_at}), {batches} batches into "
            "epoch 2") in proc.stdout, proc.stdout[-3000:]
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["optimizer_steps"] == straight["optimizer_steps"]
    for key in ("micro_f1", "macro_f1", "samples_f1", "best_val_loss", "best_epoch", "per_label"):
        assert resumed[key] == straight[key], key
    for key in ("train_loss", "val_loss", "val_micro_f1"):
        assert [e[key] for e in resumed["epochs"]] == [e[key] for e in straight["epochs"]], key
    steps = [r["step"] for r in read_jsonl(out / "history.jsonl") if r["kind"] == "step"]
    assert steps == list(range(1, straight["optimizer_steps"] + 1))
    # the same weights after every epoch as the uninterrupted run, on every rank
    for rank in (0, 1):
        name = f"weight_hashes.rank{rank}.jsonl"
        assert read_jsonl(out / name)[-1] == read_jsonl(ddp_run / name)[-1]


def test_resume_of_a_finished_run_is_harmless(tmp_path, ddp_run, small_csv, tiny_model):
    out = tmp_path / "run"
    shutil.copytree(ddp_run, out)
    before = json.loads((out / "metrics.json").read_text())
    python("train_ddp.py", *flags(data=small_csv, model=tiny_model, output_dir=out, resume=True,
                                  **TINY_RUN))
    after = json.loads((out / "metrics.json").read_text())
    assert after["optimizer_steps"] == before["optimizer_steps"]
    assert after["epochs"] == before["epochs"]
    assert len(read_jsonl(out / "history.jsonl")) == len(read_jsonl(ddp_run / "history.jsonl"))


@pytest.mark.slow
def test_failing_rank_ends_the_job_promptly_with_its_error(tmp_path, tiny_model, small_csv):
    # The collective timeout is 30 min: finishing at all within the subprocess timeout shows that
    # torchrun tore the job down instead of leaving rank 0 waiting in a collective.
    proc = torchrun(2, "tests/instrumented_train.py",
                    *flags(data=small_csv, model=tiny_model, output_dir=tmp_path / "run",
                           **TINY_RUN),
                    check=False, timeout=240, VACANCY_FAULT="raise:1:2")
    assert proc.returncode != 0
    assert "injected failure on rank 1 in epoch 2" in proc.stderr
    assert (tmp_path / "run" / "best" / "config.json").exists()  # epoch 1's best survived


@pytest.fixture
def engine(tiny_model):
    model = load_model(str(tiny_model), ["a", "b"])
    engine = DDPEngine(model, TrainConfig(precision="fp32"), torch.device("cpu"), [100])
    engine.set_trainable(None)
    return engine


def batch():
    return {"input_ids": torch.tensor([[101, 2000, 102]]),
            "attention_mask": torch.ones(1, 3, dtype=torch.long),
            "labels": torch.tensor([[1.0, 0.0]])}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])  # fp16: GradScaler's path
def test_non_finite_step_is_skipped_and_counted(tiny_model, precision):
    model = load_model(str(tiny_model), ["a", "b"])
    engine = DDPEngine(model, TrainConfig(precision=precision), torch.device("cpu"), [100])
    engine.set_trainable(None)
    before = engine.model.classifier.weight.detach().clone()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(engine.forward(batch()),
                                                                batch()["labels"])
    engine.backward(loss * float("nan"))
    out = engine.step()
    assert out["skipped"].item() and not torch.isfinite(out["grad_norm"]).item()
    assert torch.equal(engine.model.classifier.weight, before)
    assert engine.optimizer.state[engine.model.classifier.weight]["step"].item() == 0
    engine.backward(torch.nn.functional.binary_cross_entropy_with_logits(
        engine.forward(batch()), batch()["labels"]))
    assert not engine.step()["skipped"].item()
    assert not torch.equal(engine.model.classifier.weight, before)


def test_loss_that_stays_non_finite_stops_the_run(engine, tmp_path):
    trainer = Trainer(engine, TrainConfig(), [], None, 0, tmp_path, None)
    bad = {"skipped": True, "grad_norm": float("nan"), "loss_scale": 1.0}
    nan = torch.tensor(float("nan"))
    for _ in range(MAX_BAD_STEPS - 1):
        trainer._after_step(bad, nan, {})
    assert trainer._log_steps()["skipped"] == MAX_BAD_STEPS - 1  # a record every N steps...
    assert trainer.state.skipped_steps == MAX_BAD_STEPS - 1
    trainer._after_step({**bad, "skipped": False}, torch.tensor(0.5), {})
    for _ in range(MAX_BAD_STEPS - 1):
        trainer._after_step(bad, nan, {})
    trainer._log_steps()  # ...a good step broke the run of bad ones
    trainer._after_step(bad, nan, {})
    with pytest.raises(TrainingError, match=f"the last {MAX_BAD_STEPS} optimizer steps had "
                                            "non-finite gradients"):
        trainer._log_steps()  # ...which is checked step by step when they are read


class Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_checkpoints_never_unpickle_arbitrary_objects(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = load_model(str(tiny_model), ["a", "b"])
    checkpoint.save_last(tmp_path, model, {"step": 1})
    with open(tmp_path / "last" / checkpoint.STATE_FILE, "wb") as f:
        pickle.dump({"step": Evil()}, f)
    with pytest.raises(CheckpointError, match="refusing to load"):
        checkpoint.load_last(tmp_path, model)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_same_seed_same_data_same_metrics(tmp_path, tiny_model, small_csv):
    runs = []
    for name in ("a", "b"):
        python("train_ddp.py", *flags(data=small_csv, model=tiny_model, output_dir=tmp_path / name,
                                      epochs=2, freeze_epochs=1, batch_size=32))
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    for key in ("micro_f1", "macro_f1", "best_val_loss", "per_label"):
        assert runs[0][key] == runs[1][key], key
    losses = [[e["train_loss"] for e in run["epochs"]] for run in runs[:2]]
    assert losses[0] == losses[1]
