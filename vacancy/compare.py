"""Compare finished runs (transformer runs and baselines) in a Markdown report and a PNG chart.

    python -m vacancy.compare runs/baseline runs/minilm-unfrozen-seed* --out cmp.md [--wandb]

Reads each run directory's config.json, metrics.json and test_predictions.csv (results.py); every
number in the report comes from them. Runs whose configs differ only by seed (and run names,
directories, W&B settings) form one group, reported as mean and spread over its seeds. Differences
between models get a 95% paired-bootstrap interval over the test titles (bootstrap.py), and the
conclusion calls a difference a win only when that interval excludes 0. The error analysis
(error_analysis.py) reads the same predictions. With --out, the chart goes beside the report (same
name, .png) unless --chart says otherwise; without --out the report is printed and a chart is drawn
only with --chart. --wandb also logs the comparison as one W&B run.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import bootstrap, error_analysis
from .results import Predictions, PredictionsError, read_predictions

BASELINE_ENGINE = "sklearn"
# (metrics.json key, column title) of the numbers the table and the chart show
MAIN_METRICS = [("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_f1", "samples-F1"),
                ("micro_precision", "micro P"), ("micro_recall", "micro R"),
                ("subset_accuracy", "subset acc.")]
GROUP_METRICS = MAIN_METRICS[:3] + MAIN_METRICS[5:]  # the seed-group table and the chart
INTERVAL_METRICS = [("micro_f1", "micro-F1"), ("macro_f1", "macro-F1")]
N_DIFFERING_LABELS = 3
# config.json keys that do not change what a run learns: runs differing only in these are seeds of
# one recipe (resume/overwrite only say how the run directory was treated)
NOT_RECIPE = {"seed", "output_dir", "run_name", "resume", "overwrite"}
SEED_SUFFIX = re.compile(r"[-_.]?seed[-_]?\d+$")


class CompareError(ValueError):
    """A run directory that cannot be read; the message names it."""


@dataclass
class Run:
    name: str
    path: Path
    config: dict
    metrics: dict
    predictions: Predictions | None = None
    no_predictions: str = ""  # why predictions is None

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

    def recipe(self) -> str:
        """What the run learned from, as a string: equal for runs that differ only by seed."""
        if not self.config:
            return str(self.path.resolve())  # unknown recipe: a group of its own
        return json.dumps({k: v for k, v in self.config.items()
                           if k not in NOT_RECIPE and not k.startswith("wandb")}, sort_keys=True)


@dataclass(eq=False)  # compared by identity
class Entry:
    """One model of the comparison: a single run, or the runs of one recipe with different seeds.
    Its score is the mean over its runs."""
    name: str
    runs: list[Run]
    # bootstrap scores per metric key: (resamples,) mean over the runs; empty without predictions
    resampled: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        return all(r.is_baseline for r in self.runs)

    @property
    def seeds(self) -> int:
        return len(self.runs)

    def values(self, key: str) -> np.ndarray:
        return np.array([r.metrics[key] for r in self.runs], dtype=float)

    def mean(self, key: str) -> float:
        return float(self.values(key).mean())

    def spread(self, key: str) -> str:
        """`mean ± std (min-max)` over the seeds (sample std); the value alone for one run."""
        v = self.values(key)
        if len(v) == 1:
            return f"{v[0]:.4f}"
        return f"{v.mean():.4f} ± {v.std(ddof=1):.4f} ({v.min():.4f}-{v.max():.4f})"

    def label_f1(self) -> dict[str, float]:
        per_run = [r.label_f1() for r in self.runs]
        return {k: float(np.mean([f[k] for f in per_run])) for k in set.intersection(
            *(set(f) for f in per_run))}

    @property
    def title(self) -> str:
        return f"`{self.name}`" + (f" ({self.seeds} seeds)" if self.seeds > 1 else "")


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
        run = Run(name, path, _read_json(config_path) if config_path.exists() else {}, metrics)
        try:
            run.predictions = read_predictions(path)
        except PredictionsError as e:  # older runs kept only metrics: table rows, no intervals
            run.no_predictions = str(e)
        runs.append(run)
    return runs


def group_runs(runs: list[Run]) -> list[Entry]:
    """Runs with the same recipe, in the order of their first run. A group is named after its
    runs with the seed suffix (`-seed3`) removed when they share that stem."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.recipe(), []).append(r)
    entries = []
    for members in groups.values():
        stems = {SEED_SUFFIX.sub("", r.name) for r in members}
        name = members[0].name if len(members) == 1 else \
            stems.pop() if len(stems) == 1 else "+".join(r.name for r in members)
        entries.append(Entry(name, members))
    return entries


