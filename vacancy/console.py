"""What a training run prints: rank 0 alone, in the project's own words.

The terminal gets our `vacancy` log lines (warnings prefixed `warning:`) and any library's errors.
Everything else that libraries report (transformers' LOAD REPORT tables, huggingface_hub notices,
Python warnings) goes to `train.log` in the run directory, beside a copy of our own lines. W&B is
started silent (tracking.py) and keeps its own logs under `wandb/`.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
from pathlib import Path

LOG_FILE = "train.log"
LIBRARY_LOGGERS = ("transformers", "huggingface_hub", "DeepSpeed")  # each has its own handler


class _Formatter(logging.Formatter):
    """Without terminal colour codes (transformers puts them in its reports); on the terminal,
    `warning: ` or `error: ` before the message at those levels."""

    def __init__(self, fmt: str, datefmt: str | None = None, level_prefix: bool = False) -> None:
        super().__init__(fmt, datefmt)
        self.level_prefix = level_prefix

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = re.sub(r"\x1b\[[0-9;]*m", "", super().formatMessage(record))
        if self.level_prefix and record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def _ours_or_error(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] == "vacancy" or record.levelno >= logging.ERROR


def setup_logging(main: bool) -> None:
    """Our lines to stdout, at INFO on rank 0 and errors only elsewhere; other loggers'
    warnings reach the root logger's handlers but not the terminal."""
    terminal = logging.StreamHandler(sys.stdout)
    terminal.setFormatter(_Formatter("%(message)s", level_prefix=True))
    terminal.addFilter(_ours_or_error)
    logging.basicConfig(level=logging.WARNING if main else logging.ERROR, handlers=[terminal],
                        force=True)
    logging.getLogger("vacancy").setLevel(logging.INFO if main else logging.ERROR)
    logging.captureWarnings(True)  # warnings.warn(...) -> the `py.warnings` logger, not stderr


def import_deepspeed() -> bool:
    """Import DeepSpeed; False if it is not installed. Its import prints an accelerator notice
    and gives its logger a stdout handler of its own: both land in a buffer here, and
    log_libraries_to then routes that logger like the others. Where DeepSpeed is installed,
    accelerate imports it at the first save_pretrained anyway, so this costs nothing extra."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import deepspeed  # noqa: F401
    except ImportError:
        return False
    return True


def log_libraries_to(run_dir: Path | None) -> None:
    """Route the libraries' own handlers through the root logger: to `run_dir/train.log` on
    rank 0 (with our lines), nowhere but errors on the other ranks (run_dir None)."""
    import transformers  # noqa: F401  (each adds its handler when imported: import them first)
    import_deepspeed()
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    if run_dir is not None:
        log_to_file(run_dir)


def log_to_file(run_dir: Path, mode: str = "a") -> None:
    """Copy what reaches the root logger (our lines, the libraries' reports, Python warnings) into
    `run_dir/train.log`; `mode` "a" keeps a resumed run's earlier lines."""
    file = logging.FileHandler(Path(run_dir) / LOG_FILE, mode=mode)
    file.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                 "%Y-%m-%d %H:%M:%S"))
    logging.getLogger().addHandler(file)


def close_log_file() -> None:
    """Close train.log (a run called in-process, as the tests do, leaves no handler behind)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
