import numpy as np
import pytest
import torch

from vacancy.model import (head_parameter_names, init_head_bias, load_model, lr_factor,
                           param_groups, set_trainable)


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(str(tiny_model), ["a", "b", "c"])


def test_lr_schedule_warms_up_and_decays_within_each_phase():
    phases = [10, 20]
    assert lr_factor(0, phases, 0.1) == 1.0  # 1 warmup step
    assert lr_factor(9, phases, 0.1) == pytest.approx(1 / 9)
    assert lr_factor(10, phases, 0.1) == 0.5  # unfrozen phase restarts its 2-step warmup
    assert lr_factor(11, phases, 0.1) == 1.0
    assert lr_factor(29, phases, 0.1) == pytest.approx(1 / 18)
    assert lr_factor(30, phases, 0.1) == 0.0
    assert lr_factor(0, [4], 0.0) == 1.0


def test_multilabel_head_with_labels(model):
    assert model.config.problem_type == "multi_label_classification"
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_head_is_classifier_and_pooler(model):
    head = head_parameter_names(model)
    assert {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight"} <= head
    assert not any(n.startswith("bert.encoder") or n.startswith("bert.embeddings") for n in head)


def test_freezing_sets_grads_and_dropout_modes(model):
    set_trainable(model, 0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == head_parameter_names(model)
    assert not model.bert.embeddings.training and not model.bert.encoder.training
    assert model.dropout.training and model.bert.pooler.training
    set_trainable(model, None)
    assert all(p.requires_grad for p in model.parameters())
    assert model.bert.encoder.training


def test_frozen_encoder_builds_no_graph(model):
    set_trainable(model, 0)
    out = model.bert.embeddings(input_ids=torch.tensor([[101, 2000, 102]]))
    assert not out.requires_grad
    set_trainable(model, None)


def test_no_weight_decay_on_bias_and_layernorm(model):
    groups = {g["name"]: g for g in param_groups(model, lr=1e-4, head_lr=1e-3, weight_decay=0.01)}
    assert groups["head"]["lr"] == 1e-3 and groups["encoder"]["lr"] == 1e-4
    assert groups["encoder_no_decay"]["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)]
               for p in groups["encoder_no_decay"]["params"])
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_layer_lr_decay_lowers_the_lr_layer_by_layer_down_to_the_embeddings(model):
    groups = param_groups(model, lr=1e-4, head_lr=1e-3, weight_decay=0.01, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(lr_of) == len(list(model.parameters()))

    def lr(module):  # the one LR of all the module's parameters
        (value,) = {lr_of[id(p)] for p in module.parameters()}
        return value

    n = model.config.num_hidden_layers
    assert [lr(layer) for layer in model.bert.encoder.layer] == \
        pytest.approx([1e-4 * 0.5 ** (n - 1 - i) for i in range(n)])
    assert lr(model.bert.embeddings) == pytest.approx(1e-4 * 0.5 ** n)
    assert lr(model.classifier) == lr(model.bert.pooler) == 1e-3  # the pooler is in the head


def test_head_bias_starts_at_label_priors(model):
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)
    init_head_bias(model, targets)
    np.testing.assert_allclose(torch.sigmoid(model.classifier.bias).detach().numpy(),
                               [0.75, 0.25, 1e-4], rtol=1e-4)


def test_gradual_unfreezing_opens_one_more_top_layer_per_epoch():
    from vacancy.config import TrainConfig
    from vacancy.model import trainable_top_layers
    config = TrainConfig(epochs=4, freeze_epochs=1, unfreeze="gradual")
    assert [trainable_top_layers(config, e) for e in range(4)] == [0, 1, 2, 3]
    assert trainable_top_layers(TrainConfig(epochs=3, freeze_epochs=1), 2) is None
    model = load_model("minilm", ["a", "b"], num_hidden_layers=3)
    frozen = set_trainable(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("bert.encoder")} == \
        {n for n, _ in model.named_parameters() if n.startswith("bert.encoder.layer.2.")}
    assert "bert.embeddings.word_embeddings.weight" in frozen
    assert not model.bert.encoder.layer[1].training and model.bert.encoder.layer[2].training
    set_trainable(model, 3)  # as many as there are layers: the embeddings open too
    assert all(p.requires_grad for p in model.parameters())


def test_a_half_precision_checkpoint_loads_as_fp32_master_weights(tiny_model, tmp_path):
    # e.g. the fp16 copy of MiniLM that bench/gpu_check.sh carries (scripts/prepare_gpu_check.sh)
    from transformers import AutoModel
    AutoModel.from_pretrained(tiny_model, dtype=torch.float16).save_pretrained(tmp_path)
    model = load_model(str(tmp_path), ["a", "b"])
    assert {p.dtype for p in model.parameters()} == {torch.float32}
