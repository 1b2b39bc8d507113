"""The training engine: one small interface (forward / backward / step / state) over DDP.

The training loop in trainer.py only talks to this, so a second engine (DeepSpeed) can sit behind
the same loop.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch.nn.parallel import DistributedDataParallel

from . import dist
from .model import lr_factor, param_groups, set_trainable


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


class DDPEngine:
    """Model + AdamW + per-step LR schedule + autocast/GradScaler, wrapped in DDP when distributed."""

    def __init__(self, model, config, device: torch.device, phase_steps: list[int]) -> None:
        self.model, self.config, self.device = model.to(device), config, device
        self.precision = resolve_precision(config.precision, device)
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[self.precision]
        groups = param_groups(model, config.lr, config.head_lr, config.weight_decay)
        fused = device.type == "cuda"  # one kernel for all parameters; not available on CPU
        self.optimizer = torch.optim.AdamW(groups, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, LRSchedule(phase_steps, config.warmup_ratio))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.wrapped = model
        self.top_layers: object = "unset"

    def set_trainable(self, top_layers: int | None) -> None:
        """Apply the freezing schedule. DDP fixes its set of synchronised parameters when it is
        built, so it is rebuilt whenever that set changes: otherwise unfrozen encoder gradients
        would never be all-reduced and the ranks' weights would drift apart."""
        set_trainable(self.model, top_layers)
        if top_layers != self.top_layers and dist.world_size() > 1:
            self.wrapped = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.top_layers = top_layers

    def forward(self, batch: dict) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            return self.wrapped(input_ids=batch["input_ids"],
                                attention_mask=batch["attention_mask"]).logits.float()

    def no_sync(self, final_micro_step: bool):
        """Skip DDP's gradient all-reduce on all but the last micro batch of an optimizer step."""
        if final_micro_step or not isinstance(self.wrapped, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.wrapped.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> dict:
        """Clip, step the optimizer and the LR schedule. Returns the gradient norm and whether the
        step was skipped for non-finite gradients (the same on every rank: grads are all-reduced)."""
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        max_norm = self.config.max_grad_norm or math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        scale = self.scaler.get_scale()
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the step itself on inf/nan
            self.scaler.update()
            skipped = self.scaler.get_scale() < scale
        else:
            skipped = not math.isfinite(norm)
            if not skipped:
                self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": norm, "skipped": skipped, "loss_scale": scale}

    def lrs(self) -> dict[str, float]:
        return {g["name"]: g["lr"] for g in self.optimizer.param_groups}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])


class LRSchedule:
    """Picklable LR multiplier for LambdaLR (see model.lr_factor)."""

    def __init__(self, phase_steps: list[int], warmup_ratio: float) -> None:
        self.phase_steps, self.warmup_ratio = list(phase_steps), warmup_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.phase_steps, self.warmup_ratio)
