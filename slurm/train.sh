#!/bin/bash
# Train across Slurm nodes: srun starts one torchrun per node, torchrun one process per GPU.
#
#   sbatch slurm/train.sh --data my.csv --model models/bert-base-uncased    # from the repo root
#   sbatch --nodes=4 slurm/train.sh --data my.csv                           # any node count
#   NPROC_PER_NODE=2 sbatch --gpus-per-node=0 slurm/train.sh ...            # CPU-only partition
#
# Arguments go to train_ddp.py unchanged. The run goes to runs/<job name>-<job id> unless they
# include --output-dir (on the command line: flags override a --config file); the log goes to
# logs/<job name>-<job id>.out. A requeued job keeps its id, so it finds its run directory again,
# and Slurm sets SLURM_RESTART_COUNT, which makes train_ddp.py resume from last/.
#
# The defaults to edit for your cluster (or override on the sbatch command line):
#SBATCH --job-name=vacancy
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=04:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
# --ntasks-per-node=1: one torchrun per node; it starts the per-GPU processes itself.
# --open-mode=append: a requeued job adds to its log instead of overwriting it.
# --requeue: after a node failure or preemption the job goes back to the queue (and resumes).
# --time: the wall-clock limit. --signal=B:USR1@120: 120 s before it, Slurm sends this script
#   SIGUSR1; the training processes then save last/ at their next optimizer step and exit, and
#   the job requeues itself, to go on from that step (see the end of this script). Raise the 120
#   where one optimizer step plus writing last/ takes longer.
set -euo pipefail
: "${SLURM_JOB_ID:?submit this script with sbatch (see README.md)}"

script=$SLURM_SUBMIT_DIR/train_ddp.py
if [ ! -f "$script" ]; then
    echo "error: $script not found: submit from the repository root" >&2
    exit 2
fi

# One process per allocated GPU; on CPU-only partitions NPROC_PER_NODE (default 1).
gpus=${SLURM_GPUS_ON_NODE:-0}
nproc_per_node=${NPROC_PER_NODE:-$(( gpus > 0 ? gpus : 1 ))}

# Rendezvous on the first node, at the address Slurm itself uses for it. The port comes from the
# job id (kept across requeues), so two jobs sharing a node do not collide, and stays below the
# kernel's ephemeral ports (32768+).
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
head_addr=$(scontrol show node "$head_node" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
rdzv_port=${RDZV_PORT:-$(( 20000 + SLURM_JOB_ID % 10000 ))}

# Timeouts and failure handling:
# - VACANCY_DIST_TIMEOUT_MIN, the process-group timeout (vacancy/dist.py): how long ranks may wait
#   in one collective, e.g. in the barrier while rank 0 writes a checkpoint, before the job
#   counts as hung. Raise it for large models on slow shared filesystems.
export VACANCY_DIST_TIMEOUT_MIN=${VACANCY_DIST_TIMEOUT_MIN:-30}
# - After such a timeout or an NCCL error, tear the process down (3, torch's current default;
#   older versions differ), so the step fails instead of idling until --time runs out.
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-3}
# - NCCL prints why a connection failed (network interface, InfiniBand) instead of just hanging.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# - join_timeout (s): how long the first torchrun waits for the other nodes; they may start
#   minutes apart (container pulls, cold filesystem caches).
# - --kill-on-bad-exit: one node's torchrun failing ends the others at once, rather than leaving
#   them blocked in a collective until the timeouts above.
# - --max-restarts: torchrun restarts all workers this often after a failure; they resume from
#   last/. A bad flag therefore fails MAX_RESTARTS + 1 times (quickly).

echo "job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}: $SLURM_NNODES node(s)" \
     "[$SLURM_JOB_NODELIST] x $nproc_per_node process(es); rendezvous at $head_addr:$rdzv_port"

# The time-limit warning (--signal above). A trap runs only between commands, hence srun in the
# background below and `wait`, which the trap interrupts.
warned=0
on_warning() {
    warned=1
    echo "job $SLURM_JOB_ID: time limit near: saving last/, then requeueing"
    scancel --signal=USR1 "$SLURM_JOB_ID"  # to every process of the job's steps, on all nodes
}
trap on_warning USR1

# srun of Slurm 22.05+ does not pass the job's --cpus-per-task on to the step: say it again.
# Each node first logs its own name ($SLURMD_NODENAME, expanded there), then becomes torchrun.
# torchrun ignores SIGUSR1 (trap ''), so that the warning reaches only the training processes,
# which handle it; USR1 would otherwise kill torchrun.
srun --kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
    bash -c 'echo "node $SLURMD_NODENAME: torchrun node rank $SLURM_NODEID"; trap "" USR1
             exec torchrun "$@"' \
    torchrun \
    --nnodes "$SLURM_NNODES" \
    --nproc-per-node "$nproc_per_node" \
    --rdzv-backend c10d \
    --rdzv-endpoint "$head_addr:$rdzv_port" \
    --rdzv-id "$SLURM_JOB_ID" \
    --rdzv-conf join_timeout=900 \
    --max-restarts "${MAX_RESTARTS:-1}" \
    "$script" --output-dir "runs/$SLURM_JOB_NAME-$SLURM_JOB_ID" "$@" &
srun_pid=$!
status=0
wait "$srun_pid" || status=$?
while kill -0 "$srun_pid" 2>/dev/null; do  # wait was cut short by the trap: srun still runs
    status=0
    wait "$srun_pid" || status=$?
done
if [ "$warned" = 1 ] && [ "$status" = 0 ]; then
    # the processes saved and stopped: back to the queue, same id and run directory
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
