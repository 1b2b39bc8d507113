"""Training engines: one small interface over DDP and DeepSpeed.

    set_trainable(top_layers)   apply the freezing schedule
    forward(batch) -> logits    under the run's precision
    no_sync(final)              context for one micro batch (final: the optimizer step follows)
    backward(loss); step()      loss already divided by the micro batches of the step
    save_best / save_last / load_last    called on every rank

The training loop (trainer.py) only talks to this interface, so both engines share it.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint, dist
from .model import lr_factor, param_groups, set_trainable


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on a CUDA card that has it (no loss scaling, fp32's range), fp16 with loss
    scaling on older cards, fp32 on CPU."""
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}


class Scorer:
    """Forward passes under autocast: all that evaluation needs from an engine."""

    def __init__(self, model, device: torch.device, precision: str) -> None:
        self.model, self.device, self.precision = model.to(device), device, precision
        self.wrapped = model

    autocast = True  # False where the engine casts the model itself (DeepSpeed)
    head = None  # the model's head alone, while it trains from the frozen-phase cache

    def amp(self):
        """The autocast context of the run's precision."""
        dtype = DTYPES[self.precision]
        return torch.autocast(self.device.type, dtype=dtype,
                              enabled=self.autocast and bool(dtype))

    def forward(self, batch: dict) -> torch.Tensor:
        with self.amp():
            if "first_hidden" in batch:  # a batch of cached encoder outputs (frozen_cache.py)
                return self.head(batch["first_hidden"]).float()
            return self.wrapped(input_ids=batch["input_ids"],
                                attention_mask=batch["attention_mask"]).logits.float()


class LRSchedule:
    """Picklable LR multiplier of one param group (see model.lr_factor). Encoder groups stay at 0
    while the encoder is frozen, so nothing (weight decay included) moves it."""

    def __init__(self, phase_steps: list[int], warmup_ratio: float, frozen_steps: int) -> None:
        self.phase_steps, self.warmup_ratio = list(phase_steps), warmup_ratio
        self.frozen_steps = frozen_steps

    def __call__(self, step: int) -> float:
        if step < self.frozen_steps:
            return 0.0
        return lr_factor(step, self.phase_steps, self.warmup_ratio)


def build_optimizer(model, config, phase_steps: list[int], fused: bool = False):
    """AdamW over the head/encoder param groups, and its per-optimizer-step LR schedule."""
    groups = param_groups(model, config.lr, config.head_lr, config.weight_decay,
                          config.layer_lr_decay)
    optimizer = torch.optim.AdamW(groups, fused=fused)
    frozen_steps = phase_steps[0] if config.freeze_epochs else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [
        LRSchedule(phase_steps, config.warmup_ratio,
                   0 if g["name"].startswith("head") else frozen_steps) for g in groups])
    return optimizer, scheduler


def lrs(optimizer) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in optimizer.param_groups}


