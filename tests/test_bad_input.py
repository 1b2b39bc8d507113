"""Bad input: a one-line error naming the file and field, or a counted warning and the run goes
on."""
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from conftest import python
from vacancy.data import DataError, LabelSpace, read_csv, split, tokenize


def write(tmp_path, content, name="d.csv", mode="w"):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "the file is empty"),
    ("title,area\n", "has a header but no rows"),
    ("title,labels\nDev,programmer\n", "missing column\\(s\\) area; found 'title', 'labels'"),
    ("name,area\nDev,programmer\n", "missing column\\(s\\) title"),
    ("title;area\nDev;programmer\n", "does not look comma-separated"),
    ("title,area\n,\n  ,  \n", "no row has both a title and an area"),
    (b"title,area\nDev,programmer\nD\xe9veloppeur,programmer\n", "line 3 is not valid UTF-8"),
    ('title,area\n"Dev,programmer\nQA,qa\n', "cannot parse as CSV"),
])
def test_unusable_csv_gives_one_clear_error(tmp_path, content, message):
    path = tmp_path / "missing.csv" if content is None else write(tmp_path, content)
    with pytest.raises(DataError, match=message) as e:
        read_csv(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_messy_but_usable_csv_is_read(tmp_path, caplog):
    raw = ("\ufefftitle,area,source\r\nSenior QA!,  QA   Devops ,a\r\n,qa,b\r\nDev,   ,c\r\n"
           "nan,qa,d\r\nDev,programmer,e\r\ndev,PROGRAMMER,f\r\n")
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        df = read_csv(write(tmp_path, raw.encode("utf-8")))
    assert df["title"].tolist() == ["senior qa", "nan", "dev", "dev"]  # "nan" is a title here
    assert df["labels"].tolist() == [["devops", "qa"], ["qa"], ["programmer"], ["programmer"]]
    assert "dropped 2 row(s) with an empty title (1) or area (1)" in caplog.text
    assert "1 row(s) repeat an earlier title" in caplog.text


def test_label_edge_cases_are_warned_and_counted(caplog):
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        space = LabelSpace.fit([["qa"], ["qa"], ["devops", "qa"]])
        space.encode([["owner"], ["qa", "owner", "hr"]], "val")
        LabelSpace.fit([["qa"], ["qa"]])
    assert "train: 1 label(s) have a single example (devops)" in caplog.text
    assert "val: dropped 3 occurrence(s) of 2 label(s) not seen in train: hr, owner" in caplog.text
    assert "every title has the same label (qa)" in caplog.text


def test_too_few_rows_for_the_split():
    import pandas as pd
    df = pd.DataFrame({"title": list("abcdefghi"), "labels": [["x"]] * 9})
    with pytest.raises(DataError, match="d.csv: 9 usable row\\(s\\); .* needs at least 10"):
        split(df, path="d.csv")


def test_long_titles_are_truncated_and_counted(tiny_model, caplog):
    from vacancy.model import load_tokenizer
    tokenizer = load_tokenizer(str(tiny_model))
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        ids = tokenize(tokenizer, ["java developer", "very " * 100 + "long title"], 16, "train")
    assert [len(x) for x in ids] == [4, 16]
    assert "train: 1 title(s) longer than 16 tokens were truncated" in caplog.text


def cli_error(*args, **env):
    proc = python("train_ddp.py", *args, check=False, timeout=300, **env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith("error: "), proc.stderr
    return lines[-1]


def test_cli_bad_data_is_one_line(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    error_file = tmp_path / "error.json"  # what torchrun sets for each worker
    line = cli_error("--data", tmp_path / "none.csv", "--output-dir", tmp_path / "run",
                     TORCHELASTIC_ERROR_FILE=str(error_file))
    assert line == f"error: {tmp_path / 'none.csv'}: no such file"
    # the same line is the cause in torchrun's summary (test_cli.py: under a real torchrun)
    failure = ProcessFailure(local_rank=0, pid=1, exitcode=2, error_file=str(error_file))
    assert f"traceback : {line}\n" in ChildFailedError("train_ddp.py", {0: failure}).format_msg()


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "epochs: must be >= 1, got -1"),
    (["--epochs", "2", "--freeze-epochs", "3"], "--freeze-epochs (3) is larger than --epochs (2)"),
    (["--model", "./models/nowhere"], "--model ./models/nowhere: no such directory"),
    (["--model", "bert-base-uncased"], "Hugging Face Hub is disabled (HF_HUB_OFFLINE=1)"),
])
def test_cli_bad_flags_are_one_line(tmp_path, small_csv, args, message):
    line = cli_error("--data", small_csv, "--output-dir", tmp_path / "run", *args)
    assert message in line
    if "Hub" in message:
        assert "--model DIR" in line


