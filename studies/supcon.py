"""A supervised contrastive term beside the BCE, measured before any change to the loss (issue 11,
item 5; Gunel et al. 2021, "Supervised contrastive learning for pre-trained language model
fine-tuning").

The kNN part of the mix scores a title by its closest train titles under the fine-tuned encoder's
mean token state, which the BCE on the classifier head shapes only indirectly. This adds, for each
micro-batch of the unfrozen epochs, WEIGHT x the multi-label SupCon loss over those same vectors:
two titles that share a label are positives, every other title of the batch a negative,
temperature TAU. Val loss (patience, best/) and everything a run reports stay as they are, and
best/ is a stock checkpoint. Run as train_ddp.py with the patch (each rank under torchrun):

    torchrun --standalone --nproc_per_node 2 studies/supcon.py 0.1 --data FILE --ensemble off
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

TAU = 0.1


def supcon(vectors: torch.Tensor, labels: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """Mean over the titles with a positive in the batch of -mean log p(positive | title)."""
    z = F.normalize(vectors, dim=-1)
    self_pair = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / tau).masked_fill(self_pair, float("-inf"))
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = ((labels @ labels.T) > 0) & ~self_pair
    anchors = positive.any(dim=1)
    if not anchors.any():
        return vectors.sum() * 0.0
    per_anchor = log_p.masked_fill(~positive, 0.0).sum(dim=1) / positive.sum(dim=1).clamp(min=1)
    return -per_anchor[anchors].mean()


def main() -> int:
    weight, sys.argv[1:] = float(sys.argv[1]), sys.argv[2:]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import train_ddp
    from vacancy import engine, trainer

    vectors = {}  # the last forward's mean token states, for the loss that follows it

    def forward(self, batch):
        with self.amp():
            if "first_hidden" in batch:  # frozen phase, from the cache: the encoder does not move
                vectors.clear()
                return self.head(batch["first_hidden"]).float()
            out = self.wrapped(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"], output_hidden_states=True)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        vectors["z"] = (out.hidden_states[-1].float() * mask).sum(1) / mask.sum(1)
        return out.logits.float()

    def loss(logits, labels):
        bce = F.binary_cross_entropy_with_logits(logits, labels)
        z = vectors.pop("z", None)
        return bce if z is None else bce + weight * supcon(z, labels)

    engine.Scorer.forward = forward
    trainer.F = types.SimpleNamespace(binary_cross_entropy_with_logits=loss)
    return train_ddp.main()


if __name__ == "__main__":
    sys.exit(main())
