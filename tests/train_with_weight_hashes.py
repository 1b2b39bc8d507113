"""train_ddp.py, plus a per-rank record of weight hashes before training and after each epoch
(OUTPUT_DIR/weight_hashes.rank{R}.jsonl), so tests can check the freezing schedule under DDP."""
import hashlib
import json
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


def patched_fit(self):
    record(self, self.state.epoch)
    return fit(self)


def patched_save(self, improved):
    save(self, improved)
    record(self, self.state.epoch)


trainer.Trainer.fit, trainer.Trainer._save = patched_fit, patched_save
sys.exit(train_ddp.main())