def comparable(entries: list[Entry]) -> tuple[list[Entry], list[str]]:
    """The entries whose runs all have predictions on the same test titles (same titles, truth and
    labels, in the same order) as the first such run; notes on the others."""
    reference, kept, notes = None, [], []
    for e in entries:
        missing = [r for r in e.runs if r.predictions is None]
        if missing:
            notes.append(f"`{e.name}`: no intervals or error analysis "
                         f"({missing[0].no_predictions}).")
            continue
        if reference is None:
            reference = e.runs[0]
        ref = reference.predictions
        differ = [r for r in e.runs if r.predictions.labels != ref.labels or not (
            np.array_equal(r.predictions.titles, ref.titles)
            and np.array_equal(r.predictions.truth, ref.truth))]
        if differ:
            notes.append(f"`{e.name}`: `{differ[0].name}` was tested on other titles or labels "
                         f"than `{reference.name}`: left out of the intervals and error analysis.")
            continue
        kept.append(e)
    return kept, notes


def resample_scores(entries: list[Entry], resamples: int, seed: int) -> None:
    """Fill each entry's bootstrap scores: the same resampled titles for every run (paired); a
    group's score on a resample is the mean of its seeds' scores on it."""
    if not entries:
        return
    counts = bootstrap.resample_counts(len(entries[0].runs[0].predictions.titles), resamples, seed)
    for e in entries:
        scores = [bootstrap.f1_scores(counts, r.predictions.truth, r.predictions.predicted)
                  for r in e.runs]
        e.resampled = {"micro_f1": np.mean([s[0] for s in scores], axis=0),
                       "macro_f1": np.mean([s[1] for s in scores], axis=0)}


@dataclass
class Difference:
    """entry minus reference on one metric, with its bootstrap interval (None: no predictions)."""
    entry: Entry
    reference: Entry
    key: str
    value: float
    low: float | None = None
    high: float | None = None

    @property
    def verdict(self) -> str:
        if self.low is None:
            return "no interval"
        if not bootstrap.significant(self.low, self.high):
            return "no measurable difference"
        return "wins" if self.low > 0 else "loses"

    def text(self) -> str:
        if self.low is None:
            return f"{self.value:+.4f}"
        return f"{self.value:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def differences(entries: list[Entry]) -> list[Difference]:
    """Every entry against the baseline and against the best entry on micro-F1 (mean over seeds),
    on each interval metric."""
    out = []
    baselines = [e for e in entries if e.is_baseline]
    best = best_entries(entries, "micro_f1")[0]
    references = [baselines[0]] if baselines else []
    if best not in references:
        references.append(best)
    for k, ref in enumerate(references):
        for e in entries:
            if e is ref or e in references[:k]:  # the baseline against the best: said already
                continue
            for key, _ in INTERVAL_METRICS:
                d = Difference(e, ref, key, e.mean(key) - ref.mean(key))
                if key in e.resampled and key in ref.resampled:
                    d.low, d.high = bootstrap.interval(e.resampled[key] - ref.resampled[key])
                out.append(d)
    return out


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes}m {s:02d}s" if minutes else f"{seconds:.1f}s"


def best_entries(entries: list[Entry], key: str) -> list[Entry]:
    top = max(e.mean(key) for e in entries)
    return [e for e in entries if e.mean(key) == top]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head),
            *("| " + " | ".join(row) + " |" for row in rows)]