def test_cli_config_file_wrong_type_and_unknown_key(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": "three"}))
    assert "epochs: expected int, got 'three'" in cli_error("--config", cfg)
    cfg.write_text(json.dumps({"epoch": 3}))
    assert f"--config {cfg}: unknown key(s) epoch" in cli_error("--config", cfg)


def test_output_dir_of_another_run_is_refused(tmp_path, small_csv):
    (tmp_path / "run" / "last").mkdir(parents=True)  # it trained at least one epoch
    (tmp_path / "run" / "config.json").write_text("{}")
    line = cli_error("--data", small_csv, "--output-dir", tmp_path / "run")
    assert "holds another run: pass --resume to continue it or --overwrite" in line


# --- issue 28: data nothing can be learned from, run-level faults, degenerate ends of runs ---

def areas_csv(tmp_path, areas, name="d.csv"):
    """A CSV of distinct made-up titles with the given areas, one row each."""
    words = "java python senior junior lead data web cloud qa test devops admin sales".split()
    rows = [f"{words[i % 13]} {words[(i // 13) % 13]} engineer {i},{area}"
            for i, area in enumerate(areas)]
    return write(tmp_path, "title,area\n" + "\n".join(rows) + "\n", name)


@pytest.mark.parametrize("areas, message", [
    (["programmer"] * 40, "every train title has the same label set \\(programmer\\)"),
    (["qa Devops programmer"] * 40, "same label set \\(devops programmer qa\\)"),
    ([f"own_{i}" for i in range(40)], "no label has 2 train examples \\(of 28 labels, 28 train"),
])
def test_unlearnable_data_is_refused_in_one_line(tmp_path, areas, message):
    from vacancy.data import load_splits
    path = areas_csv(tmp_path, areas)
    with pytest.raises(DataError, match=message) as e:
        load_splits(str(path))
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


def test_no_val_or_test_title_with_a_train_label_is_refused():
    import numpy as np
    from vacancy.data import check_learnable
    labels = LabelSpace(["a", "b"])
    train = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    for empty in ("val", "test"):
        targets = {"train": train, "val": train[:2], "test": train[2:], empty: np.zeros((3, 2))}
        with pytest.raises(DataError, match=f"d.csv: no {empty} title has a label seen in train"):
            check_learnable(targets, labels, "d.csv")
    check_learnable({"train": train, "val": train, "test": train}, labels, "d.csv")  # fine


def test_a_few_unlearnable_labels_among_many_warn_and_go_on(tmp_path, caplog):
    from vacancy.data import load_splits
    areas = ["qa", "programmer", "qa programmer"] * 20 + ["rare_one", "rare_two"]
    with caplog.at_level(logging.WARNING, logger="vacancy"):
        data = load_splits(str(areas_csv(tmp_path, areas)))
    assert {"qa", "programmer"} <= set(data.labels.names)
    assert "have a single example" in caplog.text or "not seen in train" in caplog.text


def test_cached_preparation_is_checked_too(tmp_path, tiny_model):
    """A cache entry written before the check existed (or by hand) is refused the same way."""
    import numpy as np
    from vacancy.config import TrainConfig
    from vacancy.model import load_tokenizer
    from vacancy.prepared import PARTS, cache_key, prepare
    tokenizer = load_tokenizer(str(tiny_model))
    config = TrainConfig(data=str(areas_csv(tmp_path, ["qa", "dev"] * 20)),
                         output_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))
    prepare(config, tokenizer)  # writes the cache entry
    folder = tmp_path / "cache" / cache_key(config.data, tokenizer, config.max_length, 42)
    for part in PARTS:  # as if every train title had the one label "dev"
        targets = np.load(folder / f"{part}.targets.npy")
        np.save(folder / f"{part}.targets.npy", np.tile([[1, 0]], (len(targets), 1)))
    with pytest.raises(DataError, match="every train title has the same label set \\(dev\\)"):
        prepare(config, tokenizer)


