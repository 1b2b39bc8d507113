"""The run directory's guards: one live run at a time (`run.lock`), and what run it holds
(`run.json`: the data, labels and model a --resume must match).

`run.lock` is created with O_CREAT | O_EXCL (atomic on local filesystems and on NFS v3+), holds
the holder's host, pid, start time and job ids as JSON, and is removed when the run ends. A lock
is stale, and is taken over with a warning, when its holder is gone: on this host, when its pid is
no longer alive (or is another process now); on another host, where this host cannot see its
processes, when the holder has not touched the file for STALE_AFTER_S (a live holder touches it
every HEARTBEAT_S from a thread). A torchrun restart (same TORCHELASTIC_RUN_ID) or a Slurm requeue
(same SLURM_JOB_ID) of the holding run is that run, and goes on without a word.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from .config import ConfigError

log = logging.getLogger("vacancy")
LOCK_FILE = "run.lock"
RUN_FILE = "run.json"
HEARTBEAT_S = 60
STALE_AFTER_S = 10 * 60  # a lock of another host not touched for this long: its holder is gone


def _process_start(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot (Linux), which tells a reused pid from
    the process that wrote the lock; None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return start is None or _process_start(pid) in (None, start)


def _identity() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "torchelastic_run_id": os.environ.get("TORCHELASTIC_RUN_ID")}


def describe(holder: dict) -> str:
    job = f", Slurm job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, since {holder.get('started')}"


def same_run(holder: dict, me: dict) -> bool:
    """Whether the holder is an earlier attempt of this very run: a torchrun restart (its workers
    are gone by then) or a Slurm requeue (same job id; rank 0 may land on another node)."""
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0
    return bool(me["slurm_job_id"] and holder.get("slurm_job_id") == me["slurm_job_id"]) or \
        bool(restarted and me["torchelastic_run_id"]
             and holder.get("torchelastic_run_id") == me["torchelastic_run_id"])


def stale_reason(holder: dict, path: Path, me: dict) -> str | None:
    """Why the holder is gone, or None while it may be alive."""
    if holder.get("host") == me["host"]:
        if not _alive(int(holder.get("pid", -1)), holder.get("pid_start")):
            return f"its process ({describe(holder)}) is gone"
        return None
    idle = time.time() - path.stat().st_mtime
    if idle > STALE_AFTER_S:
        return f"its holder ({describe(holder)}) has not touched it for {idle / 60:.0f} min"
    return None


class RunLock:
    """`run.lock` in a run directory; `acquire` on global rank 0 only (train_ddp.prepare_run_dir),
    `release` in the run's `finally` (a no-op where it was not taken)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False
        self._stop = threading.Event()

    def acquire(self) -> None:
        """Take the lock, or raise ConfigError naming the live holder."""
        me = _identity()
        for _ in range(5):  # each pass either takes it, refuses, or clears a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile
                if same_run(holder, me):
                    log.info("%s: taken over from an earlier attempt of this run (%s)", self.path,
                             describe(holder))
                else:
                    reason = stale_reason(holder, self.path, me)
                    if reason is None:
                        raise ConfigError(f"--output-dir {self.path.parent} is in use by another "
                                          f"run ({describe(holder)}; {self.path}): wait for it, "
                                          "or pick another --output-dir")
                    log.warning("%s: a stale lock (%s); taking it over", self.path, reason)
                self._clear(holder)
                continue
            except OSError as e:
                raise ConfigError(f"--output-dir {self.path.parent}: cannot create {LOCK_FILE} "
                                  f"({e.strerror})")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(me) + "\n")
            except OSError as e:
                self.path.unlink(missing_ok=True)
                raise ConfigError(f"--output-dir {self.path.parent}: cannot write {LOCK_FILE} "
                                  f"({e.strerror})")
            self.held = True
            threading.Thread(target=self._heartbeat, daemon=True, name="run.lock").start()
            return
        raise ConfigError(f"--output-dir {self.path.parent}: cannot take {self.path} (other runs "
                          "keep taking it)")

    def _read(self) -> dict | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except ValueError:  # torn or foreign: no holder to ask; judged by its age alone
            return {"host": None, "pid": None, "started": "?", "raw": text}

    def _clear(self, holder: dict) -> None:
        """Remove the lock judged stale, unless another run replaced it meanwhile: it is moved
        aside first (one mover wins), and put back when it is not the one judged."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if json.loads(aside.read_text() or "null") != holder and "raw" not in holder:
                os.link(aside, self.path)  # fails if a third run holds it now: theirs stands
        except (OSError, ValueError):
            pass
        aside.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass  # a full disk or a vanished directory: the run itself will say so

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        holder = self._read()
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == \
                socket.gethostname():
            self.path.unlink(missing_ok=True)
        self.held = False


def check_same_run(run_dir: Path, resume: bool, identity: dict) -> None:
    """On a resumed run, raise ConfigError in one line when the data, the labels or the model are
    not those that `run.json` recorded when the run started; on a new run, record them. Called
    after the data is prepared and before any model or checkpoint loads (rank 0)."""
    path = Path(run_dir) / RUN_FILE
    if resume and path.exists():
        saved = json.loads(path.read_text())
        changed = {}
        if saved["model"] != identity["model"]:
            changed["model"] = f"--model {identity['model']}, the run's: {saved['model']}"
        added = sorted(set(identity["labels"]) - set(saved["labels"]))
        removed = sorted(set(saved["labels"]) - set(identity["labels"]))
        if added or removed:
            changed["labels"] = ", ".join(
                f"{len(names)} {kind} ({' '.join(names[:5])}{' ...' if len(names) > 5 else ''})"
                for kind, names in (("new", added), ("gone", removed)) if names)
        if saved["data_key"] != identity["data_key"] and not changed:
            changed["data"] = (f"{identity['data']}'s content, --max-length or --split-seed "
                               "differ from the run's")
        if changed:
            raise ConfigError(f"--resume: {run_dir} was trained with other "
                              f"{' and '.join(changed)}: {'; '.join(changed.values())}; pass the "
                              "run's --data and --model, or start over with --overwrite")
        return
    tmp = path.with_name(RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(identity, indent=2) + "\n")
    os.replace(tmp, path)
