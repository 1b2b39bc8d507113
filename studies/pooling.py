"""What the classifier reads from the encoder, measured before any change to the stock head
(issue 11, item 3). all-MiniLM-L6-v2 was trained with mean pooling; its pooler never was.

- `cls`: the stock BertForSequenceClassification: the [CLS] state through the checkpoint's pooler
  (dense + tanh), then dropout and the classifier. What a run trains today.
- `fresh`: the same, with the pooler re-initialised as a new layer would be.
- `mean`: the mean of the last layer's token states over the attention mask (how
  sentence-transformers trained and uses MiniLM), then dropout and the classifier; no pooler.

For the study only: `apply` patches a loaded model in place, and a `best/` trained this way loads
back as the stock class, so `quality_study.py --pooling` patches it again before scoring.
Run as a script it is train_ddp.py with the patch (each rank under torchrun):

    torchrun --standalone --nproc_per_node 2 studies/pooling.py mean --data FILE --no-frozen-cache

`mean` needs --no-frozen-cache: the frozen-phase cache holds the first token's state only.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

POOLINGS = ("cls", "fresh", "mean")


class MeanPooler(nn.Module):
    """In place of the encoder's pooler: the masked mean of the token states. BertModel passes
    its pooler the hidden states alone, so the mask is handed over by a hook on the encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.mask = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return hidden.mean(dim=1)
        mask = self.mask[:, :, None].to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def apply(model: nn.Module, pooling: str) -> nn.Module:
    encoder = model.base_model
    if pooling == "fresh":
        nn.init.normal_(encoder.pooler.dense.weight, std=model.config.initializer_range)
        nn.init.zeros_(encoder.pooler.dense.bias)
    elif pooling == "mean":
        pooler = encoder.pooler = MeanPooler()

        def keep_mask(module, args, kwargs):
            pooler.mask = kwargs.get("attention_mask")

        encoder.register_forward_pre_hook(keep_mask, with_kwargs=True)
    return model


def main() -> int:
    pooling, sys.argv[1:] = sys.argv[1], sys.argv[2:]
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    import train_ddp
    from vacancy import model, run

    loaded = []

    def load(*args, **kwargs):  # first the pretrained model, at the end best/ (not re-initialised)
        classifier = model.load_model(*args, **kwargs)
        loaded.append(args[0])
        return apply(classifier, "cls" if pooling == "fresh" and len(loaded) > 1 else pooling)

    run.load_classifier = load
    return train_ddp.main()


if __name__ == "__main__":
    sys.exit(main())
