"""Shared fixtures: a tiny real encoder, small synthetic data, and one 2-process training run that
several tests read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    env.update(extra)
    return env


def torchrun(nproc: int, script: str, *args, check: bool = True, timeout: int = 600,
             extra_torchrun=(), **env) -> subprocess.CompletedProcess:
    """Run a script under a real `torchrun --standalone` (gloo on CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", *extra_torchrun, script, *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=run_env(**env), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def python(*args, check: bool = True, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=run_env(**env),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 cut to its first layer: real embeddings and tokenizer, ~3x faster."""
    from transformers import AutoModel, AutoTokenizer
    from vacancy.model import resolve_model
    path = tmp_path_factory.mktemp("tiny_model")
    src = resolve_model("minilm")
    AutoModel.from_pretrained(src, num_hidden_layers=1).save_pretrained(path)
    AutoTokenizer.from_pretrained(src).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory) -> Path:
    from vacancy.synth import main
    path = tmp_path_factory.mktemp("data") / "small.csv"
    main(["--rows", "800", "--seed", "1", "--out", str(path)])
    return path


# The transformer alone: the distributed, fault and engine tests compare its numbers between runs
# (tests/test_ensemble.py trains one run with the TF-IDF mix, which happens on rank 0 at the end).
TINY_RUN = dict(epochs=3, freeze_epochs=1, batch_size=8, grad_accum=2, lr=1e-3, head_lr=1e-2,
                layer_lr_decay=0.5, ensemble="off")


def logged_steps(total: int, per_epoch: int, every: int = 10) -> list[int]:
    """The steps that get a step record: every `every` steps (--log-every's default) and the last
    step of each epoch."""
    return [s for s in range(1, total + 1) if s % every == 0 or s % per_epoch == 0]


def flags(**values) -> list[str]:
    out = []
    for k, v in values.items():
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, str(v)]
    return out


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory, tiny_model, small_csv) -> Path:
    """One real 2-process torchrun training of the tiny model; records per-rank weight hashes."""
    out = tmp_path_factory.mktemp("ddp_run") / "run"
    proc = torchrun(2, "tests/instrumented_train.py",
                    *flags(data=small_csv, model=tiny_model, output_dir=out, **TINY_RUN))
    (out.parent / "stdout.txt").write_text(proc.stdout)  # beside the run: not one of its files
    return out


# The fixtures that train models (the baseline's included) for the tests that read them: every
# test that uses one is `slow`, as are the tests marked so by hand, which train, compile, kill
# processes or launch torchrun, DeepSpeed or Slurm themselves. `python -m pytest -q -m "not slow"`
# runs the rest, in about 2 minutes (README.md, Tests).
TRAINING_FIXTURES = {"ddp_run", "mixed_run", "ds_run", "wandb_run", "cluster", "baselines"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