def runs_table(runs: list[Run]) -> list[str]:
    head = ["run", "model", "engine", "precision", "frozen ep.", "unfrozen ep.", "world size",
            "seed", *(title for _, title in MAIN_METRICS), "best val loss", "train time",
            "samples/s"]
    rows = []
    for r in runs:
        m = r.metrics
        epochs = ["-", "-"] if r.is_baseline else [str(r.phase_epochs("frozen")),
                                                   str(r.phase_epochs("unfrozen"))]
        rows.append([r.name, r.model, r.engine, str(m.get("precision", "-")), *epochs,
                     str(m.get("world_size", "-")), "-" if r.is_baseline else
                     str(r.config.get("seed", "-")), *(_fmt(m[k]) for k, _ in MAIN_METRICS),
                     _fmt(m.get("best_val_loss")),
                     _duration(m.get("train_seconds")) + (" (†)" if r.resumed else ""),
                     _fmt(r.samples_per_s, ".1f")])
    lines = _table(head, rows)
    for r in runs:
        if r.resumed:
            lines += ["", f"(†) `{r.name}` was resumed: its train time counts only the last "
                          f"attempt; its epochs took {_duration(r.epoch_seconds)} in all."]
    return lines


def groups_table(entries: list[Entry]) -> list[str]:
    head = ["model (runs)", "seeds", *(f"{t}: mean ± std (min-max)" for _, t in GROUP_METRICS)]
    return _table(head, [[e.name, str(e.seeds), *(e.spread(k) for k, _ in GROUP_METRICS)]
                         for e in entries])


def label_table(entries: list[Entry]) -> list[str]:
    f1 = [e.label_f1() for e in entries]
    labels = sorted(set().union(*f1))
    support = {}
    for e in entries:
        for name, v in e.runs[0].metrics["per_label"].items():
            support.setdefault(name, v.get("support"))
    rows = []
    for label in labels:
        values = [scores.get(label) for scores in f1]
        present = [v for v in values if v is not None]
        top = max(present) if len(entries) > 1 and len(set(present)) > 1 else None
        rows.append([label, str(support[label]),
                     *(("**%s**" if v == top else "%s") % _fmt(v, ".3f") for v in values)])
    return _table(["label", "test support", *(e.name for e in entries)], rows)


def differences_table(diffs: list[Difference]) -> list[str]:
    rows, by_pair = [], {}
    for d in diffs:
        by_pair.setdefault((d.entry.name, d.reference.name), {})[d.key] = d
    for (name, ref), pair in by_pair.items():
        rows.append([f"`{name}`", f"`{ref}`", *(f"{pair[k].text()} ({pair[k].verdict})"
                                                for k, _ in INTERVAL_METRICS)])
    return _table(["model", "minus", *(f"{t} difference [95% interval]"
                                       for _, t in INTERVAL_METRICS)], rows)


def _claim(d: Difference, title: str) -> str:
    if d.low is None:
        return f"{d.text()} on {title} (no interval, so no verdict)"
    return f"{d.verdict} on {title} ({d.text()})"


