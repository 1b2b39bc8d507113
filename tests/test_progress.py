"""Progress in a log file: plain lines at intervals, with step, mean loss and samples/s."""
import logging

import torch

from vacancy import progress
from vacancy.progress import Progress


def test_log_file_progress_is_a_line_per_ten_percent_or_minute(monkeypatch, caplog):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    bar = Progress("epoch 2", total=100, interactive=False)
    with caplog.at_level(logging.INFO, logger="vacancy"):
        for i in range(100):
            clock[0] += 1.0  # one batch a second: 10% every 10 s
            bar.update(32, torch.tensor(0.5 if i < 10 else 0.25), step=i + 1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 9  # 10% ... 90%; the epoch's own line follows the last batch
    assert lines[0] == "epoch 2: batch 10/100 (10%), step 10, loss 0.5000, 32.0 samples/s"
    assert lines[1] == "epoch 2: batch 20/100 (20%), step 20, loss 0.2500, 32.0 samples/s"


def test_slow_epochs_get_a_line_a_minute_and_fast_ones_none(monkeypatch, caplog):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="vacancy"):
        slow = Progress("epoch 1", total=1000, interactive=False)
        for i in range(20):
            clock[0] += 7.0
            slow.update(8, torch.tensor(1.0), step=i)
        assert [r.getMessage().split(",")[0] for r in caplog.records] == \
            ["epoch 1: batch 9/1000 (0%)", "epoch 1: batch 18/1000 (1%)"]
        caplog.clear()
        fast = Progress("epoch 1", total=1000, interactive=False)
        for i in range(1000):
            clock[0] += 0.001
            fast.update(8, torch.tensor(1.0), step=i)
        assert not caplog.records
        Progress("epoch 1", total=10, enabled=False, interactive=False).update(
            8, torch.tensor(1.0), step=0)  # ranks other than 0: silent
        assert not caplog.records
