"""A real two-node Slurm cluster on one machine, for testing `slurm/train.sh` on CPU.

    python tests/slurm_cluster.py start /tmp/slurm    # prints the SLURM_CONF line to export
    export SLURM_CONF=/tmp/slurm/slurm.conf
    sbatch --nodes=2 --gpus-per-node=0 --cpus-per-task=1 slurm/train.sh --epochs 2
    python tests/slurm_cluster.py stop /tmp/slurm

Two `slurmd` pose as the nodes n1 and n2 (both 127.0.0.1), so `srun` starts one task on each and
torchrun really rendezvouses across two "nodes". Everything (config, state, logs, a private munge
daemon and key) lives in the given directory, ports are picked free, and only the daemons started
here are stopped, by their pid files, so it never touches a system Slurm or munge. Needs root and
the Debian packages slurmctld, slurmd, slurm-client and munge (`bash scripts/setup.sh --dev`).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NODES = ("n1", "n2")
PROGRAMS = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "PREEMPTED", "BOOT_FAIL", "DEADLINE"}  # job states after which nothing more happens


def missing() -> str | None:
    """Why the cluster cannot start here, or None."""
    absent = [d for d in PROGRAMS if shutil.which(d) is None]
    if absent:
        return (f"Slurm is not installed ({', '.join(absent)} not found): run `bash "
                "scripts/setup.sh --dev` as root, or apt-get install slurmctld slurmd "
                "slurm-client munge")
    if os.geteuid() != 0:
        return "the local Slurm test cluster needs root (slurmd starts jobs as their user)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    """True while the process runs; a zombie (exited, not reaped by init) counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class SlurmCluster:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.conf = self.root / "slurm.conf"

    @property
    def env(self) -> dict:
        """The environment every Slurm client command (and each job) needs."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def pid_files(self) -> dict[str, Path]:
        files = {"slurmctld": self.root / "slurmctld.pid", "munged": self.root / "munged.pid"}
        files.update({f"slurmd {n}": self.root / f"slurmd.{n}.pid" for n in NODES})
        return files

    def write_config(self) -> None:
        host = socket.gethostname().split(".")[0]
        r = self.root
        nodes = "\n".join(
            f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={_free_port()} CPUs=2 "
            "RealMemory=1000" for n in NODES)
        self.conf.write_text(f"""\
ClusterName=vacancytest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire seconds (default 120) before it may start again, and then
# for the next pass of the scheduler (every sched_interval seconds, default 60)
AuthInfo=socket={r}/munge.socket,cred_expire=5
SchedulerParameters=sched_interval=2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the fake nodes claim 2 CPUs each whatever this machine has
SlurmdParameters=config_overrides
# job ids start at random, so two test clusters on one machine get different ids (and thus
# different rendezvous ports in slurm/train.sh)
FirstJobId={random.randrange(1000, 900000)}
# finished jobs stay visible to `scontrol show job` for an hour
MinJobAge=3600
# cancelled/requeued jobs get SIGKILL 5 s after SIGTERM
KillWait=5
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.%n.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.%n.log
{nodes}
PartitionName=debug Nodes={','.join(NODES)} Default=YES State=UP MaxTime=INFINITE
""")

    def start(self, timeout: float = 60) -> None:
        if (reason := missing()) is not None:
            raise RuntimeError(reason)
        if any(_alive(pid) for pid in self._pids().values()):
            raise RuntimeError(f"a cluster from {self.root} is still running: stop it first")
        shutil.rmtree(self.root / "state", ignore_errors=True)
        for d in ("state", *(f"spool/{n}" for n in NODES)):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.write_config()
        key = self.root / "munge.key"
        key.unlink(missing_ok=True)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(os.urandom(1024))
        r = self.root
        # --force: munged refuses to run as root otherwise; its socket is private to this cluster
        self._run("munged", "--force", f"--socket={r}/munge.socket", f"--key-file={key}",
                  f"--pid-file={r}/munged.pid", f"--seed-file={r}/munged.seed",
                  f"--log-file={r}/munged.log")
        self._run("slurmctld")
        for n in NODES:
            self._run("slurmd", "-N", n)
        deadline, states = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            states = self._node_states()
            if states and all(states.get(n) == "idle" for n in NODES):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the nodes did not become idle within {timeout:.0f} s (states "
                           f"{states}); see the logs in {self.root}")

    def stop(self, timeout: float = 30) -> None:
        """Cancel this cluster's jobs, then stop the daemons started from this directory."""
        pids = {name: pid for name, pid in self._pids().items() if _alive(pid)}
        if "slurmctld" in pids:
            subprocess.run(["scancel", "--user", str(os.geteuid())], env=self.env,
                           capture_output=True, timeout=30)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.squeue():
                time.sleep(0.5)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids.values():
                if _alive(pid):
                    os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
                time.sleep(0.2)

    def _pids(self) -> dict[str, int]:
        """Pids from the pid files that still belong to the daemon named (pids get reused)."""
        out = {}
        for name, path in self.pid_files().items():
            try:
                pid = int(path.read_text().split()[0])
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if name.split()[0].encode() in cmdline:
                out[name] = pid
        return out

    def _run(self, *cmd: str) -> None:
        """Start a daemon; each forks into the background once it is ready."""
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()[-2000:]}")

    def _node_states(self) -> dict[str, str]:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], env=self.env,
                              capture_output=True, text=True, timeout=30)
        return dict(line.split() for line in proc.stdout.splitlines() if line.strip())

    def squeue(self) -> list[str]:
        """Ids of this cluster's jobs that are not finished yet."""
        proc = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True,
                              text=True, timeout=30)
        return proc.stdout.split()

    def sbatch(self, *args: str, cwd=None, env: dict | None = None) -> str:
        """Submit a batch job; return its id."""
        proc = subprocess.run(["sbatch", "--parsable", *map(str, args)], cwd=cwd,
                              env={**(env or os.environ), "SLURM_CONF": str(self.conf)},
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout.strip().split(";")[0]

    def scontrol(self, *args: str) -> str:
        proc = subprocess.run(["scontrol", *args], env=self.env, capture_output=True, text=True,
                              timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"scontrol {' '.join(args)} exited {proc.returncode}: "
                               f"{proc.stderr.strip()}")
        return proc.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, NodeList, ...)."""
        fields = {}
        for item in self.scontrol("show", "job", "-o", job_id).split():
            key, _, value = item.partition("=")
            fields.setdefault(key, value)
        return fields

    def wait(self, job_id: str, until=lambda job: job["JobState"] in FINAL, timeout: float = 600,
             every: float = 1.0) -> dict[str, str]:
        """Poll `scontrol show job` until `until(job)` holds (by default: the job has ended);
        `sbatch --wait` returns up to ~30 s late."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if until(job):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['JobState']} after {timeout:.0f} s")
            time.sleep(every)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    cluster = SlurmCluster(argv[1])
    if argv[0] == "stop":
        cluster.stop()
        return 0
    cluster.root.mkdir(parents=True, exist_ok=True)
    try:
        cluster.start()
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
