"""Where the time of one training step goes: our trainer's unfrozen step, phase by phase, then
torch.profiler's most expensive operators.

    python bench/profile_step.py                          # minilm, batch 16, 20 steps
    python bench/profile_step.py --batch-size 32 --max-length 128 --pad-to 128

Phases: batch (DataLoader + PadCollator), forward (autocast, logits), loss + backward,
step (unscale, clip, AdamW, LR schedule, zero_grad): median ms over `--steps` after 3 warm-up
steps. `--pad-to N` pads every batch to N tokens, as the notebook did (128).
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

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vacancy.config import DEFAULT_DATA  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--pad-to", type=int, default=0, help="pad every batch to this width")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=12, help="operators listed")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import transformers
    from vacancy.config import TrainConfig
    from vacancy.data import PadCollator, TitleDataset, load_splits, tokenize
    from vacancy.engines import make_engine
    from vacancy.model import load_model, load_tokenizer
    from vacancy.trainer import make_loader
    transformers.utils.logging.set_verbosity_error()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_splits(args.data)
    config = TrainConfig(model=args.model, batch_size=args.batch_size, max_length=args.max_length,
                         freeze_epochs=0, wandb="off")
    tokenizer = load_tokenizer(args.model)
    dataset = TitleDataset(tokenize(tokenizer, data.parts.train["title"], args.max_length, "train"),
                           data.targets["train"])
    collate = PadCollator(tokenizer.pad_token_id, multiple_of=args.pad_to or
                          (8 if device.type == "cuda" else 1))
    loader = make_loader(dataset, config, collate, train=True)
    engine = make_engine(load_model(args.model, data.labels.names), config, device,
                         [10 * len(loader)])
    engine.set_trainable(None)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {"batch": [], "forward": [], "loss + backward": [], "step": []}
    tokens = []

    def run_step(batches, timed: bool):
        marks = [time.perf_counter()]
        batch = next(batches)
        batch = {k: v.to(device) for k, v in batch.items()}
        marks.append(time.perf_counter())
        logits = engine.forward(batch)
        sync()
        marks.append(time.perf_counter())
        engine.backward(F.binary_cross_entropy_with_logits(logits, batch["labels"]))
        sync()
        marks.append(time.perf_counter())
        engine.step()
        sync()
        marks.append(time.perf_counter())
        if timed:
            for name, a, b in zip(times, marks, marks[1:]):
                times[name].append(1000 * (b - a))
            tokens.append(batch["input_ids"].numel())

    def endless():
        while True:
            yield from loader

    batches = endless()
    for i in range(3 + args.steps):
        run_step(batches, timed=i >= 3)
    total = sum(statistics.median(t) for t in times.values())
    where = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    print(f"one unfrozen training step: {args.model}, batch {args.batch_size}, "
          f"{statistics.mean(tokens) / args.batch_size:.1f} tokens per title after padding, "
          f"precision {engine.precision}; {where} (torch {torch.__version__})\n")
    print("| phase | median ms | share |")
    print("| --- | ---: | ---: |")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | "
              f"{100 * statistics.median(values) / total:.0f}% |")
    print(f"| total | {total:.1f} | |\n")

    activities = [torch.profiler.ProfilerActivity.CPU] + \
        ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            run_step(batches, timed=False)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"torch.profiler, 3 steps, top {args.top} operators by self time:\n")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.top, max_name_column_width=40))
    return 0


if __name__ == "__main__":
    sys.exit(main())