def conclusion(entries: list[Entry], diffs: list[Difference]) -> list[str]:
    """Only what the numbers show: the best entries; each entry against the baseline and the best,
    called a win or a loss only where the 95% interval excludes 0; the labels on which the entries
    disagree most."""
    out = []
    for key, title in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1")):
        best = best_entries(entries, key)
        names = " and ".join(e.title for e in best)
        mean = " (mean)" if best[0].seeds > 1 else ""
        out.append(f"- Best test {title}{mean}: {names} ({best[0].mean(key):.4f}).")
    if not any(e.is_baseline for e in entries):
        out.append("- No baseline among these runs: nothing shows what the transformer buys "
                   "(run `python -m vacancy.baseline`).")
    for ref in dict.fromkeys(d.reference.name for d in diffs):
        pairs = [d for d in diffs if d.reference.name == ref]
        role = "the baseline" if pairs[0].reference.is_baseline else "the best on micro-F1"
        out.append(f"- Against {role} {pairs[0].reference.title} (micro-F1 "
                   f"{pairs[0].reference.mean('micro_f1'):.4f}, macro-F1 "
                   f"{pairs[0].reference.mean('macro_f1'):.4f}):")
        for name in dict.fromkeys(d.entry.name for d in pairs):
            claims = [_claim(d, title) for d in pairs if d.entry.name == name
                      for key, title in INTERVAL_METRICS if d.key == key]
            entry = next(d.entry for d in pairs if d.entry.name == name)
            out.append(f"  - {entry.title}: " + "; ".join(claims) + ".")
    if len(entries) > 1:
        f1 = [e.label_f1() for e in entries]
        spread = []
        for label in sorted(set.intersection(*(set(x) for x in f1))):
            scores = [x[label] for x in f1]
            hi, lo = max(range(len(entries)), key=scores.__getitem__), \
                min(range(len(entries)), key=scores.__getitem__)
            spread.append((scores[hi] - scores[lo], label, hi, lo))
        spread = sorted([s for s in spread if s[0] > 0], key=lambda s: (-s[0], s[1]))
        if spread:
            parts = [f"{label} ({gap:.3f}: `{entries[hi].name}` {f1[hi][label]:.3f} vs "
                     f"`{entries[lo].name}` {f1[lo][label]:.3f})"
                     for gap, label, hi, lo in spread[:N_DIFFERING_LABELS]]
            out.append("- Labels whose test F1 differs most between models (no intervals: few "
                       "titles per label): " + "; ".join(parts) + ".")
    return out


def interval_note(resamples: int, seed: int) -> str:
    return (f"Differences are test scores minus the reference's, with a 95% paired-bootstrap "
            f"interval: {resamples} resamples of the test titles (seed {seed}), each scoring both "
            "models on the same titles; a seed group's score on a resample is the mean of its "
            "seeds' scores there, so its interval covers the choice of test titles for that "
            "seed average, and the seed-to-seed spread is in the table above. \"wins\"/\"loses\" "
            "only where the interval excludes 0.")


def error_sections(entries: list[Entry]) -> list[str]:
    """Top confused label pairs, most confident wrong predictions, titles every run gets wrong and
    test titles contradicted in train; from the predictions of the comparable entries."""
    if not entries:
        return ["No run has test_predictions.csv on common test titles: no error analysis.", ""]
    first = entries[0].runs[0].predictions
    labels, top = first.labels, error_analysis.TOP
    matrices = {e.name: sum(error_analysis.confusions(r.predictions) for r in e.runs)
                for e in entries}
    pairs = error_analysis.top_pairs(sum(matrices.values()), labels)
    index = {name: j for j, name in enumerate(labels)}
    lines = [f"### Label pairs most often confused (top {top})", "",
             "Titles where a run predicted the first label while the truth had the second and "
             "the run missed it, summed over the runs (a seed group: over its seeds).", ""]
    lines += _table(["predicted", "truth", "all runs", *(e.name for e in entries)],
                    [[a, b, str(n), *(str(int(m[index[a], index[b]])) for m in matrices.values())]
                     for a, b, n in pairs]) if pairs else ["None."]
    lines += ["", f"### Most confident wrong predictions (top {top} per model)", "",
              "A predicted label that is not in the truth, by its probability; a seed group lists "
              "each (title, label) once, at its highest probability, with the number of its seeds "
              "that predicted it.", ""]
    rows = []
    for e in entries:
        for w in error_analysis.confident_wrong([r.predictions for r in e.runs]):
            seeds = f" ({w.runs}/{e.seeds})" if e.seeds > 1 else ""
            rows.append([e.name, w.title, w.truth, w.predicted, f"{w.label} {w.probability:.3f}"
                         + seeds])
    lines += _table(["model", "title", "truth", "predicted", "wrong label, probability"], rows) \
        if rows else ["None."]
    wrong = error_analysis.always_wrong([r.predictions for e in entries for r in e.runs])
    n_runs = sum(e.seeds for e in entries)
    n_titles = len(first.titles)
    if len(wrong):
        listed = f"the first {top} follow" if len(wrong) > top else \
            "it follows" if len(wrong) == 1 else "they follow"
        sentence = (f"No run (of {n_runs}) predicts the label set of {len(wrong)} of the "
                    f"{n_titles} test titles exactly; {listed}.")
    else:
        sentence = (f"Each of the {n_titles} test titles has its label set predicted exactly by "
                    f"at least one run (of {n_runs}).")
    lines += ["", "### Titles every run gets wrong", "", sentence, ""]
    if len(wrong):
        rows = []
        for i in wrong[:top]:
            seen = {}
            for e in entries:
                for r in e.runs:
                    p = r.predictions
                    key = " ".join(np.array(labels)[p.predicted[i]]) or "(none)"
                    seen[key] = seen.get(key, 0) + 1
            rows.append([first.titles[i], first.areas[i],
                         "; ".join(f"{k} ×{n}" for k, n in seen.items())])
        lines += _table(["title", "truth", "predicted (times)"], rows)
    lines += ["", "### Test titles also in train with other labels", ""]
    lines += train_contradictions(entries[0].runs[0], first)
    return lines + [""]


