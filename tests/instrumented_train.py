"""train_ddp.py, instrumented for tests.

- Always: a per-rank record of weight hashes before training and after each epoch
  (OUTPUT_DIR/weight_hashes.rank{R}.jsonl), to check the freezing schedule under DDP.
- VACANCY_FAULT=kill:RANK:EPOCH  SIGKILLs that rank halfway through that (1-based) epoch, on the
  first attempt only, and not in a run launched with --resume.
- VACANCY_FAULT=raise:RANK:EPOCH raises an exception there instead, on every attempt.
"""
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train_ddp  # noqa: E402
from vacancy import dist, trainer  # noqa: E402
from vacancy.model import head_parameter_names  # noqa: E402


def hashes(model) -> dict:
    head = head_parameter_names(model)
    digests = {"encoder": hashlib.sha256(), "head": hashlib.sha256()}
    for name, p in model.named_parameters():
        digests["head" if name in head else "encoder"].update(p.detach().cpu().numpy().tobytes())
    return {k: d.hexdigest() for k, d in digests.items()}


def record(self, epoch):
    path = Path(self.config.output_dir) / f"weight_hashes.rank{dist.rank()}.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps({"epoch": epoch, **hashes(self.engine.model)}) + "\n")


fit, save = trainer.Trainer.fit, trainer.Trainer._save
after_step = trainer.Trainer._after_step


def patched_fit(self):
    record(self, self.state.epoch)
    return fit(self)


def patched_save(self, improved):
    save(self, improved)
    record(self, self.state.epoch)


def patched_after_step(self, *args):
    after_step(self, *args)
    kind, rank, epoch = (os.environ.get("VACANCY_FAULT") or "none:-1:-1").split(":")
    in_epoch = self.state.step - (self.state.epoch * self.steps_per_epoch)
    if dist.rank() != int(rank) or self.state.epoch + 1 != int(epoch) \
            or in_epoch != self.steps_per_epoch // 2:
        return
    if kind == "kill" and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0" \
            and not self.config.resume:
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "raise":
        raise RuntimeError(f"injected failure on rank {rank} in epoch {epoch}")


trainer.Trainer.fit, trainer.Trainer._save = patched_fit, patched_save
trainer.Trainer._after_step = patched_after_step
sys.exit(train_ddp.main())
