"""DeepSpeed behind the same training loop: ZeRO-2 and ZeRO-3 runs under real torchrun (gloo, CPU).

DeepSpeed JIT-compiles a shared-memory comm op on its first use on a machine (~1-2 min, cached in
~/.cache/torch_extensions); later runs load it from the cache.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY_RUN, flags, read_jsonl, torchrun
from vacancy.config import ConfigError, TrainConfig

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (bash scripts/setup.sh --dev)")
from vacancy.deepspeed_engine import resolve_ds_config  # noqa: E402

CPU = __import__("torch").device("cpu")
# Tolerance of the loss curves against DDP: the optimizer math is the same, but ZeRO reduces and
# updates flattened fp32 partitions (other summation order), and the encoder's Adam step count
# runs through the frozen epoch (gradients there are zeros), so its first unfrozen updates differ.
REL_TOL = 0.05


def ds_config(tmp_path, stage: int) -> str:
    cfg = json.loads((ROOT / "ds_config_cpu.json").read_text())
    cfg["zero_optimization"]["stage"] = stage
    path = tmp_path / f"ds_stage{stage}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.fixture(scope="module", params=[2, 3])
def ds_run(request, tmp_path_factory, tiny_model, small_csv):
    tmp = tmp_path_factory.mktemp(f"ds{request.param}")
    out = tmp / "run"
    torchrun(2, "tests/instrumented_train.py",
             *flags(data=small_csv, model=tiny_model, output_dir=out,
                    deepspeed=ds_config(tmp, request.param), **TINY_RUN), DS_ACCELERATOR="cpu")
    return request.param, out


def test_deepspeed_run_writes_what_a_ddp_run_writes(ds_run, ddp_run):
    _, out = ds_run
    expected = {p.name for p in ddp_run.iterdir()} - {"last", "weight_hashes.rank0.jsonl",
                                                      "weight_hashes.rank1.jsonl"}
    assert expected <= {p.name for p in out.iterdir()}
    assert (out / "last_ds" / "latest").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["optimizer_steps"] == \
        json.loads((ddp_run / "metrics.json").read_text())["optimizer_steps"]


def test_loss_curve_matches_ddp(ds_run, ddp_run):
    _, out = ds_run
    ds_epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    ddp_epochs = json.loads((ddp_run / "metrics.json").read_text())["epochs"]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([e[key] for e in ds_epochs], [e[key] for e in ddp_epochs],
                                   rtol=REL_TOL, err_msg=key)
    spe = json.loads((ddp_run / "metrics.json").read_text())["optimizer_steps"] // 3
    ds_steps, ddp_steps = ([(r["step"], r["train_loss"]) for r in read_jsonl(run / "history.jsonl")
                            if r["kind"] == "step" and r["step"] <= spe] for run in (out, ddp_run))
    # the frozen epoch trains the same head on the same batches: nearly identical
    assert [s for s, _ in ds_steps] == [s for s, _ in ddp_steps]
    np.testing.assert_allclose([x for _, x in ds_steps], [x for _, x in ddp_steps], rtol=1e-3)


def test_freezing_schedule_holds_under_deepspeed(ds_run):
    stage, out = ds_run
    if stage == 3:
        pytest.skip("ZeRO-3 partitions the weights across ranks: per-rank hashes are not "
                    "comparable; stage 2 covers the schedule")
    ranks = [read_jsonl(out / f"weight_hashes.rank{r}.jsonl") for r in (0, 1)]
    assert ranks[0] == ranks[1]
    by_epoch = {h["epoch"]: h for h in ranks[0]}
    assert by_epoch[1]["encoder"] == by_epoch[0]["encoder"]
    assert by_epoch[1]["head"] != by_epoch[0]["head"]
    assert by_epoch[2]["encoder"] != by_epoch[1]["encoder"]  # trained after unfreezing
    assert by_epoch[3]["encoder"] != by_epoch[2]["encoder"]


def test_exported_best_is_a_plain_model(ds_run):
    from transformers import AutoModelForSequenceClassification
    _, out = ds_run
    model = AutoModelForSequenceClassification.from_pretrained(out / "best")
    assert model.config.problem_type == "multi_label_classification"
    weight = model.classifier.weight.detach().numpy()
    assert weight.shape[0] == len(json.loads((out / "best" / "thresholds.json").read_text()))
    assert np.isfinite(weight).all() and weight.std() > 0


def test_conflicting_ds_config_lists_every_conflict(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": 16,
                                "gradient_accumulation_steps": 4, "gradient_clipping": 1.0,
                                "fp16": {"enabled": True}, "optimizer": {"type": "Adam"}}))
    config = TrainConfig(batch_size=32, grad_accum=1, precision="bf16", deepspeed=str(path))
    with pytest.raises(ConfigError) as e:
        resolve_ds_config(str(path), config, world_size=2, device=CPU)
    message = str(e.value)
    assert message.startswith(f"--deepspeed {path} disagrees with the run's config: ")
    for part in ("train_micro_batch_size_per_gpu is 16 but --batch-size is 32",
                 "gradient_accumulation_steps is 4 but --grad-accum is 1",
                 "fp16 is enabled but --precision is bf16", "`optimizer` is set"):
        assert part in message
    assert "gradient_clipping" not in message  # agrees: not a conflict


def test_ds_config_is_filled_from_the_run_config():
    config = TrainConfig(batch_size=16, grad_accum=2, max_grad_norm=0.5, precision="bf16")
    ds, precision = resolve_ds_config(str(ROOT / "ds_config_cpu.json"), config, 2, CPU)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"],
            ds["gradient_clipping"]) == (16, 2, 0.5)
    assert precision == "bf16" and ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    gpu, precision = resolve_ds_config(str(ROOT / "ds_config.json"), TrainConfig(), 4,
                                       __import__("torch").device("cuda"))
    assert precision == "fp16" and gpu["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    assert gpu["zero_optimization"]["stage"] == 2 and "train_batch_size" not in gpu
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        resolve_ds_config(str(ROOT / "ds_config.json"), TrainConfig(), 1, CPU)


@pytest.mark.slow
def test_deepspeed_launcher_runs_the_same_entry_point(tmp_path, tiny_model, small_csv):
    """`deepspeed --num_gpus 2 train_ddp.py ...` (it passes --local_rank; CPU: one process per
    "GPU" slot) writes a complete run."""
    import subprocess
    import sys
    from conftest import run_env
    out = tmp_path / "run"
    launcher = Path(sys.executable).parent / "deepspeed"
    proc = subprocess.run([str(launcher), "--num_gpus", "2", "train_ddp.py",
                           *flags(data=small_csv, model=tiny_model, output_dir=out,
                                  deepspeed="ds_config_cpu.json", epochs=2, freeze_epochs=1,
                                  batch_size=16)],
                          cwd=ROOT, env=run_env(DS_ACCELERATOR="cpu"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(metrics["epochs"]) == 2
    assert (out / "best" / "thresholds.json").exists() and (out / "last_ds" / "latest").exists()
