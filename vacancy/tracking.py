"""Where step and epoch records go: `history.jsonl` in the run directory (rank 0 only)."""
from __future__ import annotations

import json
from pathlib import Path

from . import dist


class History:
    """Appends one JSON object a line and flushes it, so a crashed run keeps what it logged."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a") if dist.is_main() else None

    def __call__(self, record: dict) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
