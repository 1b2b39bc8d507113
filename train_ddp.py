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
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record

from vacancy import checkpoint, dist
from vacancy.checkpoint import CheckpointError
from vacancy.config import ConfigError, TrainConfig, parse_config
from vacancy.data import DataError
from vacancy.model import ModelError
from vacancy.run import run
from vacancy.trainer import Stopped, TrainingError

log = logging.getLogger("vacancy")


def prepare_run_dir(config: TrainConfig) -> bool:
    """Check `--output-dir` and return whether to resume. A torchrun restart or a Slurm requeue
    resumes by itself; a directory holding another run needs --resume or --overwrite."""
    run_dir = Path(config.output_dir)
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0 or \
        int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0
    has_run = (run_dir / "config.json").exists()
    dist.barrier()  # every rank looks before rank 0 writes config.json below
    if has_run and not (config.resume or config.overwrite or restarted):
        raise ConfigError(f"--output-dir {run_dir} holds another run: pass --resume to continue it "
                          "or --overwrite to replace it")
    if dist.is_main():
        if has_run and config.overwrite and not restarted:
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.recover(run_dir)
        config.save(run_dir / "config.json")
    dist.barrier()
    return config.resume or restarted


@record  # torchrun then shows the failing rank's traceback
def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = dist.setup()
    logging.basicConfig(level=logging.INFO if dist.is_main() else logging.ERROR,
                        format="%(message)s", stream=sys.stdout)
    try:
        resume = prepare_run_dir(config)
        metrics = run(config, device, resume)
        if dist.is_main():
            print(json.dumps({k: metrics[k] for k in ("micro_f1", "macro_f1", "samples_f1")}))
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
        dist.teardown()


if __name__ == "__main__":
    sys.exit(main())
