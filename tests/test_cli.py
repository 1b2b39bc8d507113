"""The first ten minutes of a new user: no traps, every mistake answered at once in one line.

(The output of a real 2-process run, one speaker in our own words: tests/test_wandb.py.)
"""
import socket
import threading

import pytest

from conftest import flags, python, torchrun
from test_bad_input import cli_error


@pytest.mark.slow
def test_a_run_that_failed_before_training_does_not_block_the_same_command(
        tmp_path, tiny_model, small_csv):
    out = tmp_path / "run"
    data = tmp_path / "my.csv"
    args = flags(data=data, model=tiny_model, output_dir=out, epochs=1, freeze_epochs=1,
                 batch_size=32, wandb="off")
    assert cli_error(*args) == f"error: {data}: no such file"  # fails after start-up...
    assert (out / "config.json").exists()  # ...once the run directory was set up
    data.write_bytes(small_csv.read_bytes())
    proc = python("train_ddp.py", *args, timeout=300)  # the same command, no --overwrite
    assert "ended before its first epoch; starting it over" in proc.stdout
    assert (out / "metrics.json").exists() and (out / "best").is_dir()
    # a run that trained something is still protected
    assert "holds another run" in cli_error(*args)


def test_deepspeed_missing_is_one_line_naming_the_install_command(tmp_path, small_csv):
    code = ("import sys; sys.modules['deepspeed'] = None; import train_ddp; "  # not installed
            "sys.exit(train_ddp.main(sys.argv[1:]))")
    proc = python("-c", code, "--data", small_csv, "--output-dir", tmp_path / "run",
                  "--deepspeed", "ds_config_cpu.json", check=False, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == ("error: --deepspeed needs DeepSpeed, which is not installed: "
                                   "pip install deepspeed (or bash scripts/setup.sh --dev)")
    assert not (tmp_path / "run").exists()  # found before any model loads or file is written


def test_deepspeed_config_conflicts_come_before_any_model_loads(tmp_path, small_csv):
    line = cli_error("--data", small_csv, "--output-dir", tmp_path / "run", "--deepspeed",
                     "ds_config_cpu.json", "--batch-size", "8", "--precision", "fp16")
    assert line == ("error: --deepspeed ds_config_cpu.json: fp16 needs a GPU; on CPU pass "
                    "--precision bf16 or fp32 (or use ds_config_cpu.json)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("typo, flag", [("--epoch", "--epochs"), ("--batch", "--batch-size")])
def test_abbreviated_flags_are_errors(tmp_path, typo, flag):
    line = cli_error(typo, "2", "--output-dir", tmp_path / "run")
    assert line == (f"error: unrecognized arguments: {typo} 2 (python train_ddp.py --help "
                    "lists the flags)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module, args, abbreviation", [
    ("vacancy.baseline", ["--data", "x.csv", "--output-dir", "o", "--over"], "--over"),
    ("vacancy.predict", ["--model", "m", "--thresh", "0.5", "title"], "--thresh"),
    ("vacancy.evaluate", ["--model", "m", "--data", "x.csv", "--part", "val", "--spl", "1"],
     "--spl"),
    ("vacancy.synth", ["--out", "x.csv", "--row", "5"], "--row"),
    ("vacancy.compare", ["run", "--cha", "x.png"], "--cha"),
])
def test_module_clis_refuse_abbreviations(module, args, abbreviation):
    proc = python("-m", module, *args, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"unrecognized arguments: {abbreviation}" in proc.stderr


def test_errors_name_the_flag_as_typed_and_the_file_key_as_written(tmp_path):
    assert cli_error("--batch-size", "0").endswith("error: --batch-size: must be >= 1, got 0")
    cfg = tmp_path / "c.json"
    cfg.write_text('{"batch_size": 0}')
    assert cli_error("--config", cfg) == "error: batch_size: must be >= 1, got 0"
    cfg.write_text('{"freeze_epochs": 2}')
    assert cli_error("--config", cfg, "--epochs", "1") == \
        "error: freeze_epochs (2) is larger than --epochs (1)"
    assert cli_error("--epochs", "1", "--freeze-epochs", "2") == \
        "error: --freeze-epochs (2) is larger than --epochs (1)"
    assert "argument --precision: invalid choice: 'fp8'" in cli_error("--precision", "fp8")


def test_a_typo_under_torchrun_is_the_cause_in_torchruns_summary(tmp_path):
    """After a worker exits 2, torchrun prints ~40 lines of its own: a traceback of torchrun and
    its ChildFailedError summary. That summary's cause, for every rank, is our line."""
    proc = torchrun(2, "train_ddp.py", "--epoch", "2", "--output-dir", tmp_path / "run",
                    check=False, timeout=300)
    line = "error: unrecognized arguments: --epoch 2 (python train_ddp.py --help lists the flags)"
    assert proc.returncode != 0
    assert [x for x in proc.stderr.splitlines() if x.startswith("error: ")] == [line]  # rank 0
    failures, root_cause = proc.stderr.split("Root Cause (first observed failure):")
    assert f"traceback : {line}" in failures.split("Failures:")[1]  # rank 1
    assert f"traceback : {line}" in root_cause  # rank 0
    assert "<N/A>" not in proc.stderr  # each rank's error file was read
    assert 'train_ddp.py", line' not in proc.stderr and "vacancy/" not in proc.stderr


def test_help_lists_every_choice_and_no_empty_default():
    out = python("train_ddp.py", "--help").stdout
    for choices in ("{all,gradual}", "{auto,fp16,bf16,fp32}", "{auto,off,offline,online}"):
        assert choices in out
    assert "(default: )" not in out and "(default: False)" not in out


class BlackHole:
    """A TCP port that accepts connections and never answers: a Hub behind a dead network."""

    def __enter__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        threading.Thread(target=self._hold, daemon=True).start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _hold(self):
        self.sock.settimeout(0.2)
        held = []
        while not self.stop.is_set():
            try:
                held.append(self.sock.accept()[0])
            except OSError:
                pass
        for conn in held:
            conn.close()

    def __exit__(self, *exc):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("network", ["no DNS", "silent"])
def test_unreachable_hub_fails_at_once_without_retries(tmp_path, small_csv, network):
    """Before: ~50 s of huggingface_hub's `Retrying in 8s [Retry 5/5]`. Now one probe with a
    3 s timeout, then offline mode. Timed from after the imports, which alone take tens of
    seconds on a busy 2-core machine: the bound is far under one retry loop."""
    from contextlib import nullcontext
    code = ("import sys, time, huggingface_hub, vacancy.run, train_ddp; t = time.perf_counter(); "
            "rc = train_ddp.main(sys.argv[1:]); print(f'{time.perf_counter() - t:.2f}'); "
            "sys.exit(rc)")
    with (BlackHole() if network == "silent" else nullcontext("http://hub.invalid")) as endpoint:
        proc = python("-c", code, "--data", small_csv, "--model", "bert-base-uncased",
                      "--output-dir", tmp_path / "run", check=False, timeout=300,
                      HF_HUB_OFFLINE="", HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode == 2 and "Retry" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.stderr.strip() == (
        "error: --model bert-base-uncased: not a local directory and the Hugging Face Hub is "
        "unreachable; download it where the Hub is reachable (huggingface-cli download NAME "
        "--local-dir DIR) and pass --model DIR, or use --model minilm")
    assert float(proc.stdout.split()[-1]) < 15
    assert not (tmp_path / "run").exists()
