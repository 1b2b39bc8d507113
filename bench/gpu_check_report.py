"""Markdown pieces of bench/gpu_check.sh's summary: the machine, and one row per training run.

    python bench/gpu_check_report.py env                 # card, driver, torch/CUDA, matmul TFLOP/s
    python bench/gpu_check_report.py run-header
    python bench/gpu_check_report.py run LABEL RUN_DIR   # one row: files, quality, samples/s

A run's row checks every file a finished run writes, and gives its test micro/macro-F1 (beside
the CPU reference of README.md's "Quality on real titles"), its precision, the samples/s of each
phase from metrics.json (whole epochs: data loading, compilation and the frozen cache's encoding
pass included) and the steady samples/s: the median of the step records' throughput in
history.jsonl over the last half of the unfrozen steps (after warm-up and compilation).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

# README.md, "Quality on real titles": minilm, default recipe, one CPU process, 2026-11-27
CPU_REFERENCE = {"micro_f1": 0.776, "macro_f1": 0.739}
RUN_FILES = ("config.json", "history.jsonl", "metrics.json", "report.txt", "test_predictions.csv",
             "loss.png", "per_label_f1.png", "per_label_precision_recall.png",
             "best/config.json", "best/model.safetensors", "best/thresholds.json",
             "best/training_meta.json", "best/tokenizer.json")


def env() -> str:
    import torch
    lines = [f"- python {sys.version.split()[0]}, torch {torch.__version__}, CUDA "
             f"{torch.version.cuda}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]
    if not torch.cuda.is_available():
        return "\n".join(lines + ["- no CUDA device: CPU mode"])
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        smi = f"nvidia-smi failed: {e}"
    lines.append(f"- card: {torch.cuda.get_device_name()} ({smi}); bf16 supported: "
                 f"{torch.cuda.is_bf16_supported()}")
    lines.append(f"- peak bf16 matmul: {matmul_tflops():.0f} TFLOP/s (8192^3, random data, "
                 "median of 10 after 3 warm-ups)")
    return "\n".join(lines)


def matmul_tflops(n: int = 8192) -> float:
    import torch
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    return 2 * n ** 3 / statistics.median(times) / 1e12


def run_header() -> str:
    return ("| run | files | precision | test micro-F1 | macro-F1 | frozen samples/s | "
            "unfrozen samples/s | steady samples/s | wall s |\n"
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")


def steady_samples_per_s(run: Path, metrics: dict) -> float | None:
    frozen_steps = metrics["optimizer_steps"] * sum(e["phase"] == "frozen"
                                                    for e in metrics["epochs"]) \
        // max(1, len(metrics["epochs"]))
    steps = [r for r in map(json.loads, (run / "history.jsonl").read_text().splitlines())
             if r.get("kind") == "step" and r["step"] > frozen_steps]
    late = steps[len(steps) // 2:]
    return statistics.median(r["samples_per_s"] for r in late) if late else None


def run_row(label: str, run: Path, wall: str) -> str:
    missing = [f for f in RUN_FILES if not (run / f).is_file()]
    if not ((run / "last/model.safetensors").is_file() or (run / "last_ds/latest").is_file()):
        missing.append("last/ (or DeepSpeed's last_ds/)")
    if not (run / "metrics.json").is_file():
        return f"| {label} | **failed** (no metrics.json) | | | | | | | {wall} |"
    metrics = json.loads((run / "metrics.json").read_text())
    rates = {phase: [e["samples_per_s"] for e in metrics["epochs"] if e["phase"] == phase]
             for phase in ("frozen", "unfrozen")}
    steady = steady_samples_per_s(run, metrics)

    def fmt(values):
        return ", ".join(f"{v:.0f}" for v in values) or "-"

    files = "all" if not missing else "**missing " + ", ".join(missing) + "**"
    return (f"| {label} | {files} | {metrics['precision']} | {metrics['micro_f1']:.3f} | "
            f"{metrics['macro_f1']:.3f} | {fmt(rates['frozen'])} | {fmt(rates['unfrozen'])} | "
            f"{f'{steady:.0f}' if steady else '-'} | {wall} |")


def main(argv: list[str]) -> int:
    if argv[:1] == ["env"]:
        print(env())
    elif argv[:1] == ["run-header"]:
        print(run_header())
    elif argv[:1] == ["run"] and len(argv) in (3, 4):
        print(run_row(argv[1], Path(argv[2]), argv[3] if len(argv) == 4 else ""))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
