"""Fine-tune a BERT-like encoder to tag vacancy titles with their areas (multi-label).

One process (CPU or one GPU):   python train_ddp.py --data my.csv --model minilm
One node, 4 GPUs:               torchrun --standalone --nproc_per_node 4 train_ddp.py --data my.csv
Two nodes (run on each node):   torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d \
                                    --rdzv-endpoint HOST:29500 --rdzv-id JOB train_ddp.py ...
Slurm:                          sbatch slurm/train.sh [flags]

`python train_ddp.py --help` lists the flags; README.md explains the output directory.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

# Standard library only until the flags are parsed: `--help` and a bad flag answer at once,
# before torch and transformers take seconds to import.
from vacancy.config import ConfigError, TrainConfig, parse_config

log = logging.getLogger("vacancy")


def prepare_run_dir(config: TrainConfig, lock) -> bool:
    """Check `--output-dir` and return whether to resume. Rank 0 first takes the directory's
    lock (vacancy.run_dir.RunLock): a second live run into it stops here, before anything is
    deleted. A torchrun restart or a Slurm requeue resumes by itself; a directory holding another
    run needs --resume or --overwrite. A run that ended before its first epoch (a bad flag, a
    missing package...) trained nothing, so the same command simply starts it over."""
    from vacancy import checkpoint, dist
    from vacancy.deepspeed_engine import CKPT_DIR
    from vacancy.run_dir import LOCK_FILE

    run_dir = Path(config.output_dir)
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0 or \
        int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0

    def take_lock() -> None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--output-dir {run_dir}: cannot create it ({e.strerror})")
        lock.acquire()

    # every rank learns whether rank 0 got the directory before any rank looks into it
    dist.on_main(take_lock, errors=(ConfigError,))
    started = (run_dir / "config.json").exists()
    trained = started and any((run_dir / name).exists() for name in (
        checkpoint.LAST, checkpoint.BEST, checkpoint.LAST + ".old", CKPT_DIR, "metrics.json"))
    dist.barrier()  # every rank looks before rank 0 writes config.json below
    if trained and not (config.resume or config.overwrite or restarted):
        raise ConfigError(f"--output-dir {run_dir} holds another run: pass --resume to continue it "
                          "or --overwrite to replace it")

    def start() -> None:
        if started and not restarted and (config.overwrite or not trained):
            if not trained:
                log.info("%s: the run there ended before its first epoch; starting it over",
                         run_dir)
            for path in run_dir.iterdir():  # all but the lock this run holds
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.name != LOCK_FILE:
                    path.unlink()
        checkpoint.recover(run_dir)
        with checkpoint.writing(run_dir, "config.json"):
            config.save(run_dir / "config.json")

    dist.on_main(start, errors=(checkpoint.WriteError,))
    return config.resume or restarted


def preflight(config: TrainConfig, device) -> None:
    """The input errors that can be found before any data or model loads, so that they come in
    seconds, as one line, and leave no run directory behind."""
    from vacancy import dist
    from vacancy.console import import_deepspeed
    from vacancy.deepspeed_engine import resolve_ds_config
    from vacancy.model import resolve_model

    if config.deepspeed:
        if not import_deepspeed():
            raise ConfigError("--deepspeed needs DeepSpeed, which is not installed: pip install "
                              "deepspeed (or bash scripts/setup.sh --dev)")
        # the file itself, and its conflicts with the flags
        resolve_ds_config(config.deepspeed, config, dist.world_size(), device)
    resolve_model(config.model)  # the minilm package, a local directory, or a reachable Hub
    if config.drop_label_issues:  # its file and columns; its rows are checked with the data
        from vacancy.label_issues import read_flagged
        read_flagged(config.drop_label_issues)


def print_error(error: Exception, every_rank: bool = False) -> None:
    """One line on stderr, from rank 0 only unless `every_rank` (the environment says which rank
    this is even before the process group exists). Under torchrun every rank also writes the line
    into its error file, so that torchrun's closing summary shows it as the failure's cause
    instead of "<N/A>" and a link."""
    line = f"error: {error}"
    if every_rank or os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")  # set by torchrun per worker
    if error_file:  # the JSON of torch.distributed.elastic's ErrorHandler.record_exception
        info = {"py_callstack": line, "timestamp": str(int(time.time()))}
        Path(error_file).write_text(json.dumps({"message": {"message": line, "extraInfo": info}}))


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ConfigError as e:
        print_error(e)
        return 2
    from torch.distributed.elastic.multiprocessing.errors import record
    return record(train)(config)  # torchrun then shows the failing rank's traceback


def train(config: TrainConfig) -> int:
    from vacancy import console, dist
    from vacancy.checkpoint import CheckpointError, WriteError
    from vacancy.data import DataError
    from vacancy.model import ModelError
    from vacancy.run import FinishError, run
    from vacancy.run_dir import RunLock
    from vacancy.trainer import Stopped, TrainingError

    device = dist.setup()
    console.setup_logging(dist.is_main())
    lock = RunLock(Path(config.output_dir))
    try:
        preflight(config, device)
        resume = prepare_run_dir(config, lock)
        console.log_libraries_to(Path(config.output_dir) if dist.is_main() else None)
        metrics = run(config, device, resume)
        if dist.is_main():  # the final metrics exist on rank 0 only
            run_dir = Path(config.output_dir)
            log.info("run directory: %s (metrics.json, report.txt, test_predictions.csv, plots, "
                     "%s)", run_dir, console.LOG_FILE)
            log.info("best model: %s (epoch %d): python -m vacancy.predict --model %s \"TITLE\"",
                     run_dir / "best", metrics["best_epoch"], run_dir / "best")
        return 0
    except Stopped as e:  # exit 0: torchrun must not restart it; slurm/train.sh requeues the job
        if dist.is_main():
            print(f"{e}; last/ is saved: --resume (or the requeued job) goes on from there",
                  flush=True)
        return 0
    except (ConfigError, DataError, ModelError, CheckpointError, TrainingError) as e:
        print_error(e, every_rank=isinstance(e, TrainingError))
        return 2 if not isinstance(e, TrainingError) else 1
    except (WriteError, FinishError) as e:  # not the input: the disk, or a step after training
        print_error(e)
        return 1
    finally:
        lock.release()
        console.close_log_file()
        dist.teardown()


if __name__ == "__main__":
    sys.exit(main())