def train_contradictions(run: Run, pred: Predictions) -> list[str]:
    """The split of the run's own data file (config.json `data`, read again with the run's
    split_seed); a note instead when the file is gone."""
    data = run.config.get("data")
    if not data or not Path(data).is_file():
        return [f"Skipped: the training data `{data}` of `{run.name}` is not here."]
    from .data import DataError, load_splits
    logging.getLogger("vacancy").disabled = True  # its warnings were the training run's to give
    try:
        train = load_splits(data, run.config.get("split_seed", 42)).parts.train
    except DataError as e:
        return [f"Skipped: {e}."]
    finally:
        logging.getLogger("vacancy").disabled = False
    found = error_analysis.contradicted_in_train(pred.titles, pred.areas, train)
    top = error_analysis.TOP
    lines = [f"{len(found)} test titles occur in train (`{data}`, split seed "
             f"{run.config.get('split_seed', 42)}) with another label set"
             + (f"; the first {top}:" if len(found) > top else (":" if found else "."))]
    if found:
        lines += ["", *_table(["title", "test labels", "train labels"],
                              [list(row) for row in found[:top]])]
    return lines


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


@dataclass
class Comparison:
    """Everything the report, the chart and the W&B run show, computed once."""
    runs: list[Run]
    entries: list[Entry]
    diffs: list[Difference]
    comparable: list[Entry]
    notes: list[str]
    resamples: int
    seed: int


def compare(runs: list[Run], resamples: int = bootstrap.RESAMPLES,
            seed: int = bootstrap.SEED) -> Comparison:
    entries = group_runs(runs)
    kept, notes = comparable(entries)
    resample_scores(kept, resamples, seed)
    return Comparison(runs, entries, differences(entries), kept, notes, resamples, seed)


def report(c: Comparison, chart_name: str | None = None) -> str:
    first = c.runs[0]
    data = first.config.get("data", "?")
    lines = ["# Model comparison", "",
             f"Data: `{data}`: {first.metrics.get('n_train')} train / {first.metrics.get('n_val')} "
             f"val / {first.metrics.get('n_test')} test titles. Test metrics at each run's "
             "thresholds (tuned per label on val unless the run fixed them).", ""]
    for note in consistency_notes(c.runs):
        lines += [note, ""]
    lines += ["## Runs", "", *runs_table(c.runs), ""]
    if any(e.seeds > 1 for e in c.entries):
        lines += ["## Seed groups", "", "Runs whose config.json differ only by seed, output "
                  "directory, run name and W&B settings; std is the sample standard deviation "
                  "over the seeds.", "", *groups_table(c.entries), ""]
    if chart_name:
        lines += [f"![main test metrics]({chart_name})", ""]
    lines += ["## Test F1 per label", "",
              *(["Mean over each group's seeds.", ""] if any(e.seeds > 1 for e in c.entries)
                else []), *label_table(c.entries), ""]
    if len(c.entries) > 1:
        lines += ["## Differences", "", interval_note(c.resamples, c.seed), "",
                  *differences_table(c.diffs), ""]
        lines += [f"- {note}" for note in c.notes] + ([""] if c.notes else [])
    lines += ["## Conclusion", "", *conclusion(c.entries, c.diffs), "",
              "## Error analysis", "", *error_sections(c.comparable),
              "Run directories: " + ", ".join(f"`{r.name}` = `{r.path}`" for r in c.runs) + ".",
              ""]
    return "\n".join(lines)


