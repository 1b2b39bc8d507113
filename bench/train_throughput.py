"""Training throughput: our trainer against the original notebook's loop and transformers.Trainer.

    python bench/train_throughput.py                                # minilm, 2,000 rows, batch 16
    python bench/train_throughput.py --rows 600 --frozen-epochs 1 --unfrozen-epochs 1   # quick look
    python bench/train_throughput.py --data ../shared/data/onet_titles_major.csv --rows 4000

Each method runs in a process of its own (so that peak memory is its own), one after the other,
on the same encoder (same initial weights), the same titles (the train/val part of the notebook's
split of `--rows` sampled rows) and the same batch size (16, the notebook's, unless
--batch-size says otherwise), for the same epochs, so for the same
number of optimizer steps: `--frozen-epochs` that train only the head, then `--unfrozen-epochs`.

- ours: vacancy.trainer.Trainer with its defaults, on the DDP engine in one process (fast
  tokenizer once, padding to the longest title of each batch, frozen-phase cache, head LR,
  per-step schedule, fused AdamW);
- ours with the other --group-by-length setting than the default;
- ours with --no-frozen-cache (frozen epochs only);
- notebook: a re-implementation of the original notebook's loop: the tokenizer called per title in
  __getitem__ with padding to 128 (transformers 5 has no encode_plus), BCEWithLogitsLoss,
  one AdamW LR for everything, frozen epochs that re-run the encoder (in train mode, dropout on),
  a linear schedule built for optimizer steps but stepped once per epoch, fp32;
- transformers.Trainer: problem_type="multi_label_classification", tokenized once, dynamic
  padding (DataCollatorWithPadding), its default optimizer, linear schedule with warmup per phase,
  the precision ours resolves `auto` to (bf16 on CUDA cards that have it, else fp16; fp32 on
  CPU); frozen epochs are a first train() with the encoder's requires_grad off.

samples/s is train titles / seconds of one epoch's training (evaluation excluded), the median
over the epochs of a phase. `--repeats R` runs R rounds of all methods, taking every method in
turn, and shows medians over rounds (this shared machine's load changes from minute to minute).
The recipe time covers tokenization, training and one val evaluation per epoch, not model
loading nor checkpoint writing (left out of every method). Val micro-F1 is at threshold 0.5
after the last epoch. Peak memory: max RSS of the process on CPU, torch.cuda.max_memory_allocated
on GPU. The frozen cache's whole-phase ratio compares the frozen epochs with their val
evaluations, cache build included, against the same epochs without the cache.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vacancy.config import DEFAULT_DATA  # noqa: E402

METHODS = ("ours", "ours_grouping", "ours_nocache", "notebook", "hf")


def label(method: str, args) -> str:
    from vacancy.config import TrainConfig
    grouped = TrainConfig().group_by_length  # ours runs the trainer's defaults
    return {"ours": "ours", "ours_nocache": "ours, --no-frozen-cache",
            "ours_grouping": "ours, --no-group-by-length" if grouped else
            "ours, --group-by-length", "notebook": "notebook loop",
            "hf": "transformers.Trainer"}[method]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--rows", type=int, default=2000, help="rows sampled from --data")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-size", type=int, default=16, help="the notebook's was 16")
    parser.add_argument("--frozen-epochs", type=int, default=2)
    parser.add_argument("--unfrozen-epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=0,
                        help="cap on optimizer steps per epoch (keeps steps x batch train titles)")
    parser.add_argument("--lr", type=float, default=1e-4, help="encoder LR (all of the notebook's "
                                                               "and Trainer's parameters)")
    parser.add_argument("--head-lr", type=float, default=3e-3, help="ours only")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of all methods; the table shows medians over rounds")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--method", help=argparse.SUPPRESS)  # run one method in this process
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"--methods: unknown {', '.join(sorted(unknown))}")
    return args


def load_data(args):
    """Train and val titles (cleaned), their label matrices and the label names."""
    from vacancy.data import LabelSpace, read_csv, split
    df = read_csv(args.data)
    if args.rows < len(df):
        df = df.sample(n=args.rows, random_state=0)
    parts = split(df, 42, args.data)
    if args.steps:
        parts.train = parts.train.head(args.steps * args.batch_size)
    labels = LabelSpace.fit(parts.train["labels"])
    return {"train": (parts.train["title"].tolist(), labels.encode(parts.train["labels"], "train")),
            "val": (parts.val["title"].tolist(), labels.encode(parts.val["labels"], "val")),
            "labels": labels.names}


def val_micro_f1(logits: np.ndarray, targets: np.ndarray) -> float:
    from vacancy.metrics import micro_f1, sigmoid
    return float(micro_f1(sigmoid(logits), targets))


def run_ours(args, data, device, cache: bool = True, flip_grouping: bool = False) -> dict:
    from vacancy.config import TrainConfig
    from vacancy.data import PadCollator, TitleDataset, tokenize
    from vacancy.engines import make_engine
    from vacancy.model import init_head_bias, load_model, load_tokenizer
    from vacancy.trainer import Trainer, make_loader, phase_steps, steps_per_epoch
    frozen_only = not cache  # the uncached run is only there for the frozen epochs
    epochs = args.frozen_epochs + (0 if frozen_only else args.unfrozen_epochs)
    config = TrainConfig(model=args.model, epochs=epochs, freeze_epochs=args.frozen_epochs,
                         batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
                         max_length=args.max_length, seed=args.seed, frozen_cache=cache,
                         wandb="off")
    config.group_by_length ^= flip_grouping
    tokenizer = load_tokenizer(args.model)
    torch.manual_seed(args.seed)
    model = load_model(args.model, data["labels"])
    start = time.perf_counter()
    datasets = {part: TitleDataset(tokenize(tokenizer, data[part][0], args.max_length, part),
                                   data[part][1]) for part in ("train", "val")}
    collate = PadCollator(tokenizer.pad_token_id, multiple_of=8 if device.type == "cuda" else 1)
    loaders = {part: make_loader(ds, config, collate, train=part == "train")
               for part, ds in datasets.items()}
    init_head_bias(model, data["train"][1])
    engine = make_engine(model, config, device,
                         phase_steps(config, steps_per_epoch(loaders["train"], 1)))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(engine, config, loaders["train"], loaders["val"], len(datasets["val"]),
                          Path(tmp), tokenizer)
        trainer._save = lambda improved: None  # checkpoints are left out of every method
        records, fit_start = [], time.perf_counter()
        # an epoch's record comes after its val evaluation: its time stamp ends the whole epoch
        trainer.on_log = lambda r: records.append({**r, "at": time.perf_counter()}) \
            if r["kind"] == "epoch" else None
        trainer.fit()
    # from samples/s: the records' `seconds` are rounded to 10 ms, too coarse for cached epochs
    seconds = {phase: [len(datasets["train"]) / r["samples_per_s"] for r in records
                       if r["phase"] == phase] for phase in ("frozen", "unfrozen")}
    return {"recipe_s": None if frozen_only else time.perf_counter() - start,
            "frozen_s": seconds["frozen"], "unfrozen_s": seconds["unfrozen"],
            "frozen_phase_s": max((r["at"] for r in records if r["phase"] == "frozen"),
                                  default=fit_start) - fit_start,
            "val_micro_f1": None if frozen_only else records[-1]["val_micro_f1"]}


def run_notebook(args, data, device) -> dict:
    from torch.utils.data import DataLoader, Dataset
    from transformers import get_linear_schedule_with_warmup
    from vacancy.model import encoder_of, load_model, load_tokenizer
    tokenizer = load_tokenizer(args.model)  # the notebook trained in fp32

    class NotebookDataset(Dataset):  # tokenizes one title per __getitem__, padded to 128
        def __init__(self, titles, targets):
            self.titles, self.targets = titles, targets

        def __len__(self):
            return len(self.titles)

        def __getitem__(self, i):
            enc = tokenizer(self.titles[i], max_length=128, padding="max_length", truncation=True,
                            return_token_type_ids=True)
            return {"ids": torch.tensor(enc["input_ids"], dtype=torch.long),
                    "mask": torch.tensor(enc["attention_mask"], dtype=torch.long),
                    "token_type_ids": torch.tensor(enc["token_type_ids"], dtype=torch.long),
                    "targets": torch.tensor(self.targets[i], dtype=torch.float)}

    torch.manual_seed(args.seed)
    model = load_model(args.model, data["labels"]).to(device)
    start = time.perf_counter()
    train = DataLoader(NotebookDataset(*data["train"]), batch_size=args.batch_size, shuffle=True)
    val = DataLoader(NotebookDataset(*data["val"]), batch_size=args.batch_size)
    epochs = args.frozen_epochs + args.unfrozen_epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(train) * epochs)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    out = {"frozen_s": [], "unfrozen_s": []}
    for epoch in range(epochs):
        frozen = epoch < args.frozen_epochs
        for p in encoder_of(model).parameters():
            p.requires_grad = not frozen
        model.train()
        epoch_start = time.perf_counter()
        for batch in train:
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch["ids"], attention_mask=batch["mask"],
                           token_type_ids=batch["token_type_ids"]).logits
            loss = loss_fn(logits, batch["targets"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()  # once per epoch, as the notebook did
        sync(device)
        out["frozen_s" if frozen else "unfrozen_s"].append(time.perf_counter() - epoch_start)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(b["ids"].to(device), attention_mask=b["mask"].to(device),
                                      token_type_ids=b["token_type_ids"].to(device)).logits
                                for b in val]).float().cpu().numpy()
    out["recipe_s"] = time.perf_counter() - start
    out["val_micro_f1"] = val_micro_f1(logits, data["val"][1])
    return out


def run_hf(args, data, device) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from vacancy.engine import resolve_precision
    from vacancy.model import encoder_of, load_model, load_tokenizer
    precision = resolve_precision("auto", device)  # what ours runs in: same precision for both
    tokenizer = load_tokenizer(args.model)
    torch.manual_seed(args.seed)
    model = load_model(args.model, data["labels"])
    out = {"frozen_s": [], "unfrozen_s": []}

    class EpochTimer(TrainerCallback):  # on_epoch_end comes before the epoch's evaluation
        def on_epoch_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_epoch_end(self, *a, **k):
            sync(device)
            out[self.phase].append(time.perf_counter() - self.start)

    timer = EpochTimer()
    start = time.perf_counter()

    def encode(titles, targets):
        enc = tokenizer(titles, truncation=True, max_length=args.max_length)
        return [{"input_ids": ids, "attention_mask": mask, "labels": t.tolist()}
                for ids, mask, t in zip(enc["input_ids"], enc["attention_mask"], targets)]

    train, val = encode(*data["train"]), encode(*data["val"])
    collator = DataCollatorWithPadding(tokenizer,
                                       pad_to_multiple_of=8 if device.type == "cuda" else None)
    with tempfile.TemporaryDirectory() as tmp:
        for phase, epochs in (("frozen_s", args.frozen_epochs),
                              ("unfrozen_s", args.unfrozen_epochs)):
            if not epochs:
                continue
            encoder_of(model).requires_grad_(phase == "unfrozen_s")
            timer.phase = phase
            hf_args = TrainingArguments(
                output_dir=tmp, per_device_train_batch_size=args.batch_size,
                per_device_eval_batch_size=args.batch_size * 4, num_train_epochs=epochs,
                learning_rate=args.lr, weight_decay=0.01, warmup_steps=0.06,
                lr_scheduler_type="linear", eval_strategy="epoch", save_strategy="no",
                logging_strategy="no", report_to="none", disable_tqdm=True, seed=args.seed,
                use_cpu=device.type == "cpu", fp16=precision == "fp16", bf16=precision == "bf16")
            trainer = Trainer(model=model, args=hf_args, train_dataset=train, eval_dataset=val,
                              data_collator=collator, callbacks=[timer])
            trainer.train()
        logits = trainer.predict(val).predictions
    out["recipe_s"] = time.perf_counter() - start
    out["val_micro_f1"] = val_micro_f1(logits, data["val"][1])
    return out


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_one(args) -> dict:
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_data(args)
    runner = {"ours": run_ours, "ours_nocache": lambda *a: run_ours(*a, cache=False),
              "ours_grouping": lambda *a: run_ours(*a, flip_grouping=True),
              "notebook": run_notebook, "hf": run_hf}[args.method]
    result = runner(args, data, device)
    result.update(peak_mb=peak_memory_mb(device), n_train=len(data["train"][0]),
                  n_val=len(data["val"][0]))
    return result


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads " \
           f"(torch {torch.__version__})"


def ratio(a, b) -> str:
    return f"{a / b:.1f}x" if a and b else "n/a"


def report(args, rounds: dict) -> str:
    """The table and ratios; `rounds` holds each method's results, one per round."""
    any_result = next(iter(rounds.values()))[0]
    n_train, n_val = any_result["n_train"], any_result["n_val"]

    def median(method: str, key: str) -> float | None:
        values = [r[key] for r in rounds.get(method, []) if r.get(key) is not None]
        return statistics.median(values) if values else None

    def rate(method: str, phase: str, epochs=slice(None)) -> float | None:
        """Train titles/s of a phase (`frozen` or `unfrozen`): of its median epoch, the median
        over rounds."""
        rates = [n_train / statistics.median(r[f"{phase}_s"][epochs])
                 for r in rounds.get(method, []) if r[f"{phase}_s"][epochs]]
        return statistics.median(rates) if rates else None

    def fmt(value, digits=0) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"train throughput: {args.model}, {n_train} train / {n_val} val titles "
             f"({Path(args.data).name}, {args.rows} rows sampled), batch {args.batch_size}, "
             f"{args.frozen_epochs} frozen + {args.unfrozen_epochs} unfrozen epochs, median of "
             f"{args.repeats} round(s); {machine()}",
             "", "| method | frozen samples/s | unfrozen samples/s | peak memory MB | recipe s "
             "| val micro-F1 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m in rounds:
        frozen = fmt(rate(m, "frozen"))
        if m in ("ours", "ours_grouping") and args.frozen_epochs > 1:  # 1st builds the cache
            frozen = f"{fmt(rate(m, 'frozen', slice(0, 1)))} (1st), " \
                     f"{fmt(rate(m, 'frozen', slice(1, None)))} (later)"
        lines.append(f"| {label(m, args)} | {frozen} | {fmt(rate(m, 'unfrozen'), 1)} | "
                     f"{max(r['peak_mb'] for r in rounds[m]):.0f} | "
                     f"{fmt(median(m, 'recipe_s'), 1)} | {fmt(median(m, 'val_micro_f1'), 3)} |")
    recipe = {m: median(m, "recipe_s") for m in rounds}
    frozen_phase = median("ours", "frozen_phase_s")
    lines += [
        "", "ratios (this run):",
        f"- unfrozen samples/s, ours / notebook: "
        f"{ratio(rate('ours', 'unfrozen'), rate('notebook', 'unfrozen'))} (target >= 5x)",
        f"- unfrozen samples/s, ours / transformers.Trainer: "
        f"{ratio(rate('ours', 'unfrozen'), rate('hf', 'unfrozen'))} (target >= 1.25x)",
        f"- unfrozen samples/s, {label('ours_grouping', args)} / ours: "
        f"{ratio(rate('ours_grouping', 'unfrozen'), rate('ours', 'unfrozen'))}",
        f"- frozen epoch, cache / no cache: "
        f"{ratio(rate('ours', 'frozen', slice(1, None)), rate('ours_nocache', 'frozen'))} "
        f"after the first (target >= 20x); whole frozen phase (cache build and val "
        f"evaluations included): {ratio(median('ours_nocache', 'frozen_phase_s'), frozen_phase)}",
        f"- frozen samples/s, ours (median epoch) / notebook: "
        f"{ratio(rate('ours', 'frozen'), rate('notebook', 'frozen'))}",
        f"- recipe wall time, notebook / ours: {ratio(recipe.get('notebook'), recipe.get('ours'))}"
        f" (target >= 10x); transformers.Trainer / ours: "
        f"{ratio(recipe.get('hf'), recipe.get('ours'))}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.method:
        Path(args.result).write_text(json.dumps(run_one(args)))
        return 0
    # Rounds take every method in turn, so that a change in the machine's load (it is shared)
    # falls on all of them alike.
    rounds = {method: [] for method in args.methods.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        for round_, method in [(i, m) for i in range(args.repeats) for m in rounds]:
            result = Path(tmp) / f"{method}.json"
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                   "--method", method, "--result", str(result)]
            print(f"round {round_ + 1}/{args.repeats}: {label(method, args)} ...",
                  file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                print(f"error: {label(method, args)} failed (exit {proc.returncode})",
                      file=sys.stderr)
                return 1
            rounds[method].append(json.loads(result.read_text()))
    print(report(args, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
