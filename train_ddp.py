"""Fine-tune a BERT-like encoder to tag vacancy titles with their areas (multi-label).

One process (CPU or one GPU):   python train_ddp.py --data my.csv --model minilm
One node, 4 GPUs:               torchrun --standalone --nproc_per_node 4 train_ddp.py --data my.csv
Two nodes (run on each node):   torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d \
                                    --rdzv-endpoint HOST:29500 --rdzv-id JOB train_ddp.py ...
Slurm:                          sbatch slurm/train.sh [flags]

`python train_ddp.py --help` lists the flags; README.md explains the output directory.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

# Standard library only until the flags are parsed: `--help` and a bad flag answer at once,
# before torch and transformers take seconds to import.
from vacancy.config import ConfigError, TrainConfig, parse_config

log = logging.getLogger("vacancy")


def prepare_run_dir(config: TrainConfig) -> bool:
    """Check `--output-dir` and return whether to resume. A torchrun restart or a Slurm requeue
    resumes by itself; a directory holding another run needs --resume or --overwrite. A run that
    ended before its first epoch (a bad flag, a missing package...) trained nothing, so the same
    command simply starts it over."""
    from vacancy import checkpoint, dist
    from vacancy.deepspeed_engine import CKPT_DIR

    run_dir = Path(config.output_dir)
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0 or \
        int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0
    started = (run_dir / "config.json").exists()
    trained = started and any((run_dir / name).exists() for name in (
        checkpoint.LAST, checkpoint.BEST, checkpoint.LAST + ".old", CKPT_DIR, "metrics.json"))
    dist.barrier()  # every rank looks before rank 0 writes config.json below
    if trained and not (config.resume or config.overwrite or restarted):
        raise ConfigError(f"--output-dir {run_dir} holds another run: pass --resume to continue it "
                          "or --overwrite to replace it")
    if dist.is_main():
        if started and not restarted and (config.overwrite or not trained):
            if not trained:
                log.info("%s: the run there ended before its first epoch; starting it over",
                         run_dir)
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.recover(run_dir)
        config.save(run_dir / "config.json")
    dist.barrier()
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


def print_error(error: Exception) -> None:
    """One line on stderr, from rank 0 only (the environment says which rank this is even
    before the process group exists)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"error: {error}", file=sys.stderr)


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
    from vacancy.checkpoint import CheckpointError
    from vacancy.data import DataError
    from vacancy.model import ModelError
    from vacancy.run import run
    from vacancy.trainer import Stopped, TrainingError

    device = dist.setup()
    console.setup_logging(dist.is_main())
    try:
        preflight(config, device)
        resume = prepare_run_dir(config)
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
        if dist.is_main() or isinstance(e, TrainingError):
            print(f"error: {e}", file=sys.stderr)
        return 2 if not isinstance(e, TrainingError) else 1
    finally:
        console.close_log_file()
        dist.teardown()


if __name__ == "__main__":
    sys.exit(main())