def draw_chart(entries: list[Entry], path: Path):
    """One panel per main metric, one horizontal bar per model (its seeds' mean; with several
    seeds, the seeds as dots and their min-max as a whisker); each bar carries its value. An axis
    starts near the lowest score so that the differences show, and its label says where. The
    caption names only what is drawn. Returns the figure."""
    from matplotlib.figure import Figure  # Agg canvas, no display needed
    metrics = GROUP_METRICS
    n = len(entries)
    seeded = any(e.seeds > 1 for e in entries)
    fig = Figure(figsize=(11, 1.6 + 0.45 * n * 2), layout="constrained")
    axes = fig.subplots(2, 2, sharey=True).ravel()
    y = np.arange(n)[::-1]  # first entry on top
    for ax, (key, title) in zip(axes, metrics):
        means = np.array([e.mean(key) for e in entries])
        lows = np.array([e.values(key).min() for e in entries])
        highs = np.array([e.values(key).max() for e in entries])
        colors = ["0.6" if e.is_baseline else f"C{i}" for i, e in enumerate(entries)]
        ax.barh(y, means, color=colors, height=0.6)
        for yi, e, mean, lo, hi in zip(y, entries, means, lows, highs):
            if e.seeds > 1:
                ax.errorbar([mean], [yi], xerr=[[mean - lo], [hi - mean]], fmt="none",
                            ecolor="black", capsize=3, lw=1)
                ax.plot(e.values(key), [yi] * e.seeds, "k.", ms=5)
        span = max(highs.max() - lows.min(), 0.02)
        left = max(0.0, np.floor((lows.min() - 0.6 * span) * 1000) / 1000)  # as the label says
        ax.set_xlim(left, min(1.0, highs.max() + 0.45 * span) if highs.max() < 1 else 1.0)
        ax.set_xlabel(title + (f" (axis from {left:.3f}, not 0)" if left > 0 else ""),
                      fontsize=10)
        for yi, e, hi in zip(y, entries, highs):
            label = f"{e.mean(key):.3f}" + (f" ±{e.values(key).std(ddof=1):.3f}"
                                            if e.seeds > 1 else "")
            ax.text(hi + 0.02 * span, yi, label, va="center", fontsize=9)
        ax.set_title(f"test {title}", fontsize=11)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=9)
    axes[0].set_yticks(y, [e.name + (f" ({e.seeds} seeds)" if e.seeds > 1 else "")
                           for e in entries])
    drawn = "bar: mean over seeds; dots: seeds; whisker: min-max" if seeded else \
        "bar: one run per model"
    fig.suptitle(f"Test metrics per model ({drawn})", fontsize=11)
    fig.savefig(path, dpi=110)
    return fig


