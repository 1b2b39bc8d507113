"""How long `python train_ddp.py --help` and a mistyped flag take to answer, in seconds.

Both must answer before torch and transformers are imported (train_ddp.py parses its flags
first). Prints a Markdown table: the median and the range of `--repeats` fresh processes, beside
a bare `python -c pass` as the floor of any Python command on this machine.

    python bench/help_time.py --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass (floor)": ["-c", "pass"],
    "python train_ddp.py --help": ["train_ddp.py", "--help"],
    "python train_ddp.py --epoch 2 (typo)": ["train_ddp.py", "--epoch", "2"],
}


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("| command | median s | min s | max s |\n| --- | ---: | ---: | ---: |")
    for name, command in COMMANDS.items():
        times = [seconds(command) for _ in range(args.repeats)]
        print(f"| `{name}` | {statistics.median(times):.2f} | {min(times):.2f} | "
              f"{max(times):.2f} |")


if __name__ == "__main__":
    main()
