import json

import pytest

from vacancy.config import ConfigError, TrainConfig, parse_config


def test_defaults_file_and_flags_take_precedence_in_that_order(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"epochs": 7, "lr": 5e-5, "batch_size": 8}))
    cfg = parse_config(["--config", str(cfg_file), "--epochs", "3"])
    assert cfg.epochs == 3  # flag beats file
    assert cfg.lr == 5e-5 and cfg.batch_size == 8  # file beats default
    assert cfg.head_lr == TrainConfig().head_lr  # default where neither says


def test_unknown_key_in_file_is_an_error(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"epochs": 2, "learning_rate": 1e-4}))
    with pytest.raises(ConfigError, match="unknown key.*learning_rate"):
        parse_config(["--config", str(cfg_file)])


def test_unknown_or_abbreviated_flag_is_a_config_error():
    with pytest.raises(ConfigError, match="unrecognized arguments: --learning-rate"):
        parse_config(["--learning-rate", "1e-4"])
    with pytest.raises(ConfigError, match="unrecognized arguments: --epoch 2"):
        parse_config(["--epoch", "2"])


@pytest.mark.parametrize("values, message", [
    ({"epochs": -1}, "epochs: must be >= 1"),
    ({"epochs": 2, "freeze_epochs": 3}, "freeze_epochs \\(3\\) is larger than epochs \\(2\\)"),
    ({"epochs": "3"}, "epochs: expected int"),
    ({"precision": "fp8"}, "precision: 'fp8' is not one of"),
    ({"thresholds": "1.5"}, "thresholds: a fixed threshold must be in"),
    ({"thresholds": "best"}, "thresholds: expected shrunk, global, per-label or a number"),
    ({"log_every": 0}, "log_every: must be >= 1"),
    ({"knn": -1}, "knn: must be >= 0"),
    ({"layer_lr_decay": 0.0}, "layer_lr_decay: must be in \\(0, 1\\], got 0.0"),
    ({"compile": True, "deepspeed": "ds_config.json"}, "--compile is not supported with"),
])
def test_bad_values_are_rejected_with_the_field_named(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values)


def test_global_batch_and_threshold_policy():
    cfg = TrainConfig(batch_size=16, grad_accum=4, thresholds="0.4")
    assert cfg.global_batch(world_size=2) == 128
    assert cfg.threshold_policy == "0.4"
    assert TrainConfig().threshold_policy == "0.5"
    assert TrainConfig(thresholds="shrunk").threshold_policy == "shrunk"
    assert TrainConfig(thresholds="tuned").threshold_policy == "per-label"  # earlier runs' name


def test_resolved_config_round_trips(tmp_path):
    cfg = TrainConfig(epochs=5, lr=2e-5)
    cfg.save(tmp_path / "config.json")
    assert TrainConfig(**json.loads((tmp_path / "config.json").read_text())) == cfg


def test_auto_precision_is_bf16_where_the_card_has_it(monkeypatch):
    import torch
    from vacancy.engine import resolve_precision
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    for has_bf16, expected in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: has_bf16)
        assert resolve_precision("auto", torch.device("cuda", 0)) == expected
    assert resolve_precision("fp16", torch.device("cuda", 0)) == "fp16"  # asked for: kept