def log_to_wandb(c: Comparison, report_text: str, chart: Path | None, args) -> str:
    """The comparison as one W&B run (job type `comparison`) in the runs' group: the tables of the
    report, the chart, and the report itself. Returns the run's local directory."""
    import html

    import wandb

    from .config import ConfigError
    from .tracking import resolve_wandb_mode
    groups = {r.config.get("wandb_group") for r in c.runs if r.config.get("wandb_group")}
    group = args.wandb_group or (groups.pop() if len(groups) == 1 else None)
    root = Path(args.out).parent if args.out else Path(".")
    mode = resolve_wandb_mode(args.wandb)
    try:
        run = wandb.init(mode=mode, dir=root, project=args.wandb_project,
                         entity=args.wandb_entity or None, group=group, job_type="comparison",
                         name=args.run_name, config={"runs": [str(r.path) for r in c.runs],
                                                     "resamples": c.resamples,
                                                     "bootstrap_seed": c.seed})
    except wandb.Error as e:  # no network, a bad key, an unknown entity...
        first_line = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise ConfigError(f"--wandb {mode}: W&B could not start a run ({first_line}); use "
                          "--wandb offline and `wandb sync` the run later")
    keys = [k for k, _ in MAIN_METRICS]
    tables = {
        "runs": wandb.Table(columns=["run", "model", "seed", *keys], data=[
            [r.name, r.model, r.config.get("seed"), *(r.metrics[k] for k in keys)]
            for r in c.runs]),
        "groups": wandb.Table(columns=["model", "seeds", *(
            f"{k}_{s}" for k, _ in GROUP_METRICS for s in ("mean", "std"))], data=[
            [e.name, e.seeds, *(x for k, _ in GROUP_METRICS for x in (
                e.mean(k), float(e.values(k).std(ddof=1)) if e.seeds > 1 else 0.0))]
            for e in c.entries]),
        "differences": wandb.Table(columns=["model", "minus", "metric", "difference", "low",
                                            "high", "verdict"], data=[
            [d.entry.name, d.reference.name, d.key, d.value, d.low, d.high, d.verdict]
            for d in c.diffs]),
        "per_label_f1": wandb.Table(columns=["label", *(e.name for e in c.entries)], data=[
            [label, *(e.label_f1().get(label) for e in c.entries)]
            for label in sorted(set().union(*(e.label_f1() for e in c.entries)))]),
    }
    row = {f"comparison/{k}": t for k, t in tables.items()}
    row["comparison/report"] = wandb.Html(f"<pre>{html.escape(report_text)}</pre>")
    if chart:
        row["comparison/chart"] = wandb.Image(str(chart))
    run.log(row)
    run.summary.update({f"{e.name}/{k}_mean": e.mean(k) for e in c.entries
                        for k, _ in INTERVAL_METRICS})
    directory = run.dir
    run.finish()
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished output directories")
    parser.add_argument("--out", help="write the Markdown report here (default: print it)")
    parser.add_argument("--chart", help="PNG of the main metrics (default with --out: beside it)")
    parser.add_argument("--resamples", type=int, default=bootstrap.RESAMPLES,
                        help="bootstrap resamples of the test titles")
    parser.add_argument("--bootstrap-seed", type=int, default=bootstrap.SEED,
                        help="seed of the resampling (fixed, so reports are reproducible)")
    parser.add_argument("--wandb", nargs="?", const="auto", default="off",
                        choices=["auto", "online", "offline", "off"],
                        help="log the comparison as one W&B run; `--wandb` alone is `auto`, as in "
                             "training: WANDB_MODE where set, else online with credentials and "
                             "offline without (files beside --out)")
    parser.add_argument("--wandb-project", default="vacancy")
    parser.add_argument("--wandb-entity", default="")
    parser.add_argument("--wandb-group", default="",
                        help="default: the runs' own group when they share one")
    parser.add_argument("--run-name", default="comparison", help="the W&B run's name")
    args = parser.parse_args(argv)
    if args.resamples < 100:
        parser.error(f"--resamples: at least 100 for a 95% interval, got {args.resamples}")
    try:
        runs = load_runs(args.runs)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = compare(runs, args.resamples, args.bootstrap_seed)
    chart = Path(args.chart) if args.chart else \
        Path(args.out).with_suffix(".png") if args.out else None
    if chart:
        chart.parent.mkdir(parents=True, exist_ok=True)
        draw_chart(result.entries, chart)
    # the report links the chart relative to itself, so the pair can be moved together
    link = os.path.relpath(chart, Path(args.out).parent) if chart and args.out else chart
    text = report(result, str(link) if link else None)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}" + (f" and {chart}" if chart else ""))
    else:
        print(text)
    if args.wandb != "off":
        from .config import ConfigError
        try:
            print(f"W&B: logged the comparison in {log_to_wandb(result, text, chart, args)}")
        except ConfigError as e:  # a bad WANDB_MODE, no network, a bad key
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
