"""Compare finished runs (transformer runs and baselines) in a Markdown report and a PNG chart.

    python -m vacancy.compare runs/baseline runs/minilm-frozen runs/minilm-unfrozen --out cmp.md

Reads each run directory's config.json and metrics.json; every number in the report comes from
them. With --out, the chart goes beside the report (same name, .png) unless --chart says otherwise;
without --out the report is printed and a chart is drawn only with --chart.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

BASELINE_ENGINE = "sklearn"
# (metrics.json key, column title) of the numbers the table and the chart show
MAIN_METRICS = [("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_f1", "samples-F1"),
                ("micro_precision", "micro P"), ("micro_recall", "micro R"),
                ("subset_accuracy", "subset acc.")]
N_DIFFERING_LABELS = 3


class CompareError(ValueError):
    """A run directory that cannot be read; the message names it."""


@dataclass
class Run:
    name: str
    path: Path
    config: dict
    metrics: dict

    @property
    def engine(self) -> str:
        if "engine" in self.metrics:
            return self.metrics["engine"]
        return "deepspeed" if self.config.get("deepspeed") else "ddp"

    @property
    def is_baseline(self) -> bool:
        return self.engine == BASELINE_ENGINE

    @property
    def model(self) -> str:
        model = str(self.metrics.get("model", self.config.get("model", "?")))
        # a local directory's path is noise in a table; a Hub id (org/name) is kept whole
        return Path(model).name if model.startswith(("/", ".")) or model.count("/") > 1 else model

    def phase_epochs(self, phase: str) -> int:
        return sum(e.get("phase") == phase for e in self.metrics.get("epochs", []))

    @property
    def samples_per_s(self) -> float | None:
        """Training throughput over the whole run: samples seen / seconds spent training."""
        if self.metrics.get("samples_per_s") is not None:
            return self.metrics["samples_per_s"]
        seconds = self.epoch_seconds
        return sum(e["samples_per_s"] * e["seconds"] for e in self.metrics["epochs"]) / seconds \
            if seconds else None

    @property
    def epoch_seconds(self) -> float:
        return sum(e["seconds"] for e in self.metrics.get("epochs", []))

    @property
    def resumed(self) -> bool:
        """train_seconds of a resumed run counts only its last attempt: its epochs took longer."""
        return self.epoch_seconds > (self.metrics.get("train_seconds") or 0)

    def label_f1(self) -> dict[str, float]:
        return {name: v["f1"] for name, v in self.metrics["per_label"].items()}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path}: not found (is {path.parent} a finished run directory?)")
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})")


def load_runs(paths: list[str]) -> list[Run]:
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_dir():
            raise CompareError(f"{path}: no such run directory")
    names = [p.name or p.resolve().name for p in paths]  # a symlink keeps its own name
    runs = []
    for path, name in zip(paths, names):
        if names.count(name) > 1:  # e.g. a/run and b/run: keep them apart
            name = f"{path.resolve().parent.name}/{name}"
        metrics = _read_json(path / "metrics.json")
        missing = [k for k, _ in MAIN_METRICS + [("per_label", "")] if k not in metrics]
        if missing:
            raise CompareError(f"{path / 'metrics.json'}: missing {', '.join(missing)}")
        config_path = path / "config.json"
        runs.append(Run(name, path, _read_json(config_path) if config_path.exists() else {},
                        metrics))
    return runs


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes}m {s:02d}s" if minutes else f"{seconds:.1f}s"


def best_runs(runs: list[Run], key: str) -> list[Run]:
    top = max(r.metrics[key] for r in runs)
    return [r for r in runs if r.metrics[key] == top]


def runs_table(runs: list[Run]) -> list[str]:
    head = ["run", "model", "engine", "precision", "frozen ep.", "unfrozen ep.", "world size",
            *(title for _, title in MAIN_METRICS), "best val loss", "train time", "samples/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in runs:
        m = r.metrics
        epochs = ["-", "-"] if r.is_baseline else [str(r.phase_epochs("frozen")),
                                                   str(r.phase_epochs("unfrozen"))]
        row = [r.name, r.model, r.engine, str(m.get("precision", "-")), *epochs,
               str(m.get("world_size", "-")), *(_fmt(m[k]) for k, _ in MAIN_METRICS),
               _fmt(m.get("best_val_loss")),
               _duration(m.get("train_seconds")) + (" (†)" if r.resumed else ""),
               _fmt(r.samples_per_s, ".1f")]
        lines.append("| " + " | ".join(row) + " |")
    for r in runs:
        if r.resumed:
            lines += ["", f"(†) `{r.name}` was resumed: its train time counts only the last "
                          f"attempt; its epochs took {_duration(r.epoch_seconds)} in all."]
    return lines


def label_table(runs: list[Run]) -> list[str]:
    f1 = [r.label_f1() for r in runs]
    labels = sorted(set().union(*f1))
    support = {}
    for r in runs:
        for name, v in r.metrics["per_label"].items():
            support.setdefault(name, v.get("support"))
    lines = ["| label | test support | " + " | ".join(r.name for r in runs) + " |",
             "|" + " --- |" * (len(runs) + 2)]
    for label in labels:
        values = [scores.get(label) for scores in f1]
        present = [v for v in values if v is not None]
        top = max(present) if len(runs) > 1 and len(set(present)) > 1 else None
        cells = [("**%s**" if v == top else "%s") % _fmt(v, ".3f") for v in values]
        lines.append(f"| {label} | {support[label]} | " + " | ".join(cells) + " |")
    return lines


def conclusion(runs: list[Run]) -> list[str]:
    """Only what the numbers show: the best runs, each run against the baseline, and the labels on
    which the runs disagree most."""
    out = []
    for key, title in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1")):
        best = best_runs(runs, key)
        names = " and ".join(f"`{r.name}`" for r in best)
        out.append(f"- Best test {title}: {names} ({best[0].metrics[key]:.4f}).")
    baselines = [r for r in runs if r.is_baseline]
    others = [r for r in runs if not r.is_baseline]
    if not baselines:
        out.append("- No baseline among these runs: nothing shows what the transformer buys "
                   "(run `python -m vacancy.baseline`).")
    elif others:
        base = baselines[0]
        out.append(f"- Against the baseline `{base.name}` (micro-F1 {base.metrics['micro_f1']:.4f},"
                   f" macro-F1 {base.metrics['macro_f1']:.4f}):")
        for r in others:
            d_micro = r.metrics["micro_f1"] - base.metrics["micro_f1"]
            d_macro = r.metrics["macro_f1"] - base.metrics["macro_f1"]
            verdict = "beats" if d_micro > 0 else "does not beat"
            out.append(f"  - `{r.name}` {verdict} it on micro-F1 ({d_micro:+.4f}; macro-F1 "
                       f"{d_macro:+.4f}).")
    if len(runs) > 1:
        f1 = [r.label_f1() for r in runs]
        spread = []
        for label in sorted(set.intersection(*(set(x) for x in f1))):
            scores = [x[label] for x in f1]
            hi, lo = max(range(len(runs)), key=scores.__getitem__), \
                min(range(len(runs)), key=scores.__getitem__)
            spread.append((scores[hi] - scores[lo], label, hi, lo))
        spread = sorted([s for s in spread if s[0] > 0], key=lambda s: (-s[0], s[1]))
        if spread:
            parts = [f"{label} ({scores_gap:.3f}: `{runs[hi].name}` {f1[hi][label]:.3f} vs "
                     f"`{runs[lo].name}` {f1[lo][label]:.3f})"
                     for scores_gap, label, hi, lo in spread[:N_DIFFERING_LABELS]]
            out.append("- Labels whose test F1 differs most between runs: " + "; ".join(parts)
                       + ".")
    return out


def consistency_notes(runs: list[Run]) -> list[str]:
    """Runs on different data or splits cannot be compared number by number: say so."""
    # by file name: one run may have been given a relative path, another an absolute one
    data = {Path(r.config["data"]).name for r in runs if r.config.get("data")}
    sizes = {(r.metrics.get("n_train"), r.metrics.get("n_test")) for r in runs}
    notes = []
    if len(data) > 1:
        notes.append(f"**Warning:** the runs read different data files ({', '.join(sorted(data))});"
                     " their numbers are not comparable.")
    if len(sizes) > 1:
        notes.append("**Warning:** the runs have different train/test sizes "
                     f"({', '.join(f'{a}/{b}' for a, b in sorted(sizes, key=str))}); their "
                     "numbers are not comparable.")
    return notes


def report(runs: list[Run], chart_name: str | None = None) -> str:
    first = runs[0]
    data = first.config.get("data", "?")
    lines = ["# Model comparison", "",
             f"Data: `{data}`: {first.metrics.get('n_train')} train / {first.metrics.get('n_val')} "
             f"val / {first.metrics.get('n_test')} test titles. Test metrics at each run's "
             "thresholds (tuned per label on val unless the run fixed them).", ""]
    for note in consistency_notes(runs):
        lines += [note, ""]
    lines += ["## Runs", "", *runs_table(runs), ""]
    if chart_name:
        lines += [f"![main test metrics]({chart_name})", ""]
    lines += ["## Test F1 per label", "", *label_table(runs), "",
              "## Conclusion", "", *conclusion(runs), "",
              "Run directories: " + ", ".join(f"`{r.name}` = `{r.path}`" for r in runs) + ".", ""]
    return "\n".join(lines)


def draw_chart(runs: list[Run], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    import numpy as np
    width = 0.8 / len(runs)
    x = np.arange(len(MAIN_METRICS))
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(MAIN_METRICS) + 0.4 * len(runs)), 4.5))
    for i, r in enumerate(runs):
        values = [r.metrics[k] for k, _ in MAIN_METRICS]
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, values, width, label=r.name)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, [title for _, title in MAIN_METRICS])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("test score")
    ax.set_title("Main test metrics per run")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(4, len(runs)))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished output directories")
    parser.add_argument("--out", help="write the Markdown report here (default: print it)")
    parser.add_argument("--chart", help="PNG of the main metrics (default with --out: beside it)")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.runs)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chart = Path(args.chart) if args.chart else \
        Path(args.out).with_suffix(".png") if args.out else None
    if chart:
        chart.parent.mkdir(parents=True, exist_ok=True)
        draw_chart(runs, chart)
    # the report links the chart relative to itself, so the pair can be moved together
    link = os.path.relpath(chart, Path(args.out).parent) if chart and args.out else chart
    text = report(runs, str(link) if link else None)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}" + (f" and {chart}" if chart else ""))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
