"""The DeepSpeed engine: same interface as engine.DDPEngine, so the training loop is shared.

Freezing: ZeRO partitions exactly the parameters that require grad when the engine is built, and
silently never trains one that was frozen then. So every parameter stays trainable for DeepSpeed;
during frozen epochs the encoder's gradients are zeroed by hooks (so they neither move it nor
count in the clipping norm) and its LR is 0 (so weight decay does not move it either). The cost:
frozen epochs still run the encoder's backward pass under DeepSpeed.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch

from . import checkpoint, dist
from .checkpoint import CheckpointError
from .config import ConfigError
from .engine import Scorer, build_optimizer, lrs, resolve_precision
from .model import set_trainable

CKPT_DIR = "last_ds"  # DeepSpeed's own checkpoint format: one folder per tag + `latest`


def resolve_ds_config(path: str, config, world_size: int, device: torch.device) -> tuple[dict, str]:
    """Fill the DeepSpeed config from the run's config; list every real conflict in one error."""
    try:
        ds = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"--deepspeed {path}: cannot read a JSON object ({e})")
    conflicts = []
    for key, flag, value in (("train_micro_batch_size_per_gpu", "batch-size", config.batch_size),
                             ("gradient_accumulation_steps", "grad-accum", config.grad_accum),
                             ("gradient_clipping", "max-grad-norm", config.max_grad_norm)):
        if ds.get(key, "auto") == "auto":
            ds[key] = value
        elif ds[key] != value:
            conflicts.append(f"{key} is {ds[key]} but --{flag} is {value}")
    global_batch = config.global_batch(world_size)
    if ds.get("train_batch_size", "auto") not in ("auto", global_batch):
        conflicts.append(f"train_batch_size is {ds['train_batch_size']} but micro batch x "
                         f"accumulation x world size is {global_batch}")
    ds.pop("train_batch_size", None)  # DeepSpeed derives it
    for key in ("optimizer", "scheduler"):
        if key in ds:
            conflicts.append(f"`{key}` is set, but the trainer brings its own (param groups, "
                             "per-step schedule): remove it")
    in_file = "fp16" if ds.get("fp16", {}).get("enabled") else \
        "bf16" if ds.get("bf16", {}).get("enabled") else None
    precision = in_file or resolve_precision("auto", device) if config.precision == "auto" \
        else config.precision
    if config.precision != "auto" and in_file not in (None, precision):
        conflicts.append(f"{in_file} is enabled but --precision is {precision}")
    if conflicts:
        raise ConfigError(f"--deepspeed {path} disagrees with the run's config: "
                          + "; ".join(conflicts))
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"--deepspeed {path}: fp16 needs a GPU; on CPU pass --precision bf16 "
                          "or fp32 (or use ds_config_cpu.json)")
    ds.setdefault("fp16", {})["enabled"] = precision == "fp16"
    ds.setdefault("bf16", {})["enabled"] = precision == "bf16"
    autos = [k for k, v in _flatten(ds) if v == "auto"]
    if autos:
        raise ConfigError(f"--deepspeed {path}: `auto` is only resolved for micro batch, "
                          f"accumulation and clipping; set {', '.join(autos)}")
    ds.setdefault("zero_allow_untested_optimizer", True)  # the trainer's torch AdamW
    return ds, precision


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


