"""The training loop, evaluation with de-duplicated gathers, and the run's bookkeeping."""
from __future__ import annotations

import json
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from . import dist
from .checkpoint import LAST, CheckpointError
from .data import LengthGroupedSampler, LengthSortedSampler, ResumableSampler
from .frozen_cache import CachedTitles, first_token_head, first_token_states
from .metrics import bce_with_logits, macro_f1, micro_f1, sigmoid
from .model import trainable_top_layers
from .progress import Progress

log = logging.getLogger("vacancy")
MAX_BAD_STEPS = 20  # consecutive non-finite steps before the run gives up


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stays non-finite); the message says why."""


class Stopped(Exception):
    """The run saved last/ and stopped on SIGUSR1 (e.g. Slurm's warning before the time limit);
    --resume, or the requeued job, goes on from that step."""


def step_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The dropout seed of the optimizer step that starts at micro batch `batch` of `epoch`."""
    return int(np.random.SeedSequence([seed, epoch, batch, rank]).generate_state(1)[0])


def make_loader(dataset, config, collate, train: bool) -> DataLoader:
    """Every rank gets its own shard. For val/test the sampler pads the last shard by repeating
    items; evaluate() drops those again by dataset index."""
    lengths = dataset.lengths
    if not train:  # order does not matter: scores are gathered by index
        sampler = LengthSortedSampler(lengths, dist.world_size(), dist.rank())
    elif config.group_by_length:
        sampler = LengthGroupedSampler(lengths, config.batch_size, dist.world_size(), dist.rank(),
                                       config.seed)
    else:
        sampler = DistributedSampler(dataset, num_replicas=dist.world_size(), rank=dist.rank(),
                                     shuffle=True, seed=config.seed, drop_last=False)
    if train:
        sampler = ResumableSampler(sampler)
    return DataLoader(dataset, batch_size=config.batch_size if train else config.batch_size * 4,
                      sampler=sampler, collate_fn=collate, num_workers=config.num_workers,
                      pin_memory=torch.cuda.is_available(),
                      persistent_workers=config.num_workers > 0)


def steps_per_epoch(loader: DataLoader, grad_accum: int) -> int:
    return math.ceil(len(loader) / grad_accum)


def phase_steps(config, spe: int) -> list[int]:
    """Optimizer steps of the frozen phase and of the unfrozen phase."""
    return [n for n in (config.freeze_epochs * spe, (config.epochs - config.freeze_epochs) * spe)
            if n > 0]


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def gather_by_index(score, loader: DataLoader, n_items: int,
                    device) -> tuple[torch.Tensor, torch.Tensor]:
    """`score(batch)` and the targets for the whole dataset in dataset order, identical on every
    rank: each rank scores its shard, all shards are gathered, and the sampler's padding
    duplicates are dropped by index."""
    index, outputs, targets = [], [], []
    for batch in loader:
        batch = _to(batch, device)
        index.append(batch["index"])
        outputs.append(score(batch))
        targets.append(batch["labels"])
    index, outputs, targets = (dist.all_gather_cat(torch.cat(x).to(device)) for x in
                               (index, outputs, targets))
    order = np.unique(index.cpu().numpy(), return_index=True)[1]
    assert len(order) == n_items, f"gathered {len(order)} of {n_items} items"
    order = torch.from_numpy(order).to(device)
    return outputs[order], targets[order]


def predict_logits(engine, loader: DataLoader, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets for the whole dataset, identical on every rank."""
    engine.model.eval()
    logits, targets = gather_by_index(engine.forward, loader, n_items, engine.device)
    return logits.cpu().numpy(), targets.cpu().numpy()


def n_tokens(batch: dict) -> int:
    """Non-padding tokens of a batch (of titles, or of cached encoder outputs)."""
    return int(batch["n_tokens"].sum() if "n_tokens" in batch else batch["attention_mask"].sum())


def patience_ran_out(config, state: "RunState") -> bool:
    """Early stopping, after an epoch: val loss has not improved for --patience epochs since the
    encoder unfroze (frozen epochs do not count: unfreezing is what the recipe waits for), and
    epochs are left to skip."""
    unfrozen_since_best = state.epoch - max(state.best_epoch, config.freeze_epochs)
    return 0 < config.patience <= unfrozen_since_best and state.epoch < config.epochs


@dataclass
class RunState:
    epoch: int = 0  # next epoch to train
    step: int = 0  # optimizer steps taken
    best_val_loss: float = math.inf
    best_epoch: int = -1
    skipped_steps: int = 0
    epochs: list = field(default_factory=list)
    train_seconds: float = 0.0  # epochs' wall time (train + val), summed over resumed attempts
    stopped_early: bool = False  # --patience ran out: the remaining epochs are not trained
    # Saved mid-epoch only: where in `epoch` last/ was written. "batches": micro batches each rank
    # had consumed; "loss": per rank [sum of per-sample losses, samples] so far; "seconds": the
    # epoch's wall time so far; "world_size": the ranks that shared the epoch out.
    in_epoch: dict = field(default_factory=dict)


class Trainer:
    def __init__(self, engine, config, train_loader, val_loader, n_val: int, run_dir: Path,
                 tokenizer, on_log=None) -> None:
        self.engine, self.config = engine, config
        self.train_loader, self.val_loader, self.n_val = train_loader, val_loader, n_val
        self.run_dir, self.tokenizer = Path(run_dir), tokenizer
        self.state = RunState()
        self.on_log = on_log or (lambda record: None)
        self.steps_per_epoch = steps_per_epoch(train_loader, config.grad_accum)
        self._window: list = []  # (device tensor of the step's numbers, its LRs) per step
        self._seen, self._window_start = [0, 0], time.perf_counter()
        self.cache_head, self.cache = self._cache_head(), None
        self.signalled = self.stopping = False  # SIGUSR1 seen here / on some rank

    def _cache_head(self):
        """The head to train from the frozen-phase cache, or None (with the reason logged)."""
        config = self.config
        if not (config.frozen_cache and config.freeze_epochs):
            return None
        head = first_token_head(self.engine.model)
        if not hasattr(self.engine, "use_cache"):
            log.info("frozen cache: not with DeepSpeed; frozen epochs run the encoder")
        elif head is None:
            log.info("frozen cache: %s is not a BERT or RoBERTa classifier; frozen epochs run the "
                     "encoder", type(self.engine.model).__name__)
        else:
            log.info("frozen cache: frozen epochs train the head from encoder outputs computed "
                     "once")
            return head
        return None

    def _loaders(self, top_layers: int | None) -> tuple[DataLoader, DataLoader]:
        """Train and val loaders of an epoch: over the frozen-phase cache while the encoder is
        wholly frozen and the cache applies (built on first use), over the titles otherwise."""
        if top_layers != 0 or self.cache_head is None:
            if self.cache is not None:
                self.engine.use_cache(None)
                self.cache = None  # frees the cached outputs
            return self.train_loader, self.val_loader
        if self.cache is None:
            start, self.cache = time.perf_counter(), []
            for loader in (self.train_loader, self.val_loader):
                # scanned like val (every rank encodes its shard), iterated like `loader`
                scan = make_loader(loader.dataset, self.config, loader.collate_fn, train=False)
                self.engine.model.eval()
                hidden, targets = gather_by_index(lambda b: first_token_states(self.engine, b),
                                                  scan, len(loader.dataset), self.engine.device)
                self.cache.append(CachedTitles.loader(hidden, targets, loader))
            log.info("frozen cache: encoded %d train + %d val titles in %.1fs",
                     len(self.train_loader.dataset), self.n_val, time.perf_counter() - start)
            self.engine.use_cache(self.cache_head)
            self.engine.set_trainable(0)  # back to train mode after the encoding pass
        return tuple(self.cache)

    def fit(self) -> RunState:
        """Train the remaining epochs. SIGUSR1 makes it save last/ at the next optimizer step and
        raise Stopped."""
        previous = signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "signalled", True))
        try:
            return self._fit()
        finally:
            signal.signal(signal.SIGUSR1, previous)

    def _fit(self) -> RunState:
        config, state = self.config, self.state
        for epoch in range(state.epoch, config.epochs):
            if state.stopped_early:  # a resumed run that had stopped
                break
            top = trainable_top_layers(config, epoch)
            self.engine.set_trainable(top)
            phase = "frozen" if top == 0 else "unfrozen"
            resumed, state.in_epoch = state.in_epoch, {}
            # building the cache counts in its first epoch; a resumed epoch keeps its saved part
            start = time.perf_counter() - resumed.get("seconds", 0.0)
            train_loader, val_loader = self._loaders(top)
            train_loss, n_seen = self._run_epoch(epoch, train_loader, resumed, start)
            seconds = time.perf_counter() - start
            val_logits, val_targets = predict_logits(self.engine, val_loader, self.n_val)
            val_loss = bce_with_logits(val_logits, val_targets)
            record = {"epoch": epoch + 1, "phase": phase, "train_loss": train_loss,
                      "val_loss": val_loss,
                      "val_micro_f1": micro_f1(sigmoid(val_logits), val_targets),
                      "val_macro_f1": macro_f1(sigmoid(val_logits), val_targets),
                      "seconds": round(seconds, 2), "samples_per_s": round(n_seen / seconds, 1)}
            state.epochs.append(record)
            state.epoch, improved = epoch + 1, val_loss < state.best_val_loss
            state.train_seconds += time.perf_counter() - start
            if improved:  # val_loss is computed from gathered logits: every rank agrees
                state.best_val_loss, state.best_epoch = val_loss, epoch + 1
            # so does every rank on stopping; saved with the state, so a resumed run stays stopped
            state.stopped_early = patience_ran_out(config, state)
            self._save(improved)
            if dist.is_main():
                log.info(f"epoch {epoch + 1}/{config.epochs} {phase:8s} train_loss "
                         f"{train_loss:.4f} val_loss {val_loss:.4f} val_micro_f1 "
                         f"{record['val_micro_f1']:.4f} {seconds:.1f}s "
                         f"{record['samples_per_s']:.1f} samples/s{' *best*' if improved else ''}")
            self.on_log({"kind": "epoch", **record})
            if state.stopped_early and dist.is_main():
                log.info(f"early stop: val loss has not improved for {config.patience} "
                         f"epoch(s); best/ holds epoch {state.best_epoch}")
            if self.stopping:  # the signal came in the epoch's last step: last/ is written
                raise Stopped(f"stopped after epoch {epoch + 1} (step {state.step})")
        return state

    def _run_epoch(self, epoch: int, loader: DataLoader, resumed: dict,
                   start: float) -> tuple[float, int]:
        """Train one epoch, from `resumed["batches"]` on when last/ was saved inside it."""
        config, engine = self.config, self.engine
        skip = resumed.get("batches", 0)
        loader.sampler.set_epoch(epoch, skip * config.batch_size)
        n_batches = skip + len(loader)
        # sum of per-sample losses, samples; on the engine's device, as NCCL needs
        loss_sum = torch.tensor(resumed["loss"][dist.rank()] if resumed else [0.0, 0.0],
                                dtype=torch.float64, device=engine.device)
        progress = Progress(f"epoch {epoch + 1}", n_batches, enabled=dist.is_main(), done=skip)
        # samples and non-padding tokens since the last record (host counts: no sync)
        self._seen, self._window_start = [0, 0], time.perf_counter()
        for i, batch in enumerate(loader, start=skip):
            if i % config.grad_accum == 0:
                # Dropout RNG is a function of (seed, epoch, step, rank), so a run resumed at any
                # step, mid-epoch too, continues exactly as the uninterrupted run would.
                torch.manual_seed(step_seed(config.seed, epoch, i, dist.rank()))
            self._seen = [self._seen[0] + len(batch["labels"]), self._seen[1] + n_tokens(batch)]
            batch = _to(batch, engine.device)
            first = i - i % config.grad_accum
            in_step = min(config.grad_accum, n_batches - first)  # the last step may be short
            final = i == first + in_step - 1
            with engine.no_sync(final):
                logits = engine.forward(batch)
                loss = F.binary_cross_entropy_with_logits(logits, batch["labels"])
                engine.backward(loss / in_step)
            n = len(batch["labels"])
            loss_sum[0] += loss.detach().double() * n
            loss_sum[1] += n
            if final:
                lrs = engine.lrs()  # the LRs this step uses (the scheduler moves on in step())
                self._after_step(engine.step(), loss.detach(), lrs)
                if self.state.step % config.log_every == 0 or i == n_batches - 1:
                    self._log_steps()
                if self._save_now() and i + 1 < n_batches:  # at the epoch's end fit() saves
                    if self._window:  # the history then holds every step up to the checkpoint
                        self._log_steps()
                    self._save_in_epoch(i + 1, loss_sum, time.perf_counter() - start)
                    if self.stopping:
                        progress.close()
                        raise Stopped(f"stopped at step {self.state.step}, {i + 1} of "
                                      f"{n_batches} batches into epoch {epoch + 1}")
            progress.update(n * dist.world_size(), loss, self.state.step)
        progress.close()
        total = dist.all_reduce_sum(loss_sum)
        return float(total[0] / total[1]), int(total[1])

    def _after_step(self, out: dict, loss: torch.Tensor, lrs: dict) -> None:
        """Count the optimizer step and keep its numbers on the device until the next record
        (reading them now would make the host wait for the device every step)."""
        self.state.step += 1
        self._window.append((torch.stack([torch.as_tensor(out[k], dtype=torch.float32,
                                                          device=self.engine.device)
                                          for k in ("grad_norm", "loss_scale", "skipped")]
                                         + [loss.float()]), lrs))

    def _log_steps(self) -> dict:
        """Read the steps since the last record (one host sync), count the skipped ones, and log
        one step record: means of rank 0's loss (last micro batch of each step) and of the
        gradient norm, the steps skipped, the last step's LRs and loss scale, and the
        throughput of all ranks together since the last record, data loading included."""
        values = torch.stack([v for v, _ in self._window]).tolist()  # waits for the device
        lrs, self._window = self._window[-1][1], []
        seen = dist.all_reduce_sum(torch.tensor(self._seen, device=self.engine.device)).tolist()
        now = time.perf_counter()
        seconds, self._seen, self._window_start = now - self._window_start, [0, 0], now
        for norm, scale, skipped, loss in values:
            self.state.skipped_steps += int(skipped)
            self._bad_run = self._bad_run + 1 if skipped else 0
            if self._bad_run >= MAX_BAD_STEPS:
                raise TrainingError(
                    f"the last {self._bad_run} optimizer steps had non-finite gradients (loss "
                    f"{loss}); lower --lr/--head-lr or use --precision bf16/fp32")
        record = {"kind": "step", "step": self.state.step,
                  "train_loss": sum(v[3] for v in values) / len(values),
                  "grad_norm": sum(v[0] for v in values) / len(values),
                  "loss_scale": values[-1][1], "skipped": int(sum(v[2] for v in values)),
                  **{f"lr/{k}": v for k, v in lrs.items()},
                  "samples_per_s": seen[0] / seconds, "tokens_per_s": seen[1] / seconds}
        self.on_log(record)
        return record

    _bad_run = 0

    def _save_now(self) -> bool:
        """Whether to write last/ after this optimizer step: every --save-every-steps steps, or
        once any rank got SIGUSR1. Called by every rank at every step; the flag is all-reduced
        (a host-side collective) so that all ranks save, and stop, at the same step."""
        self.stopping = dist.any_rank(self.signalled)
        every = self.config.save_every_steps
        return self.stopping or bool(every and self.state.step % every == 0)

    def _save_in_epoch(self, batches: int, loss_sum: torch.Tensor, seconds: float) -> None:
        """last/ with the position inside the epoch (see RunState.in_epoch)."""
        self.state.in_epoch = {"batches": batches, "world_size": dist.world_size(),
                               "loss": dist.all_gather_cat(loss_sum[None]).tolist(),
                               "seconds": seconds}
        self.engine.save_last(self.run_dir, json.dumps(self.state.__dict__))
        self.state.in_epoch = {}

    def _save(self, improved: bool) -> None:
        """best/ when val loss improved, and last/. Every rank calls this: the engine decides who
        writes (DeepSpeed needs all ranks in save_checkpoint; DDP lets rank 0 write)."""
        if improved:
            self.engine.save_best(self.run_dir, self.tokenizer,
                                  {"epoch": self.state.best_epoch,
                                   "val_loss": self.state.best_val_loss})
        self.engine.save_last(self.run_dir, json.dumps(self.state.__dict__))

    def load(self) -> bool:
        """Resume from the last checkpoint if there is one."""
        saved = self.engine.load_last(self.run_dir)
        if saved is None:
            return False
        self.state = RunState(**json.loads(saved))
        saved_by = self.state.in_epoch.get("world_size", dist.world_size())
        if saved_by != dist.world_size():  # the position is per rank
            raise CheckpointError(
                f"{self.run_dir / LAST} was saved inside epoch {self.state.epoch + 1} by "
                f"{saved_by} process(es): resume it with {saved_by}, not {dist.world_size()}")
        return True
