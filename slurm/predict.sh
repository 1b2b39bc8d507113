#!/bin/bash
# Tag a file across Slurm nodes: srun starts one torchrun per node, torchrun one process per GPU;
# rank 0 reads and writes the file, every rank scores its share of the distinct titles.
#
#   sbatch slurm/predict.sh --model runs/my/best --input titles.parquet --output tagged.parquet
#   sbatch --nodes=2 slurm/predict.sh --model runs/my/best --input all.csv.gz --output all.csv.gz
#   NPROC_PER_NODE=4 sbatch --gpus-per-node=0 slurm/predict.sh ...      # CPU-only partition
#
# Arguments go to `python -m vacancy.predict` unchanged, with --resume added: a requeued job (node
# failure, preemption, `scontrol requeue`) or a torchrun restart continues from the last chunk
# written to OUTPUT.parts/ instead of starting over (a first run has nothing to resume and simply
# starts); --output must be a file, not stdout. Every node must see the repository and the model; the input and output only need to
# be on the first node (rank 0 alone reads and writes them). The log goes to
# logs/<job name>-<job id>.out.
#
# The defaults to edit for your cluster (or override on the sbatch command line):
#SBATCH --job-name=vacancy-predict
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
# --ntasks-per-node=1: one torchrun per node; it starts the per-GPU processes itself.
# --open-mode=append: a requeued job adds to its log instead of overwriting it.
# --requeue: after a node failure or preemption the job goes back to the queue (and resumes).
set -euo pipefail
: "${SLURM_JOB_ID:?submit this script with sbatch (see README.md)}"

repo=$SLURM_SUBMIT_DIR
if [ ! -f "$repo/vacancy/predict.py" ]; then
    echo "error: $repo/vacancy/predict.py not found: submit from the repository root" >&2
    exit 2
fi
# `-m vacancy.predict` imports the package from the repository, wherever the job runs (--chdir)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

# One process per allocated GPU; on CPU-only partitions NPROC_PER_NODE (default 1).
gpus=${SLURM_GPUS_ON_NODE:-0}
nproc_per_node=${NPROC_PER_NODE:-$(( gpus > 0 ? gpus : 1 ))}

# Rendezvous on the first node, at the address Slurm itself uses for it; the port from the job id
# (kept across requeues), below the kernel's ephemeral ports. As in slurm/train.sh.
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
head_addr=$(scontrol show node "$head_node" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
rdzv_port=${RDZV_PORT:-$(( 20000 + SLURM_JOB_ID % 10000 ))}

# How long the other ranks may wait for rank 0 in one collective (vacancy/dist.py): rank 0 reads
# and cleans a chunk meanwhile, seconds to a minute per 100k rows.
export VACANCY_DIST_TIMEOUT_MIN=${VACANCY_DIST_TIMEOUT_MIN:-30}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-3}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}

echo "job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}: $SLURM_NNODES node(s)" \
     "[$SLURM_JOB_NODELIST] x $nproc_per_node process(es); rendezvous at $head_addr:$rdzv_port"

# srun of Slurm 22.05+ does not pass the job's --cpus-per-task on to the step: say it again.
# --kill-on-bad-exit: one node failing ends the others at once.
srun --kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
    bash -c 'echo "node $SLURMD_NODENAME: torchrun node rank $SLURM_NODEID"; exec torchrun "$@"' \
    torchrun \
    --nnodes "$SLURM_NNODES" \
    --nproc-per-node "$nproc_per_node" \
    --rdzv-backend c10d \
    --rdzv-endpoint "$head_addr:$rdzv_port" \
    --rdzv-id "$SLURM_JOB_ID" \
    --rdzv-conf join_timeout=900 \
    --max-restarts "${MAX_RESTARTS:-1}" \
    -m vacancy.predict "$@" --resume
