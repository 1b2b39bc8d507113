"""The frozen-phase cache: the head trained from cached encoder outputs gives the same logits and
the same losses as running the encoder every frozen epoch, in one process and under torchrun."""
import json

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from conftest import TINY_RUN, flags, read_jsonl, torchrun
from vacancy.config import TrainConfig
from vacancy.data import PadCollator, TitleDataset
from vacancy.engine import DDPEngine
from vacancy.frozen_cache import CachedTitles, first_token_head
from vacancy.model import load_model, load_tokenizer
from vacancy.trainer import Trainer, make_loader


def random_classifier(model_type: str):
    config = AutoConfig.for_model(model_type, vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_labels=3,
                                  max_position_embeddings=64)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).eval()


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_head_on_first_token_state_gives_the_models_logits(model_type):
    model = random_classifier(model_type)
    ids = torch.randint(5, 100, (4, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        got = first_token_head(model)(hidden)
    torch.testing.assert_close(got, expected)
    head = {id(p) for p in first_token_head(model).parameters()}
    assert head <= {id(p) for p in model.parameters()}  # shares the model's weights


def test_other_architectures_fall_back():
    assert first_token_head(random_classifier("distilbert")) is None


def test_cached_batches_follow_the_training_order_and_score_like_the_model(tiny_model, tmp_path):
    tokenizer = load_tokenizer(str(tiny_model))
    titles = ["java developer", "senior data engineer for big data platforms", "qa", "devops",
              "chief information security officer", "ui designer", "sre", "network admin"]
    targets = np.eye(3, dtype=np.float32)[np.arange(len(titles)) % 3]
    dataset = TitleDataset(tokenizer(titles)["input_ids"], targets)
    config = TrainConfig(batch_size=3, precision="fp32")
    collate = PadCollator(tokenizer.pad_token_id)
    loader = make_loader(dataset, config, collate, train=True)
    engine = DDPEngine(load_model(str(tiny_model), ["a", "b", "c"]), config,
                       torch.device("cpu"), [10])
    trainer = Trainer(engine, config, loader, make_loader(dataset, config, collate, train=False),
                      len(titles), tmp_path, tokenizer)
    engine.set_trainable(0)
    cached_train, _ = trainer._loaders(0)
    assert isinstance(cached_train.dataset, CachedTitles)
    engine.model.eval()
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        for plain, cached in zip(loader, cached_train, strict=True):
            assert torch.equal(plain["index"], cached["index"])
            assert cached["n_tokens"].tolist() == plain["attention_mask"].sum(1).tolist()
            with torch.no_grad():
                torch.testing.assert_close(engine.forward(cached), engine.forward(plain),
                                           rtol=1e-5, atol=1e-6)
    trainer._loaders(None)  # unfreezing drops the cache
    assert trainer.cache is None and engine.head is None


def test_two_process_run_without_cache_has_the_same_losses(ddp_run, tiny_model, small_csv,
                                                           tmp_path):
    """ddp_run trains its frozen epoch from the cache (the default); the same run without it must
    log the same per-step and per-epoch losses, and keep both ranks' weights identical."""
    out = tmp_path / "run"
    proc = torchrun(2, "tests/instrumented_train.py",
                    *flags(data=small_csv, model=tiny_model, output_dir=out, **TINY_RUN),
                    "--no-frozen-cache")
    cached = (ddp_run.parent / "stdout.txt").read_text()
    assert "frozen cache: frozen epochs train the head" in cached
    assert "frozen cache" not in proc.stdout
    steps = {run: [r["train_loss"] for r in read_jsonl(run / "history.jsonl")
                   if r["kind"] == "step"] for run in (ddp_run, out)}
    np.testing.assert_allclose(steps[ddp_run], steps[out], rtol=1e-4)
    epochs = {run: json.loads((run / "metrics.json").read_text())["epochs"]
              for run in (ddp_run, out)}
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([e[key] for e in epochs[ddp_run]],
                                   [e[key] for e in epochs[out]], rtol=1e-4, err_msg=key)
    hashes = [read_jsonl(out / f"weight_hashes.rank{r}.jsonl") for r in (0, 1)]
    assert hashes[0] == hashes[1]