def test_end_of_run_pieces_survive_one_label_and_many_labels(tmp_path):
    """evaluate (sklearn reads one column as binary), the TF-IDF part (a constant label and
    labels it cannot learn), the report and the plots (thousands of labels)."""
    import numpy as np
    from vacancy.ensemble import TfidfModel
    from vacancy.metrics import evaluate
    from vacancy.plots import write_plots
    rng = np.random.default_rng(0)
    metrics, report = evaluate(rng.random((8, 1)), np.ones((8, 1)), np.full(1, 0.5), ["only"])
    assert 0 < metrics["samples_f1"] <= 1 and "only" in report

    titles = ["java dev", "python dev", "qa tester", "qa lead", "java lead", "sales manager"]
    y = np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]], np.float32)
    model = TfidfModel.fit(titles, y)  # column 1: one positive; column 2: every title
    assert not model.coef[1:].any() and model.coef[0].any()
    assert model.intercept[1:] == pytest.approx(np.log([1.5 / 5.5, 6.5 / 0.5]), rel=1e-5)
    assert model.probs(["qa tester"])[0, 2] > 0.9

    n = 2000
    per_label = {f"l{j:04d}": {"precision": 0.5, "recall": 0.5, "f1": j / n, "support": 1,
                               "threshold": 0.5} for j in range(n)}
    y = rng.integers(0, 2, (50, n))
    _, report = evaluate(rng.random((50, n)), y, np.full(n, 0.5), list(per_label))
    assert len(report.splitlines()) < 80 and "(1940 of 2000 labels not shown" in report
    epochs = [{"epoch": 1, "phase": "unfrozen", "train_loss": 1.0, "val_loss": 1.0}]
    paths = write_plots(tmp_path, {"per_label": per_label, "epochs": epochs, "best_epoch": 1})
    from matplotlib.image import imread
    height = imread(paths["per_label_f1"]).shape[0]
    assert height < 100 * (1.5 + 0.28 * 60) + 50  # 60 bars, not 2000


def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=3)
    return BertForSequenceClassification(config)


class NoTokenizer:
    def save_pretrained(self, path):
        (Path(path) / "tokenizer.json").write_text("{}")


def assert_failed_write_keeps_the_previous(tmp_path, error):
    from vacancy import checkpoint
    message = str(error.value)
    assert message.startswith(f"{tmp_path}: cannot write ") and "\n" not in message
    assert "is kept" in message and "No space left on device" in message
    assert not list(tmp_path.glob("*.tmp"))
    meta = json.loads((tmp_path / checkpoint.BEST / "training_meta.json").read_text())
    assert meta == {"epoch": 1}
    assert checkpoint.load_last(tmp_path, tiny_bert()) == {"step": 1}


def test_full_disk_while_saving_is_one_line_and_keeps_the_previous(tmp_path, monkeypatch):
    import errno
    from vacancy import checkpoint
    model = tiny_bert()
    checkpoint.save_best(tmp_path, model, NoTokenizer(), {"epoch": 1})
    checkpoint.save_last(tmp_path, model, {"step": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(checkpoint, "save_model", full)
    monkeypatch.setattr(model, "save_pretrained", full)
    for save in (lambda: checkpoint.save_best(tmp_path, model, NoTokenizer(), {"epoch": 2}),
                 lambda: checkpoint.save_last(tmp_path, model, {"step": 2})):
        with pytest.raises(checkpoint.WriteError) as e:
            save()
        assert_failed_write_keeps_the_previous(tmp_path, e)


def test_full_disk_on_a_real_small_filesystem(tmp_path):
    """The same on a 1 MB tmpfs (root only), where safetensors and torch.save fail their way."""
    import subprocess
    from vacancy import checkpoint
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                            str(disk)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        model = tiny_bert()  # ~30 KB of weights
        checkpoint.save_best(disk, model, NoTokenizer(), {"epoch": 1})
        checkpoint.save_last(disk, model, {"step": 1})
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * (free - 8192))
        for save in (lambda: checkpoint.save_best(disk, model, NoTokenizer(), {"epoch": 2}),
                     lambda: checkpoint.save_last(disk, model, {"step": 2})):
            with pytest.raises(checkpoint.WriteError) as e:
                save()
            assert_failed_write_keeps_the_previous(disk, e)
    finally:
        subprocess.run(["umount", str(disk)])


def test_run_lock_refuses_live_holders_and_takes_stale_ones(tmp_path, monkeypatch, caplog):
    import socket
    import subprocess
    import sys
    from vacancy.config import ConfigError
    from vacancy.run_dir import LOCK_FILE, STALE_AFTER_S, RunLock
    lock = tmp_path / LOCK_FILE

    def held_by(**holder):
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                    "started": "then", **holder}))

    def take() -> RunLock:
        run_lock = RunLock(tmp_path)
        run_lock.acquire()
        return run_lock

    held_by()  # this very process: alive
    with pytest.raises(ConfigError, match=f"in use by another run \\(pid {os.getpid()} on "):
        take()
    held_by(host="elsewhere", pid=1)  # another host, touched just now: maybe alive
    with pytest.raises(ConfigError, match="pid 1 on elsewhere"):
        take()
    old = lock.stat().st_mtime - STALE_AFTER_S - 60
    os.utime(lock, (old, old))  # ...not touched for longer than STALE_AFTER_S: gone
    with caplog.at_level(logging.INFO, logger="vacancy"):
        take().release()
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
        held_by(pid=int(dead))  # this host, a process that has ended
        run_lock = take()
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        run_lock.release()
        assert not lock.exists()
        monkeypatch.setenv("SLURM_JOB_ID", "77")  # a requeued job: the holder is this job
        held_by(pid=1, slurm_job_id="77", host="node-b")
        take().release()
    assert "has not touched it for 11 min" in caplog.text
    assert f"a stale lock (its process (pid {dead} on" in caplog.text
    assert "taken over from an earlier attempt of this run" in caplog.text


