"""Training throughput of a bert-base-shaped classifier at title lengths, for a GPU: precision x
batch size x torch.compile, with model FLOPs utilisation.

    python bench/gpu_throughput.py                                   # on a GPU: the full sweep
    python bench/gpu_throughput.py --tiny --steps 3 --batch-sizes 8  # on CPU: a tiny model, quick

The model is randomly initialised from a config (no download): BertConfig's defaults are
bert-base-uncased's shape (12 layers, hidden 768, 30,522-token vocabulary, 109M parameters).
Titles are random token ids with the token lengths of the titles in `--data` (WordPiece of
bert-base-uncased's vocabulary, as in minilm's tokenizer), [CLS]/[SEP] included, batches drawn at
random and padded to their longest title, rounded up to a multiple of 8 (as the trainer does on
GPU). Each step is the trainer's: forward under autocast, BCE, backward (loss scaling in fp16),
fused AdamW. `--warmup` steps are not timed; with compile on, the first batch size's warm-up
also compiles the model (once per precision: later batch sizes reuse it), shown as "warm-up s".

MFU = 6 x non-embedding parameters x real (non-padding) tokens per second / peak dense FLOP/s of
the card in that precision (table below, or --peak-tflops); attention's own FLOPs are left out
(small at title lengths).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vacancy.config import DEFAULT_DATA  # noqa: E402

# Peak dense tensor-core TFLOP/s (fp16 = bf16 on these cards), from the vendors' data sheets.
PEAK_TFLOPS = {"H200": 989, "H100 SXM": 989, "H100 80GB HBM3": 989, "H100 PCIe": 756,
               "H100 NVL": 835, "A100": 312, "L40S": 362, "L4": 121, "A10": 125, "V100": 125,
               "T4": 65}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_gpu = torch.cuda.is_available()
    parser.add_argument("--tiny", action="store_true",
                        help="a 2-layer, hidden-64 model instead of bert-base (for CPU checks)")
    # titles are ~6 tokens: it takes thousands of them per step before the matmuls, not the
    # kernel launches, set the pace
    parser.add_argument("--batch-sizes", default="64,256,1024,2048,4096" if on_gpu else "16,32")
    parser.add_argument("--precisions", default="fp16,bf16")
    parser.add_argument("--compile", default="off,on" if on_gpu else "off",
                        help="off, on or both (off,on)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per setting")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="where title lengths come from")
    parser.add_argument("--num-labels", type=int, default=23)
    parser.add_argument("--peak-tflops", type=float, help="peak of the device (default: table)")
    args = parser.parse_args(argv)
    for name in args.precisions.split(","):
        if name not in ("fp16", "bf16", "fp32"):
            parser.error(f"--precisions: {name!r} is not fp16, bf16 or fp32")
    return args


def title_lengths(path: str) -> np.ndarray:
    """Token counts ([CLS] and [SEP] included) of the titles in `path`, as the trainer sees them."""
    from vacancy.data import read_csv
    from vacancy.model import load_tokenizer
    titles = read_csv(path)["title"].tolist()
    return np.array([len(ids) for ids in load_tokenizer("minilm")(titles)["input_ids"]])


def build_model(args, device):
    from transformers import BertConfig, BertForSequenceClassification
    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=128) if args.tiny else {}
    config = BertConfig(num_labels=args.num_labels, problem_type="multi_label_classification",
                        **size)
    torch.manual_seed(0)
    return BertForSequenceClassification(config).to(device)


def non_embedding_params(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def batches(lengths: np.ndarray, batch_size: int, vocab: int, n_labels: int, device, seed=0):
    """An endless stream of random batches with the given title lengths, padded as on GPU."""
    rng = np.random.default_rng(seed)
    while True:
        rows = rng.choice(lengths, batch_size)
        width = -(-int(rows.max()) // 8) * 8
        ids = torch.from_numpy(rng.integers(1000, vocab, (batch_size, width)))
        mask = torch.from_numpy((np.arange(width)[None, :] < rows[:, None]).astype(np.int64))
        labels = torch.from_numpy((rng.random((batch_size, n_labels)) < 0.1).astype(np.float32))
        yield {"input_ids": (ids * mask).to(device), "attention_mask": mask.to(device),
               "labels": labels.to(device), "real_tokens": int(rows.sum())}


def measure(model, forward, data, precision: str, args, device) -> dict:
    """Time the trainer's step with `forward` (the model, or its compiled form)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[precision]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step(batch):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = forward(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"]).logits.float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step(next(data))
    sync()
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    samples = tokens = 0
    step_times = []
    for _ in range(args.steps):
        batch = next(data)
        begin = time.perf_counter()
        step(batch)
        sync()
        step_times.append(time.perf_counter() - begin)
        samples, tokens = samples + len(batch["labels"]), tokens + batch["real_tokens"]
    seconds = sum(step_times)
    return {"samples_s": samples / seconds, "tokens_s": tokens / seconds,
            "median_step_ms": 1000 * statistics.median(step_times), "warmup_s": warmup_s,
            "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}


def peak_tflops(args, device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):  # most specific name first
        if all(word in name for word in key.split()):
            return PEAK_TFLOPS[key]
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    import transformers
    transformers.utils.logging.set_verbosity_error()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    lengths = title_lengths(args.data)
    peak = peak_tflops(args, device)
    card = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    rows = []
    for precision in args.precisions.split(","):
        for compiled in [c == "on" for c in args.compile.split(",")]:
            # one model (and one compilation) for the whole batch-size sweep: dynamic shapes cover
            # every batch size and title width, so only the first setting's warm-up compiles
            model = build_model(args, device)
            n_params = non_embedding_params(model)
            forward = torch.compile(model, dynamic=True) if compiled else model
            for batch_size in map(int, args.batch_sizes.split(",")):
                data = batches(lengths, batch_size, model.config.vocab_size, args.num_labels,
                               device)
                r = measure(model, forward, data, precision, args, device)
                mfu = 6 * n_params * r["tokens_s"] / (peak * 1e12) if peak else None
                rows.append((precision, "on" if compiled else "off", batch_size, r, mfu))
                print(f"{precision} compile={'on' if compiled else 'off'} batch {batch_size}: "
                      f"{r['samples_s']:.0f} samples/s", file=sys.stderr, flush=True)
            del model, forward
            if device.type == "cuda":
                torch.cuda.empty_cache()
    shape = "tiny BERT (2 layers, hidden 64)" if args.tiny else "bert-base-uncased shape"
    print(f"GPU throughput: {shape}, {n_params / 1e6:.1f}M non-embedding parameters, title "
          f"lengths of {Path(args.data).name} (mean {lengths.mean():.1f} tokens), "
          f"{args.steps} timed steps after {args.warmup}; {card}, peak "
          f"{f'{peak:g} TFLOP/s' if peak else 'unknown'} (torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')})\n")
    print("| precision | compile | batch | samples/s | tokens/s | step ms | MFU | peak GiB "
          "| warm-up s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for precision, compiled, batch_size, r, mfu in rows:
        mfu = f"{100 * mfu:.1f}%" if mfu is not None else "-"
        memory = f"{r['peak_gb']:.1f}" if r["peak_gb"] is not None else "-"
        print(f"| {precision} | {compiled} | {batch_size} | {r['samples_s']:.0f} | "
              f"{r['tokens_s']:.0f} | {r['median_step_ms']:.1f} | {mfu} | {memory} | "
              f"{r['warmup_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
