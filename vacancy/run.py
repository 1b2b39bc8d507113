"""One training run end to end: data -> model -> train -> evaluate the best checkpoint."""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers

from . import checkpoint, dist
from .checkpoint import WriteError, writing
from .config import ConfigError, TrainConfig
from .console import LOG_FILE
from .data import DataError, PadCollator, TitleDataset
from .engine import Scorer
from .engines import make_engine
from .ensemble import decide
from .metrics import evaluate, sigmoid
from .model import init_head_bias, load_model as load_classifier, load_tokenizer
from .plots import write_plots
from .prepared import cache_key, prepare
from .results import summary, write_results
from .run_dir import check_same_run
from .tracking import Tracker
from .trainer import Trainer, make_loader, phase_steps, predict_logits, steps_per_epoch

log = logging.getLogger("vacancy")
# train.log only: the terminal shows the `vacancy` logger and errors (console.setup_logging)
traceback_log = logging.getLogger("traceback")


class FinishError(RuntimeError):
    """Training ended and best/ is saved, but a step after it failed (the final evaluation, the
    mix, the results, the plots, W&B); the message says which, train.log has the traceback."""


def run(config: TrainConfig, device: torch.device, resume: bool) -> dict:
    run_dir = Path(config.output_dir)
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.model)
    data = prepare(config, tokenizer)
    labels, targets = data.labels, data.targets
    # before any model or checkpoint loads: a --resume on other data says so, not a shape error
    dist.on_main(lambda: check_same_run(run_dir, resume, {
        "data": str(config.data), "labels": labels.names, "model": config.model,
        "data_key": cache_key(config.data, tokenizer, config.max_length, config.split_seed)}),
        errors=(ConfigError, DataError))
    datasets = {name: TitleDataset(data.tokens[name], targets[name])
                for name in ("train", "val", "test")}
    # multiples of 8: tensor-core friendly shapes on GPU, and few shapes to compile
    collate = PadCollator(tokenizer.pad_token_id,
                          multiple_of=8 if device.type == "cuda" or config.compile else 1)
    loaders = {name: make_loader(ds, config, collate, train=name == "train")
               for name, ds in datasets.items()}

    model = load_classifier(config.model, labels.names)
    init_head_bias(model, targets["train"])
    spe = steps_per_epoch(loaders["train"], config.grad_accum)
    engine = make_engine(model, config, device, phase_steps(config, spe))
    log.info("global batch: micro batch %d x accumulation %d x world size %d = %d; %d optimizer "
             "steps per epoch; precision %s on %s", config.batch_size, config.grad_accum,
             dist.world_size(), config.global_batch(dist.world_size()), spe, engine.precision,
             device)

    trainer = Trainer(engine, config, loaders["train"], loaders["val"], len(datasets["val"]),
                      run_dir, tokenizer)
    if resume and trainer.load():
        position = trainer.state.in_epoch
        log.info("resumed from %s at epoch %d (step %d)%s", run_dir / checkpoint.LAST,
                 trainer.state.epoch, trainer.state.step,
                 f", {position['batches']} batches into epoch {trainer.state.epoch + 1}"
                 if position else "")
        if dist.is_main():
            rewind_history(run_dir / "history.jsonl", trainer.state.step, trainer.state.epoch)
    tracker = Tracker(run_dir, config, engine=type(engine).__name__.removesuffix("Engine").lower())
    trainer.on_log = tracker
    try:
        state = trainer.fit()
    except BaseException:
        tracker.close(exit_code=1)
        raise

    # Final evaluation of the best checkpoint, on every rank (each scores its shard).
    best = run_dir / checkpoint.BEST
    try:
        with after_training(f"scoring {best} on val and test", run_dir):
            scorer = Scorer(load_classifier(str(best), labels.names), device, engine.precision)
            val_logits, val_targets = predict_logits(scorer, loaders["val"], len(datasets["val"]))
            test_logits, test_targets = predict_logits(scorer, loaders["test"],
                                                       len(datasets["test"]))
        # the other parts of the mix and the files: rank 0 only, the others wait
        metrics = dist.on_main(finish, config, data, state, engine.precision, tracker,
                               sigmoid(val_logits), sigmoid(test_logits), test_targets, device,
                               errors=(FinishError, WriteError))
    except BaseException:
        tracker.close(exit_code=1)
        raise
    return metrics or {}


@contextmanager
def after_training(what: str, run_dir: Path):
    """Turn an unexpected exception into one line (FinishError) that says best/ is saved; the
    traceback goes to train.log. A failed write is WriteError already."""
    try:
        yield
    except (FinishError, WriteError):
        raise
    except Exception as e:
        traceback_log.warning("%s failed after training", what, exc_info=True)
        first = (str(e).strip().splitlines() or [""])[0]
        raise FinishError(f"{what} failed after training ({type(e).__name__}: {first}); "
                          f"{run_dir / checkpoint.BEST} is saved; the traceback is in "
                          f"{run_dir / LOG_FILE}") from e


def finish(config, data, state, precision: str, tracker, val_probs, test_probs, test_targets,
           device) -> dict:
    """Rank 0's end of a run: the mix, the test metrics, the files, the plots and W&B."""
    run_dir, labels = Path(config.output_dir), data.labels
    best = run_dir / checkpoint.BEST
    with after_training("the mix (TF-IDF and kNN parts, thresholds)", run_dir):
        decision = decide(config, data, val_probs, test_probs, best, device)
    with after_training("the test evaluation", run_dir):
        metrics, report = evaluate(decision.test_probs, test_targets, decision.thresholds,
                                   labels.names, config.at_least_one)
    report += "\n" + decision.table + "\n"
    metrics.update(decision.summary)
    metrics.update(best_val_loss=state.best_val_loss, best_epoch=state.best_epoch,
                   stopped_early=state.stopped_early, n_train=len(data.targets["train"]),
                   n_val=len(data.targets["val"]), n_test=len(test_targets),
                   test_in_train=data.leaked, world_size=dist.world_size(),
                   precision=precision, model=config.model,
                   optimizer_steps=state.step, skipped_steps=state.skipped_steps,
                   train_seconds=round(state.train_seconds, 1), epochs=state.epochs,
                   **data.label_issues)
    # a failed write says what it was writing (WriteError); after_training lets it through
    with after_training("saving the mix in best/", run_dir), \
            writing(best, "thresholds.json, decision.json, tfidf/ and knn/"):
        decision.save(best, labels.names)
    with after_training("writing the results", run_dir), \
            writing(run_dir, "metrics.json, report.txt and test_predictions.csv"):
        write_results(run_dir, metrics, report, decision.thresholds, labels.names, data.test,
                      decision.test_probs, config.at_least_one)
    print(report)
    print(summary(metrics))
    with after_training("the plots", run_dir), \
            writing(run_dir, "the plots (loss.png, per_label_*.png)"):
        plots = write_plots(run_dir, metrics)
    with after_training("the W&B records", run_dir):
        tracker.finish(metrics, report, plots, best)
    return metrics


def rewind_history(path: Path, step: int, epoch: int) -> None:
    """Drop the records a killed attempt logged after the checkpoint it is resumed from, so the
    history reads as one uninterrupted run (resuming twice changes nothing)."""
    if not path.exists():
        return
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in records if not (r.get("kind") == "step" and r["step"] > step)
            and not (r.get("kind") == "epoch" and r["epoch"] > epoch)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)
