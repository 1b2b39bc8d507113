"""Rare-label loss weighting, measured before any change to the loss (issue 11, item 5).

Each label's positive term in the training BCE is weighted by (negatives / positives) ** POWER
on train, capped at 10: POWER 0 is the stock loss, 0.5 the usual square-root weighting that lifts
rare labels without letting them dominate. Only the training loss changes; val loss (patience,
best/) and everything a run reports stay as they are, and best/ is a stock checkpoint.
Run as train_ddp.py with the patch (each rank under torchrun):

    torchrun --standalone --nproc_per_node 2 studies/label_weights.py 0.5 --data FILE
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

CAP = 10.0


def pos_weight(train_targets, power: float) -> torch.Tensor:
    positives = torch.as_tensor(train_targets, dtype=torch.float64).sum(dim=0).clamp(min=1)
    negatives = len(train_targets) - positives
    return ((negatives / positives) ** power).clamp(max=CAP).float()


def main() -> int:
    power, sys.argv[1:] = float(sys.argv[1]), sys.argv[2:]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import train_ddp
    from vacancy import run, trainer

    init_head_bias = run.init_head_bias

    def weighted_loss(logits, labels):
        return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weights.to(logits))

    def init_and_weigh(model, train_targets):  # run.py hands the train targets over here
        global weights
        weights = pos_weight(train_targets, power)
        return init_head_bias(model, train_targets)

    run.init_head_bias = init_and_weigh
    trainer.F = types.SimpleNamespace(binary_cross_entropy_with_logits=weighted_loss)
    return train_ddp.main()


if __name__ == "__main__":
    sys.exit(main())