def test_resume_checks_data_labels_and_model(tmp_path):
    from vacancy.config import ConfigError
    from vacancy.run_dir import check_same_run
    run = {"data": "a.csv", "data_key": "k1", "labels": ["dev", "qa"], "model": "minilm"}
    check_same_run(tmp_path, False, run)  # a new run records them
    check_same_run(tmp_path, True, run)  # the same: goes on
    for change, message in [
        ({"data_key": "k2"}, "other data: a.csv's content, --max-length or --split-seed differ"),
        ({"data_key": "k2", "labels": ["dev", "ops"]},
         "other labels: 1 new \\(ops\\), 1 gone \\(qa\\); pass the run's --data"),
        ({"model": "bert"}, "other model: --model bert, the run's: minilm"),
    ]:
        with pytest.raises(ConfigError, match=f"--resume: {tmp_path} was trained with {message}"):
            check_same_run(tmp_path, True, {**run, **change})


def tiny_run(data, out, model, *extra) -> list[str]:
    return ["--data", str(data), "--model", str(model), "--output-dir", str(out), "--epochs", "1",
            "--freeze-epochs", "0", "--batch-size", "8", "--cache-dir", str(out.parent / "cache"),
            *extra]


def main_in_process(args, capsys) -> tuple[int, str, list[str]]:
    """train_ddp.main in this process: (exit status, stdout, stderr lines)."""
    import train_ddp
    code = train_ddp.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def degenerate_csv(tmp_path, name="odd.csv", rare=True):
    """Two labels, a third ("rare") on two train titles and a val title that has every label:
    absent from test."""
    from vacancy.data import read_csv
    areas = ["qa", "programmer", "qa programmer"] * 20
    parts = split(read_csv(areas_csv(tmp_path, areas, name)))
    by_title = {title: i for i, title in enumerate(read_csv(tmp_path / name)["title"])}
    if rare:
        for title in parts.train["title"][:2]:
            areas[by_title[title]] += " rare"
        areas[by_title[parts.val["title"][0]]] = "qa programmer rare"
    return areas_csv(tmp_path, areas, name)


