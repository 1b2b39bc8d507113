"""W&B logging and the local files and plots that tell the same story.

A real 2-process torchrun training logs to W&B offline; the test reads the `.wandb` file back
(its format: ../shared/notes/infra.md) and compares it with history.jsonl and metrics.json.
"""
import json
import struct
from pathlib import Path

import pytest

from conftest import flags, python, read_jsonl, torchrun
from vacancy.config import ConfigError
from vacancy.plots import PLOTS, plot_loss
from vacancy.tracking import resolve_wandb_mode

SECRET = "fakeKEYneverInFiles0123456789abcdef01234"  # a WANDB_API_KEY that must not leak
TINY = dict(epochs=2, freeze_epochs=1, batch_size=16, grad_accum=2, lr=3e-4, head_lr=3e-3)


def wandb_env(tmp: Path) -> dict:
    """Keep W&B's own cache, staging and settings out of the home directory."""
    return {"WANDB_DIR": str(tmp), "WANDB_CACHE_DIR": str(tmp / "cache"),
            "WANDB_DATA_DIR": str(tmp / "data"), "WANDB_CONFIG_DIR": str(tmp / "config")}


def read_wandb_records(path: Path):
    """Yield the protobuf Records of a .wandb file: a 7-byte header, then LevelDB-log records
    [crc32c:4][length:2][type:1][payload] in 32 KiB blocks (type 1 full, 2/3/4 first/middle/last
    piece of a record split over blocks; a block tail under 7 bytes is padding)."""
    from wandb.proto.wandb_internal_pb2 import Record
    data, block = path.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1 and data[6] == 0
    pos, pieces = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            break  # zero-filled end of the file
        pieces = payload if kind in (1, 2) else pieces + payload
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pieces)
            yield record


def items(entries) -> dict:
    """{key: value} of config/history/summary items; a nested key becomes a tuple."""
    out = {}
    for item in entries:
        path = tuple(item.nested_key) or (item.key,)
        out[path[0] if len(path) == 1 else path] = json.loads(item.value_json)
    return out


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory, tiny_model, small_csv):
    tmp = tmp_path_factory.mktemp("wandb_run")
    out = tmp / "run"
    proc = torchrun(2, "train_ddp.py", *flags(
        data=small_csv, model=tiny_model, output_dir=out, wandb="offline", wandb_group="cmp",
        run_name="tiny-offline", wandb_log_model=True, **TINY),
        WANDB_MODE="offline", WANDB_API_KEY=SECRET, **wandb_env(tmp))
    return out, proc


def test_offline_run_is_one_wandb_run_matching_the_local_files(wandb_run, tiny_model):
    out, _ = wandb_run
    files = list(out.rglob("*.wandb"))
    assert len(files) == 1 and len(list((out / "wandb").glob("offline-run-*"))) == 1
    records = {}
    for r in read_wandb_records(files[0]):
        records.setdefault(r.WhichOneof("record_type"), []).append(r)
    [run] = [r.run for r in records["run"]]
    assert run.run_id == (out / "wandb_run_id").read_text().strip()
    assert (run.run_group, run.display_name, run.project) == ("cmp", "tiny-offline", "vacancy")
    assert list(run.tags) == [Path(tiny_model).name, "unfrozen", "ddp"]

    config = items(run.config.update)
    saved = json.loads((out / "config.json").read_text())
    assert {k: config[k] for k in saved} == saved
    assert config["world_size"] == 2 and config["global_batch"] == 16 * 2 * 2

    rows = [items(r.history.item) for r in records["history"]]
    logged = [{k: v for k, v in row.items() if not str(k).startswith("_")} for row in rows
              if "step" in row or "epoch" in row]
    expected = [{(k if k == r["kind"] else f"{r['kind']}/{k}"): v for k, v in r.items()
                 if k != "kind"} for r in read_jsonl(out / "history.jsonl")]
    assert logged == expected
    steps = [r for r in expected if "step" in r]
    assert {"step/train_loss", "step/lr/head", "step/lr/encoder", "step/grad_norm",
            "step/loss_scale", "step/samples_per_s", "step/tokens_per_s"} <= set(steps[0])
    assert all(r["step/tokens_per_s"] > r["step/samples_per_s"] > 0 for r in steps)
    epochs = [r for r in expected if "epoch" in r]
    assert [r["epoch/phase"] for r in epochs] == ["frozen", "unfrozen"]
    assert {"epoch/train_loss", "epoch/val_loss", "epoch/val_micro_f1",
            "epoch/val_macro_f1"} <= set(epochs[0])

    summary = {}
    for r in records["summary"]:
        summary.update(items(r.summary.update))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == [{k.removeprefix("epoch/"): v for k, v in r.items()}
                                 for r in epochs]
    for key, value in metrics.items():
        if key not in ("per_label", "epochs"):
            assert summary[key] == value, key
    assert summary["step"] == metrics["optimizer_steps"] and summary["epoch"] == 2

    [final] = [row for row in rows if ("test/per_label", "_type") in row]
    media = files[0].parent / "files"
    table = json.loads((media / final[("test/per_label", "path")]).read_text())
    assert table["columns"] == ["label", "precision", "recall", "f1", "support", "threshold"]
    assert {row[0]: dict(zip(table["columns"][1:], row[1:])) for row in table["data"]} \
        == metrics["per_label"]
    report = (media / final[("test/classification_report", "path")]).read_text()
    assert "micro avg" in report and next(iter(metrics["per_label"])) in report
    for name in PLOTS:
        assert final[(f"plots/{name}", "_type")] == "image-file"
        assert (media / final[(f"plots/{name}", "path")]).stat().st_size > 1000

    [model] = [r.artifact for r in records["artifact"] if r.artifact.type == "model"]
    assert {"model.safetensors", "config.json", "thresholds.json"} <= \
        {c.path for c in model.manifest.contents}


