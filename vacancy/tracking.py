"""Where the run's records go: `history.jsonl` in the run directory and, unless `--wandb off`, one
Weights & Biases run. Global rank 0 does both; on the other ranks a Tracker does nothing."""
from __future__ import annotations

import html
import json
import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlsplit

from . import dist
from .config import ConfigError

log = logging.getLogger("vacancy")
PER_LABEL_COLUMNS = ("precision", "recall", "f1", "support", "threshold")
WANDB_ENV_MODES = {"disabled": "off", "offline": "offline", "dryrun": "offline",
                   "online": "online", "run": "online"}


def has_wandb_credentials(environ=os.environ) -> bool:
    """Whether W&B would find an API key: WANDB_API_KEY (or an identity token file), or the
    `.netrc` entry that `wandb login` writes for the W&B host (wandb >= 0.31 defaults to the
    CoreWeave address of the W&B cloud and also accepts api.wandb.ai's entry)."""
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    hosts = {urlsplit(environ["WANDB_BASE_URL"]).netloc} if environ.get("WANDB_BASE_URL") \
        else {"api.wandb.ai", "api.forge.coreweave.com"}
    path = environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        entries = netrc.netrc(path)
    except (OSError, netrc.NetrcParseError):
        return False
    return any(entries.authenticators(host) for host in hosts)


def resolve_wandb_mode(choice: str, environ=os.environ) -> str:
    """`off`, `offline` or `online`. `auto` follows WANDB_MODE where it is set, else goes online
    only when credentials are configured, so a machine without them never prompts for a key."""
    if choice != "auto":
        return choice
    env_mode = environ.get("WANDB_MODE", "").strip().lower()
    if env_mode:
        if env_mode not in WANDB_ENV_MODES:
            raise ConfigError(f"WANDB_MODE={env_mode!r} is not one of "
                              f"{', '.join(WANDB_ENV_MODES)}")
        return WANDB_ENV_MODES[env_mode]
    return "online" if has_wandb_credentials(environ) else "offline"


def wandb_row(record: dict) -> dict:
    """A history.jsonl record as a W&B row: its keys namespaced by its kind (`step/train_loss`,
    `epoch/val_loss`), beside the bare `step` or `epoch` number that is their x axis."""
    kind = record["kind"]
    return {(k if k == kind else f"{kind}/{k}"): v for k, v in record.items() if k != "kind"}


def wandb_summary(metrics: dict) -> dict:
    """The scalar entries of metrics.json (the per-label table and the epochs go elsewhere)."""
    return {k: v for k, v in metrics.items() if k not in ("per_label", "epochs")}


def run_tags(config, engine: str) -> list[str]:
    """Model, whether the encoder was fine-tuned, and engine: what a comparison is grouped by."""
    model = Path(config.model.rstrip("/")).name
    tuning = "frozen" if config.freeze_epochs >= config.epochs else "unfrozen"
    tags = [model[:64], tuning, engine]  # W&B rejects tags over 64 characters
    if tuning == "unfrozen" and config.unfreeze == "gradual":
        tags.append("gradual")
    return tags


class Tracker:
    """Fans each step and epoch record out to history.jsonl (flushed line by line, so a crashed
    run keeps what it logged) and to W&B; `finish` adds the final results."""

    def __init__(self, run_dir: Path, config, engine: str = "ddp") -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.file = self.wandb_run = None
        if not dist.is_main():
            return
        self.file = open(self.run_dir / "history.jsonl", "a")
        mode = resolve_wandb_mode(config.wandb)
        if mode != "off":
            self.wandb_run = self._start_wandb(mode, engine)

    def _start_wandb(self, mode: str, engine: str):
        # No banners, run-history block nor artifact chatter on the terminal (WANDB_SILENT=false
        # brings them back): the line logged below says where the run is, and W&B's own log
        # stays in its folder under wandb/. Read when wandb sets itself up, so set it first.
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb  # here only: `--wandb off` must not import it at all

        # A resumed or restarted training run goes on in the same W&B run.
        id_file = self.run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else None
        config = self.config
        try:
            run = wandb.init(
                mode=mode, dir=self.run_dir, id=run_id, resume="allow", job_type="train",
                project=config.wandb_project, entity=config.wandb_entity or None,
                group=config.wandb_group or None,
                name=config.run_name or self.run_dir.resolve().name, tags=run_tags(config, engine),
                config={**config.to_dict(), "world_size": dist.world_size(),
                        "global_batch": config.global_batch(dist.world_size())})
        except wandb.Error as e:  # no network, a bad key, an unknown entity...
            first_line = (str(e).strip() or type(e).__name__).splitlines()[0]
            raise ConfigError(f"--wandb {mode}: W&B could not start a run ({first_line}); "
                              "use --wandb offline and `wandb sync` the run later")
        id_file.write_text(run.id + "\n")
        for kind in ("step", "epoch"):
            run.define_metric(kind)
            run.define_metric(f"{kind}/*", step_metric=kind)
        if mode == "online":
            log.info("W&B: %s", run.url)
        else:  # the folder `wandb sync` uploads: wandb/offline-run-*
            log.info("W&B: offline run %s in %s (upload it later: wandb sync %s)", run.id,
                     Path(run.dir).parent, Path(run.dir).parent)
        return run

    def __call__(self, record: dict) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.wandb_run:
            self.wandb_run.log(wandb_row(record))

    def finish(self, metrics: dict, report: str, plots: dict[str, Path], best_dir: Path) -> None:
        """Test metrics as the W&B summary, the per-label table, the classification report, the
        plots as images and, with --wandb-log-model, best/ as a model artifact; then close."""
        if self.wandb_run:
            import wandb
            run = self.wandb_run
            run.summary.update(wandb_summary(metrics))
            table = wandb.Table(columns=["label", *PER_LABEL_COLUMNS],
                                data=[[name, *(row[c] for c in PER_LABEL_COLUMNS)]
                                      for name, row in metrics["per_label"].items()])
            run.log({"test/per_label": table,
                     "test/classification_report": wandb.Html(f"<pre>{html.escape(report)}</pre>"),
                     **{f"plots/{name}": wandb.Image(str(path)) for name, path in plots.items()}})
            if self.config.wandb_log_model:
                artifact = wandb.Artifact(f"model-{run.id}", type="model",
                                          metadata=wandb_summary(metrics))
                artifact.add_dir(str(best_dir))
                run.log_artifact(artifact, aliases=["best"])
        self.close()

    def close(self, exit_code: int = 0) -> None:
        if self.file:
            self.file.close()
            self.file = None
        if self.wandb_run:
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None