def test_degenerate_data_runs_to_the_end_then_resume_checks_and_a_late_crash(
        tmp_path, tiny_model, capsys, monkeypatch):
    """One tiny run through every end-of-run step (TF-IDF and kNN mix, evaluation, report,
    plots, W&B offline) on a label absent from test and a title with every label,
    started over a stale lock; then --resume on changed data, and a crash after training."""
    import subprocess
    import sys
    from vacancy.run_dir import LOCK_FILE
    data, out = degenerate_csv(tmp_path), tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    import socket
    (out / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead),
                                             "started": "earlier"}))
    monkeypatch.setenv("WANDB_MODE", "offline")
    code, stdout, err = main_in_process(tiny_run(data, out, tiny_model, "--wandb", "offline"),
                                        capsys)
    assert code == 0, err
    assert f"warning: {out / LOCK_FILE}: a stale lock (its process (pid {dead} on" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_label"]["rare"]["support"] == 0 and "mix_test_micro_f1" in metrics
    for name in ("report.txt", "loss.png", "per_label_f1.png", "best/decision.json", "run.json"):
        assert (out / name).exists(), name
    assert list((out / "wandb").glob("offline-run-*")) and not (out / LOCK_FILE).exists()

    # --resume on data whose labels changed: one line that says so, before any checkpoint loads
    degenerate_csv(tmp_path, rare=False)
    code, _, err = main_in_process(tiny_run(data, out, tiny_model, "--resume"), capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: --resume: {out} was trained with other labels: 1 gone "
                             "(rare)")

    # the run's data again: resuming the finished run re-evaluates it; a crash in the plots
    degenerate_csv(tmp_path)
    import vacancy.run

    def broken(*args):
        raise ValueError("no room for the bars")
    monkeypatch.setattr(vacancy.run, "write_plots", broken)
    code, _, err = main_in_process(tiny_run(data, out, tiny_model, "--resume", "--ensemble",
                                            "off", "--wandb", "off"), capsys)
    assert code == 1 and len(err) == 1, err
    assert err[0] == (f"error: the plots failed after training (ValueError: no room for the "
                      f"bars); {out / 'best'} is saved; the traceback is in {out / 'train.log'}")
    assert (out / "best" / "model.safetensors").exists()
    assert "Traceback" in (out / "train.log").read_text()


def test_second_run_into_a_live_run_dir_is_refused(tmp_path, tiny_model, capsys):
    """Two real processes: the first trains, the second is refused at once naming it, and the
    first ends as if alone."""
    import subprocess
    import sys
    import time
    from conftest import ROOT, read_jsonl, run_env
    from vacancy.run_dir import LOCK_FILE
    data, out = areas_csv(tmp_path, ["qa", "programmer", "qa programmer"] * 14), tmp_path / "run"
    first = subprocess.Popen([sys.executable, "train_ddp.py",
                              *tiny_run(data, out, tiny_model, "--ensemble", "off", "--wandb",
                                        "off", "--batch-size", "4")],
                             cwd=ROOT, env=run_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / LOCK_FILE).exists() and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        code, _, err = main_in_process(tiny_run(data, out, tiny_model), capsys)
        assert code == 2 and len(err) == 1
        assert err[0].startswith(f"error: --output-dir {out} is in use by another run (pid "
                                 f"{first.pid} on ")
        log, _ = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, log
    assert "starting it over" not in log
    assert [r["epoch"] for r in read_jsonl(out / "history.jsonl") if r["kind"] == "epoch"] == [1]
    assert not (out / LOCK_FILE).exists()


def test_full_disk_in_a_deepspeed_checkpoint_keeps_the_previous_tag(tmp_path):
    """DeepSpeed's save_checkpoint on a full disk: one line, the partial tag removed, `latest`
    and the tag it names untouched (a stand-in engine: no DeepSpeed start-up)."""
    import errno
    from vacancy.checkpoint import WriteError
    from vacancy.deepspeed_engine import CKPT_DIR, DeepSpeedEngine
    folder = tmp_path / CKPT_DIR
    (folder / "epoch1").mkdir(parents=True)
    (folder / "epoch1" / "mp_rank_00_model_states.pt").write_bytes(b"saved")
    (folder / "latest").write_text("epoch1")

    class FullDisk:
        def save_checkpoint(self, save_dir, tag, client_state):
            (Path(save_dir) / tag).mkdir()
            (Path(save_dir) / tag / "mp_rank_00_model_states.pt").write_bytes(b"par")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    engine = object.__new__(DeepSpeedEngine)
    engine.ds = FullDisk()
    with pytest.raises(WriteError, match=f"{folder}: cannot write epoch2/ \\(No space left on "
                                         "device.*`latest` still names the previous tag"):
        engine.save_last(tmp_path, json.dumps({"epoch": 2, "in_epoch": {}}))
    assert sorted(p.name for p in folder.iterdir()) == ["epoch1", "latest"]
    assert (folder / "epoch1" / "mp_rank_00_model_states.pt").read_bytes() == b"saved"
