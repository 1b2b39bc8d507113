#!/usr/bin/env bash
# Builds gpu_carry/ (git-ignored), everything bench/gpu_check.sh needs on a GPU machine that
# reaches no package registry and has Python 3.12, a CUDA torch and transformers, but no nltk,
# DeepSpeed nor MiniLM (docs/PERFORMANCE.md, "GPU check"). At most 64 MiB travels with the tree.
#   bash scripts/prepare_gpu_check.sh      # from the repo root, on a machine that reaches PyPI
#
#   gpu_carry/wheels/   cp312 manylinux x86_64 wheels, installed there with --no-index --no-deps:
#                       nltk + defusedxml; DeepSpeed (pure Python, its ops JIT-compile there)
#                       + hjson, pydantic, pydantic-core, annotated-types, typing-inspection
#   gpu_carry/minilm/   all-MiniLM-L6-v2 in fp16 safetensors (45 MB instead of 91) + tokenizer
#   gpu_carry/data/     O*NET major titles (real data; ../shared does not travel)
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1
OUT=gpu_carry
DATA=${VACANCY_ONET_MAJOR:-../shared/data/onet_titles_major.csv}
[ -f "$DATA" ] || { echo "error: $DATA not found (set VACANCY_ONET_MAJOR)" >&2; exit 2; }
rm -rf "$OUT" && mkdir -p "$OUT/wheels" "$OUT/data"

# The versions installed here, which the CPU tests pass with.
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
binary=()
for name in nltk defusedxml hjson pydantic pydantic-core annotated-types typing-inspection; do
    binary+=("$name==$(version "$name")")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$OUT/wheels" "${binary[@]}"
# DeepSpeed ships an sdist only; built here without its ops (DS_BUILD_OPS=0), it is pure Python.
DS_BUILD_OPS=0 python -m pip wheel -q --no-deps --no-build-isolation -w "$OUT/wheels" \
    "deepspeed==$(version deepspeed)"
ls "$OUT"/wheels/deepspeed-*-py3-none-any.whl >/dev/null \
    || { echo "error: the DeepSpeed wheel is not pure Python" >&2; exit 1; }

cp "$DATA" "$OUT/data/onet_titles_major.csv"

python - "$OUT/minilm" "$OUT/data/onet_titles_major.csv" <<'EOF'
"""MiniLM in fp16, checked against fp32: the carried copy must encode titles as the original does
(within fp16 rounding), since training loads it back as fp32 master weights (model.load_model)."""
import sys

import torch
from transformers import AutoModel, AutoTokenizer

from vacancy.data import read_csv
from vacancy.model import resolve_model

dest, data = sys.argv[1:]
src = resolve_model("minilm")
AutoModel.from_pretrained(src, dtype=torch.float16).save_pretrained(dest)
AutoTokenizer.from_pretrained(src).save_pretrained(dest)

titles = read_csv(data)["title"].sample(512, random_state=0).tolist()
tokenizer = AutoTokenizer.from_pretrained(dest)
batch = tokenizer(titles, padding=True, return_tensors="pt")
with torch.no_grad():
    ref, half = (AutoModel.from_pretrained(path, dtype=torch.float32).eval()(**batch)
                 .last_hidden_state[:, 0] for path in (src, dest))
rel = float((half - ref).norm() / ref.norm())
cos = float(torch.nn.functional.cosine_similarity(half, ref).min())
print(f"fp16 copy vs fp32 MiniLM on 512 O*NET titles: relative error of the [CLS] states "
      f"{rel:.1e}, lowest cosine {cos:.6f}")
if rel > 2e-3:  # fp16 keeps ~3 significant digits: rounding the weights moves outputs ~1e-4
    sys.exit(f"error: the fp16 copy differs from fp32 by {rel:.1e}, more than fp16 rounding")
EOF

du -sh "$OUT"/*
size=$(du -sm "$OUT" | cut -f1)
[ "$size" -lt 60 ] || { echo "error: $OUT is $size MiB; at most 64 MiB travels" >&2; exit 1; }
echo "gpu_carry ready: $size MiB (carry it: see docs/PERFORMANCE.md, GPU check)"
