"""Progress within an epoch: a live bar on a terminal, plain lines in a log file.

In a log file (`> log`, sbatch, nohup) a redrawn bar never shows anything but its first frame,
so there a line is written every `EVERY_PERCENT` of the epoch or `EVERY_S` seconds, whichever
comes first, but not within `MIN_GAP_S` of the previous one nor at the last batch (the epoch's
own line follows). The loss shown is the mean over the micro batches since the last line or
redraw; it is summed on the device and read (a host sync) only when it is shown.
"""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("vacancy")
EVERY_PERCENT = 10
EVERY_S = 60.0
MIN_GAP_S = 5.0  # a fast epoch is not worth a line per 10%: its epoch line follows at once
REDRAW_S = 0.5  # the bar's loss is read at most this often


class Progress:
    """One epoch's progress, shown by rank 0 (`enabled`); `interactive`: stderr is a terminal."""

    def __init__(self, desc: str, total: int, enabled: bool = True,
                 interactive: bool | None = None, done: int = 0) -> None:
        """`done`: batches already behind (an epoch resumed from a mid-epoch checkpoint)."""
        self.desc, self.total, self.enabled = desc, total, enabled
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.done = done
        self._since_shown()
        self.bar = None
        if enabled and self.interactive:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=done, desc=desc, leave=False, dynamic_ncols=True)

    def _since_shown(self) -> None:
        self.last_time, self.last_done = time.perf_counter(), self.done
        self.loss_sum, self.samples = 0.0, 0

    def update(self, samples: int, loss, step: int) -> None:
        """One micro batch of `samples` (all ranks together) with mean `loss` (a tensor)."""
        if not self.enabled:
            return
        self.done += 1
        self.loss_sum = loss.detach() * samples + self.loss_sum  # on the device: no sync
        self.samples += samples
        elapsed = time.perf_counter() - self.last_time
        if self.bar is not None:
            self.bar.update()
            if elapsed >= REDRAW_S:
                self.bar.set_postfix(loss=f"{self._mean_loss():.4f}", refresh=False)
                self._since_shown()
            return
        step_percent = max(1, self.total * EVERY_PERCENT // 100)
        crossed = self.done // step_percent > self.last_done // step_percent
        if self.done < self.total and (elapsed >= EVERY_S or (elapsed >= MIN_GAP_S and crossed)):
            log.info("%s: batch %d/%d (%d%%), step %d, loss %.4f, %.1f samples/s", self.desc,
                     self.done, self.total, 100 * self.done // self.total, step,
                     self._mean_loss(), self.samples / max(elapsed, 1e-9))
            self._since_shown()

    def _mean_loss(self) -> float:
        return float(self.loss_sum) / max(1, self.samples)  # float(): waits for the device

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TagProgress:
    """Tagging a file: rows done, the share of them that were distinct titles to score, rows/s.
    A bar on a terminal, redrawn as titles are scored; in a log file a line per chunk (not within
    `MIN_GAP_S` of the previous one) and one at the end. `total`: rows, where the format says it
    (Parquet), else the bar counts up without an end."""

    def __init__(self, desc: str, total: int | None = None, enabled: bool = True,
                 interactive: bool | None = None, done: int = 0) -> None:
        """`done`: rows already tagged (a resumed run)."""
        self.desc, self.total, self.enabled = desc, total, enabled
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.rows, self.scored, self.start_rows = done, 0, done
        self.start = self.last_line = time.perf_counter()
        self.lined = None  # the row count of the last line written
        self.bar = None
        if enabled and self.interactive:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=done, desc=desc, unit=" rows", leave=False,
                            dynamic_ncols=True)

    def _rate(self) -> float:
        return (self.rows - self.start_rows) / max(time.perf_counter() - self.start, 1e-9)

    def _share(self) -> str:
        return f"{100 * self.scored / max(1, self.rows - self.start_rows):.0f}%"

    def scoring(self, done: int, todo: int) -> None:
        """Within a chunk: `done` of its `todo` new distinct titles scored."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"scoring {done}/{todo} new titles", refresh=True)

    def chunk(self, rows: int, scored: int) -> None:
        """A chunk of `rows` rows is written, `scored` of them distinct titles seen first here."""
        if not self.enabled:
            return
        self.rows += rows
        self.scored += scored
        if self.bar is not None:
            self.bar.update(rows)
            self.bar.set_postfix_str(f"{self._rate():.0f} rows/s, distinct {self._share()}")
        elif time.perf_counter() - self.last_line >= MIN_GAP_S:
            self._line()

    def _line(self) -> None:
        of = f"/{self.total} ({100 * self.rows // max(1, self.total)}%)" if self.total else ""
        log.info("%s: %d%s rows, %d distinct titles scored (%s), %.0f rows/s", self.desc,
                 self.rows, of, self.scored, self._share(), self._rate())
        self.last_line, self.lined = time.perf_counter(), self.rows

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.enabled and self.lined != self.rows:
            self._line()
