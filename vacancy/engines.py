"""Which engine a run trains with: DDP (engine.py) or DeepSpeed (deepspeed_engine.py). Kept apart
from both so that deepspeed_engine.py can build on engine.py without an import circle, and
DeepSpeed is imported only by the runs that use it."""
from __future__ import annotations

import torch

from .engine import DDPEngine


def make_engine(model, config, device: torch.device, phase_steps: list[int]):
    if config.deepspeed:
        from .deepspeed_engine import DeepSpeedEngine
        return DeepSpeedEngine(model, config, device, phase_steps)
    return DDPEngine(model, config, device, phase_steps)
