#!/usr/bin/env bash
# The model study end to end on any CSV: the TF-IDF baseline, then `minilm` and every model given,
# each trained frozen-only and frozen-then-unfrozen, then the comparison report.
#   bash scripts/compare_models.sh CSV OUTDIR [MODEL...]
#   bash scripts/compare_models.sh data/vacancies.csv runs/study models/roberta-base
# Environment: EPOCHS (4) and FREEZE_EPOCHS (1) of the frozen-then-unfrozen runs (frozen-only runs
# train EPOCHS frozen epochs); NPROC (1) processes per run (>1: torchrun); MODELS ("minilm") the
# models always included; TRAIN_FLAGS extra train_ddp.py flags, e.g. "--batch-size 64"; SEEDS
# (unset: one run per model with train_ddp.py's default seed, in OUTDIR/MODEL-VARIANT) a list such
# as "1 2 3": one run per seed, in OUTDIR/MODEL-VARIANT-seedN, which vacancy.compare groups and
# reports as mean and spread. The baseline runs once: it has no random initialisation to vary.
# A run whose metrics.json exists is kept, and an interrupted one resumes: rerunning the script
# finishes the study instead of starting over.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CSV OUTDIR [MODEL...]" >&2
    exit 2
fi
csv=$1 out=$2
shift 2
# No cd: CSV, OUTDIR and model directories stay relative to the caller's directory.
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
epochs=${EPOCHS:-4} freeze=${FREEZE_EPOCHS:-1} nproc=${NPROC:-1}
if [ "$nproc" -gt 1 ]; then
    launch=(torchrun --standalone --nproc_per_node "$nproc" "$root/train_ddp.py")
else
    launch=(python "$root/train_ddp.py")
fi

runs=("$out/baseline")
if [ ! -f "$out/baseline/metrics.json" ]; then
    python -m vacancy.baseline --data "$csv" --output-dir "$out/baseline" --overwrite
fi
# shellcheck disable=SC2086  # MODELS and TRAIN_FLAGS are word lists
for model in ${MODELS:-minilm} "$@"; do
    name=$(basename "$model")
    for variant in frozen unfrozen; do
        for seed in ${SEEDS:-default}; do
            if [ "$seed" = default ]; then
                dir="$out/$name-$variant" seed_flag=()
            else
                dir="$out/$name-$variant-seed$seed" seed_flag=(--seed "$seed")
            fi
            runs+=("$dir")
            [ -f "$dir/metrics.json" ] && { echo "kept $dir (finished)"; continue; }
            n_frozen=$([ "$variant" = frozen ] && echo "$epochs" || echo "$freeze")
            "${launch[@]}" --data "$csv" --model "$model" --output-dir "$dir" --resume \
                --epochs "$epochs" --freeze-epochs "$n_frozen" "${seed_flag[@]}" ${TRAIN_FLAGS:-}
        done
    done
done
python -m vacancy.compare "${runs[@]}" --out "$out/comparison.md"
