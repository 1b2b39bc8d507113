"""The DDP engine's speed options: torch.compile of the model (wired as the trainer uses it)."""
import pytest
import torch
import torch.nn.functional as F

from vacancy.config import TrainConfig
from vacancy.data import PadCollator
from vacancy.engine import DDPEngine
from vacancy.model import load_model


def train_steps(tiny_model, compile_: bool, batches) -> tuple[list[float], DDPEngine]:
    torch.manual_seed(0)
    model = load_model(str(tiny_model), ["a", "b"])
    engine = DDPEngine(model, TrainConfig(precision="fp32", compile=compile_),
                       torch.device("cpu"), [100])
    engine.set_trainable(None)
    losses = []
    for batch in batches:
        loss = F.binary_cross_entropy_with_logits(engine.forward(batch), batch["labels"])
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    return losses, engine


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tiny_model, monkeypatch):
    # Inductor's C++ build takes minutes on a CPU runner; aot_eager traces the same forward and
    # backward graphs (what can break) without generating code. bench/gpu_check.sh runs the
    # default backend on a GPU.
    compile_ = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **kw: compile_(self, backend="aot_eager", **kw))
    collate = PadCollator(0, multiple_of=8)  # as run.py pads when compiling
    titles = [[101, 2000 + i, 2001, 102][: 3 + i % 2] + [2002] * (i % 9) for i in range(12)]
    batches = [collate([(i, ids, torch.tensor([1.0, 0.0]))
                        for i, ids in enumerate(titles[k:k + 4], start=k)])
               for k in range(0, 12, 4)]
    assert {b["input_ids"].shape[1] for b in batches} <= {8, 16}
    eager, _ = train_steps(tiny_model, False, batches)
    compiled, engine = train_steps(tiny_model, True, batches)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)
    # compiled in place: the checkpoint's keys are the plain model's
    assert not any("_orig_mod" in k for k in engine.model.state_dict())