class DeepSpeedEngine(Scorer):
    autocast = False  # DeepSpeed casts the model to fp16/bf16 itself

    def __init__(self, model, config, device: torch.device, phase_steps: list[int]) -> None:
        import deepspeed
        ds_config, precision = resolve_ds_config(config.deepspeed, config, dist.world_size(),
                                                 device)
        super().__init__(model, device, precision)
        self.config, self.ds_config = config, ds_config
        self.client_optimizer, scheduler = build_optimizer(model, config, phase_steps)
        self.ds, _, _, _ = deepspeed.initialize(
            model=model, optimizer=self.client_optimizer, lr_scheduler=scheduler,
            config=ds_config)
        self.wrapped = self.ds
        self.stage = ds_config.get("zero_optimization", {}).get("stage", 0)
        self.hooks: list = []

    def set_trainable(self, top_layers: int | None) -> None:
        for hook in self.hooks:
            hook.remove()
        frozen = set_trainable(self.model, top_layers, freeze_grads=False)
        self.hooks = [p.register_hook(torch.zeros_like)
                      for name, p in self.model.named_parameters() if name in frozen]
        if not frozen:
            self._reset_untouched_state()

    def _reset_untouched_state(self) -> None:
        """Drop the AdamW state of groups that only ever saw zero gradients (the encoder while
        frozen): it holds just a step count, which would skew Adam's bias correction and make
        the first unfrozen updates smaller than on DDP, where that state starts at unfreezing."""
        optimizer = self.client_optimizer
        for params in self._flat_params_by_group():
            states = [optimizer.state.get(p) for p in params]
            if states and all(st and not st["exp_avg"].any() for st in states):
                for p in params:
                    optimizer.state.pop(p)

    def _flat_params_by_group(self) -> list[list[torch.Tensor]]:
        """The tensors AdamW really steps, per param group: ZeRO-1/2 put flat fp32 partitions in
        the groups; ZeRO-3 keeps them aside (sub-groups) and leaves the groups empty."""
        zero = self.ds.optimizer
        if not hasattr(zero, "fp32_partitioned_groups_flat"):
            return [g["params"] for g in self.client_optimizer.param_groups]
        groups = [[] for _ in self.client_optimizer.param_groups]
        for i, flat in enumerate(zero.fp32_partitioned_groups_flat):
            groups[zero.sub_group_to_group_id[i]].append(flat)
        return groups

    def no_sync(self, final_micro_step: bool):
        # DeepSpeed all-reduces (or reduce-scatters) only at an accumulation boundary
        self.ds.set_gradient_accumulation_boundary(final_micro_step)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.ds.backward(loss, scale_wrt_gas=False)  # the loop already divided the loss

    def step(self) -> dict:
        skipped_before = self.ds.skipped_steps
        scale = float(getattr(self.ds.optimizer, "cur_scale", 1.0)) \
            if self.precision == "fp16" else 1.0
        self.ds.step()  # clips, steps optimizer and LR schedule, zeroes grads
        norm = self.ds.get_global_grad_norm()
        return {"grad_norm": float(norm) if norm is not None else float("nan"),
                "skipped": self.ds.skipped_steps > skipped_before, "loss_scale": scale}

    def lrs(self) -> dict[str, float]:
        return lrs(self.client_optimizer)

    def save_best(self, run_dir: Path, tokenizer, meta: dict) -> None:
        """A plain save_pretrained directory, consolidated from the ZeRO partitions (a
        collective under ZeRO-3: every rank must call it)."""
        if self.stage == 3:
            state = self.ds._zero3_consolidated_16bit_state_dict()  # full on rank 0 only
        else:
            state = self.model.state_dict()
        dist.on_main(lambda: checkpoint.save_best(
            run_dir, self.model, tokenizer, meta,
            state_dict={k: v.float() for k, v in state.items()}), errors=(checkpoint.WriteError,))

    def save_last(self, run_dir: Path, run_state: str) -> None:
        """DeepSpeed checkpoint (all ranks, one tag). `latest` is only updated once the new tag
        is complete, so a kill mid-save leaves the previous one loadable."""
        run = json.loads(run_state)
        tag = f"epoch{run['epoch']}"
        if run["in_epoch"]:  # saved inside the (next) epoch
            tag += f"_batch{run['in_epoch']['batches']}"
        folder = Path(run_dir) / CKPT_DIR
        try:
            with checkpoint.writing(folder, f"{tag}/", "`latest` still names the previous tag; "):
                self.ds.save_checkpoint(str(folder), tag=tag, client_state={"run": run_state})
        except checkpoint.WriteError:
            latest = folder / "latest"  # moved only once a tag is complete
            if dist.is_main() and not (latest.exists() and latest.read_text().strip() == tag):
                shutil.rmtree(folder / tag, ignore_errors=True)  # the partial tag
            raise
        dist.barrier()
        if dist.is_main():
            for old in folder.iterdir():
                if old.is_dir() and old.name != tag:
                    shutil.rmtree(old)
        dist.barrier()

    def load_last(self, run_dir: Path) -> str | None:
        folder = Path(run_dir) / CKPT_DIR
        if not (folder / "latest").exists():
            return None
        tag = (folder / "latest").read_text().strip()
        # DeepSpeed unpickles its files; first prove they hold only tensors and plain data
        for f in sorted((folder / tag).glob("*.pt")):
            try:
                torch.load(f, weights_only=True, map_location="cpu")
            except Exception as e:
                raise CheckpointError(f"{f}: refusing to load ({str(e).splitlines()[0]})")
        _, client_state = self.ds.load_checkpoint(str(folder), tag=tag)
        return client_state["run"]
