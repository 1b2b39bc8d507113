"""The frozen-phase cache: while the encoder is frozen, its output for a title never changes (its
dropout is off), so train and val are encoded once and the head trains from those outputs.

BERT and RoBERTa classifiers read only the first token's last hidden state, so that is all the
cache holds (titles x hidden size, on the training device). The trainer builds it with the same
sharded scoring as evaluation and iterates it with the training loader's own sampler, so batches
come in the same order and the head's dropout draws the same random numbers: the losses equal
those of running the encoder every epoch, up to float rounding. Other architectures and the
DeepSpeed engine run the encoder every frozen epoch.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .model import encoder_of

# exact classes: a subclass may read the encoder's output differently
SUPPORTED = ("BertForSequenceClassification", "RobertaForSequenceClassification")


class FirstTokenHead(nn.Module):
    """Everything after the encoder of a BERT or RoBERTa classifier, sharing the model's own
    modules (so training it trains the model): logits from the first token's last hidden state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if type(model).__name__ == "BertForSequenceClassification":
            self.pooler, self.dropout = model.bert.pooler, model.dropout
        self.classifier = model.classifier

    def forward(self, first_hidden: torch.Tensor) -> torch.Tensor:
        hidden = first_hidden[:, None]  # BertPooler and RobertaClassificationHead read [:, 0]
        if hasattr(self, "pooler"):  # BERT: pooler -> dropout -> classifier
            return self.classifier(self.dropout(self.pooler(hidden)))
        return self.classifier(hidden)


def first_token_head(model: nn.Module) -> FirstTokenHead | None:
    """The model's head as a module of its own, or None when the cache cannot serve it."""
    if type(model).__name__ not in SUPPORTED:
        return None
    if type(model).__name__ == "BertForSequenceClassification" and model.bert.pooler is None:
        return None
    return FirstTokenHead(model)


def first_token_states(engine, batch: dict) -> torch.Tensor:
    """The encoder's last hidden state of each title's first token, under the run's precision."""
    with engine.amp():
        return encoder_of(engine.model)(input_ids=batch["input_ids"],
                                        attention_mask=batch["attention_mask"]
                                        ).last_hidden_state[:, 0]


def _as_is(batch: dict) -> dict:
    return batch


class CachedTitles(Dataset):
    """Cached first-token states with the targets and token counts of the titles they encode.
    Batches are cut by indexing (``__getitems__``), not item by item."""

    def __init__(self, first_hidden: torch.Tensor, targets: torch.Tensor,
                 n_tokens: torch.Tensor) -> None:
        self.first_hidden, self.targets, self.n_tokens = first_hidden, targets, n_tokens

    def __len__(self) -> int:
        return len(self.first_hidden)

    def __getitems__(self, indices: list[int]) -> dict:
        index = torch.tensor(indices)
        on_device = index.to(self.first_hidden.device)
        return {"index": index, "first_hidden": self.first_hidden[on_device],
                "labels": self.targets[on_device], "n_tokens": self.n_tokens[index]}

    @staticmethod
    def loader(first_hidden: torch.Tensor, targets: torch.Tensor, like: DataLoader) -> DataLoader:
        """A loader over the cache that yields the batches `like` would, in the same order (it
        shares `like`'s sampler, so set_epoch on one reshuffles both)."""
        n_tokens = torch.tensor(like.dataset.lengths)
        return DataLoader(CachedTitles(first_hidden, targets, n_tokens),
                          batch_size=like.batch_size, sampler=like.sampler, collate_fn=_as_is)