def test_credentials_never_reach_logs_or_files(wandb_run):
    out, proc = wandb_run
    assert SECRET not in proc.stdout + proc.stderr
    for path in out.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), path


def test_plots_are_valid_images(wandb_run):
    from PIL import Image
    out, _ = wandb_run
    for file in PLOTS.values():
        with Image.open(out / file) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 300
            image.verify()


def test_loss_plot_marks_the_unfreeze_point():
    epochs = [{"epoch": e, "phase": p, "train_loss": 0.5 / e, "val_loss": 0.6 / e}
              for e, p in [(1, "frozen"), (2, "frozen"), (3, "unfrozen")]]
    ax = plot_loss(epochs, best_epoch=3).axes[0]
    [unfreeze] = [line for line in ax.lines if line.get_label() == "encoder unfrozen"]
    assert list(unfreeze.get_xdata()) == [2.5, 2.5]
    [best] = [line for line in ax.lines if line.get_label() == "best (saved)"]
    assert list(best.get_xdata()) == [3] and list(best.get_ydata()) == [epochs[2]["val_loss"]]


@pytest.mark.slow
def test_wandb_off_imports_nothing_and_writes_no_wandb_files(tmp_path, tiny_model, small_csv):
    out = tmp_path / "run"
    argv = flags(data=small_csv, model=tiny_model, output_dir=out, wandb="off", epochs=1,
                 freeze_epochs=1, batch_size=32)
    code = ("import sys, train_ddp; rc = train_ddp.main(sys.argv[1:]); "
            "print('wandb imported:', any(m.split('.')[0] == 'wandb' for m in sys.modules)); "
            "sys.exit(rc)")
    proc = python("-c", code, *argv, WANDB_MODE="online", WANDB_API_KEY=SECRET,
                  **wandb_env(tmp_path))
    assert "wandb imported: False" in proc.stdout
    assert not list(tmp_path.rglob("*wandb*"))
    assert read_jsonl(out / "history.jsonl") and all((out / f).exists() for f in PLOTS.values())


def test_auto_mode_follows_wandb_mode_then_credentials(tmp_path):
    netrc = tmp_path / "netrc"
    none = {"NETRC": str(netrc)}
    assert resolve_wandb_mode("auto", none) == "offline"
    netrc.write_text("machine example.com login user password x\n")
    assert resolve_wandb_mode("auto", none) == "offline"
    netrc.write_text("machine api.wandb.ai login user password x\n")
    assert resolve_wandb_mode("auto", none) == "online"
    assert resolve_wandb_mode("auto", {**none, "WANDB_BASE_URL": "https://wandb.example.com"}) \
        == "offline"  # a self-hosted server needs its own entry
    assert resolve_wandb_mode("auto", {"NETRC": str(tmp_path / "absent"),
                                       "WANDB_API_KEY": "k"}) == "online"
    assert resolve_wandb_mode("auto", {**none, "WANDB_MODE": "disabled"}) == "off"
    assert resolve_wandb_mode("auto", {**none, "WANDB_MODE": "offline"}) == "offline"
    assert resolve_wandb_mode("offline", {**none, "WANDB_MODE": "online"}) == "offline"
    with pytest.raises(ConfigError, match="WANDB_MODE='cloud'"):
        resolve_wandb_mode("auto", {"WANDB_MODE": "cloud"})


def test_rank_0_alone_speaks_in_our_own_words(wandb_run):
    """A real 2-process run with W&B offline: library reports, W&B banners and the run-history
    block go to files of the run; the terminal gets each of our lines once."""
    out, proc = wandb_run
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    for noise in ("LOAD REPORT", "MISSING", "\x1b[", "wandb:", "Run history", "[WARNING]",
                  "Traceback", '{"micro_f1"'):
        assert not [line for line in lines if noise in line], noise
    assert sum(line.startswith("global batch:") for line in lines) == 1  # not once per rank
    [wandb_line] = [line for line in lines if line.startswith("W&B:")]
    assert f"wandb sync {out / 'wandb' / 'offline-run-'}" in wandb_line
    warnings = [line for line in lines if "repeat an earlier title" in line]
    assert warnings and all(line.startswith("warning: ") for line in warnings)
    assert lines[-2].startswith(f"run directory: {out} ")
    assert lines[-1].startswith(f"best model: {out / 'best'} (epoch ")
    log = (out / "train.log").read_text()
    assert "LOAD REPORT" in log and "global batch:" in log and "\x1b[" not in log


def test_per_label_plots_keep_text_in_the_frame_and_the_legend_off_the_bars():
    from vacancy.plots import plot_per_label_f1, plot_precision_recall
    per_label = {f"label_{i}": {"f1": f, "precision": f, "recall": f, "support": 1000 + i,
                                "threshold": 0.35} for i, f in enumerate([0.0, 0.3, 0.72, 1.0])}
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = plot_per_label_f1(per_label)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    [ax] = fig.axes
    frame = ax.get_window_extent(renderer)
    for text in ax.texts:  # the value labels, 1.00 included
        box = text.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, text.get_text()
    fig = plot_precision_recall(per_label)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    [ax], [legend] = fig.axes, fig.legends
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