class DDPEngine(Scorer):
    """Model + AdamW + LR schedule + autocast/GradScaler, wrapped in DDP when distributed."""

    def __init__(self, model, config, device: torch.device, phase_steps: list[int]) -> None:
        super().__init__(model, device, resolve_precision(config.precision, device))
        self.config = config
        # fused: one multi-threaded kernel for all parameters; on CPU ~10x faster than the
        # default per-tensor loop (bench/train_throughput.py, docs/PERFORMANCE.md)
        self.optimizer, self.scheduler = build_optimizer(model, config, phase_steps,
                                                         fused=device.type in ("cuda", "cpu"))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.top_layers: object = "unset"
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        # DDP only runs with several ranks; VACANCY_DDP_ONE_RANK=1 builds it under a one-rank
        # launcher too, so that bench/gpu_check.sh can measure DDP's own cost on one GPU
        self.distributed = dist.world_size() > 1 or (
            dist.launched() and os.environ.get("VACANCY_DDP_ONE_RANK") == "1")
        if config.compile:
            # in place: the module (and its state_dict keys, hence checkpoints) stays the same;
            # batches are padded to multiples of 8 tokens (run.py), so few shapes compile
            model.compile()

    def set_trainable(self, top_layers: int | None) -> None:
        """Apply the freezing schedule. DDP fixes its set of synchronised parameters when it is
        built, so it is rebuilt whenever that set changes: otherwise unfrozen encoder gradients
        would never be all-reduced and the ranks' weights would drift apart."""
        set_trainable(self.model, top_layers)
        # listed once here: walking model.parameters() every step costs ~1 ms, as much as a
        # whole step of the head on the frozen-phase cache
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if top_layers != self.top_layers and self.distributed:
            self.wrapped = self._ddp(self.model)
        self.top_layers = top_layers

    def use_cache(self, head: torch.nn.Module | None) -> None:
        """Train `head` (frozen_cache.FirstTokenHead: the model's own head modules) on cached
        encoder outputs, or the whole model again (None). The head gets a DDP of its own, so its
        gradients are still all-reduced; the model's DDP sees no forward meanwhile, so its hooks
        stay idle."""
        if head is not None and self.distributed:
            head = self._ddp(head)
        self.head = head

    def _ddp(self, module: torch.nn.Module) -> DistributedDataParallel:
        """DDP for a 110M-parameter encoder (--ddp-tuned): 440 MB of fp32 gradients go in 50 MB
        buckets (PyTorch's 25 MB means ~18 all-reduce launches per step); gradients are views
        into the buckets (no copy, one gradient-sized buffer less). Without accumulation the
        graph is static within one DDP (rebuilt whenever the trainable set changes), so DDP can
        skip re-checking which parameters were used; static_graph fails under no_sync (torch
        2.13: "expect_autograd_hooks_ INTERNAL ASSERT"), so not with --grad-accum > 1.
        --no-ddp-tuned: PyTorch's defaults."""
        tuned = dict(bucket_cap_mb=50, gradient_as_bucket_view=True,
                     static_graph=self.config.grad_accum == 1) if self.config.ddp_tuned else {}
        return DistributedDataParallel(
            module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            **tuned)

    def no_sync(self, final_micro_step: bool):
        """Skip DDP's gradient all-reduce on all but the last micro batch of an optimizer step."""
        module = self.wrapped if self.head is None else self.head
        if final_micro_step or not isinstance(module, DistributedDataParallel):
            return contextlib.nullcontext()
        return module.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> dict:
        """Clip, step the optimizer and the LR schedule. Returns the gradient norm, the loss scale
        and whether the step was skipped for non-finite gradients (the same on every rank: grads
        are all-reduced) as device tensors: reading one waits for the device, so the trainer
        reads them only every --log-every steps."""
        self.scaler.unscale_(self.optimizer)
        max_norm = self.config.max_grad_norm or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.trainable, max_norm)
        if self.scaler.is_enabled():
            scale = self.scaler._get_scale_async().clone()  # get_scale() would wait for the device
            self.scaler.step(self.optimizer)  # skips the step itself on inf/nan
            self.scaler.update()  # halves the scale on the device after a skipped step
            skipped = self.scaler._get_scale_async() < scale
        else:
            scale, skipped = torch.ones_like(norm), ~torch.isfinite(norm)
            if self.optimizer.defaults["fused"]:
                self.optimizer.found_inf = skipped.float()  # the fused kernel skips the update
                self.optimizer.step()
            elif not skipped.item():  # a host sync: only where fused AdamW is not available
                self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": norm, "skipped": skipped, "loss_scale": scale}

    def lrs(self) -> dict[str, float]:
        return lrs(self.optimizer)

    def save_best(self, run_dir: Path, tokenizer, meta: dict) -> None:
        dist.on_main(checkpoint.save_best, run_dir, self.model, tokenizer, meta,
                     errors=(checkpoint.WriteError,))

    def save_last(self, run_dir: Path, run_state: str) -> None:
        dist.on_main(lambda: checkpoint.save_last(run_dir, self.model, {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "run": run_state}),
            errors=(checkpoint.WriteError,))

    def load_last(self, run_dir: Path) -> str | None:
        """Load last/ (every rank reads the same files); return the saved run state."""
        state = checkpoint.load_last(run_dir, self.model)
        if state is None:
            return None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        return state["run"]
