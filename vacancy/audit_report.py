"""The audit's files: issues.csv, summary.json, report.md and the noise-per-area plot.

issues.csv is the interface other tools read (`train_ddp.py --drop-label-issues AUDIT_DIR` drops
its rows from train): an integer column `row` (the data row's 0-based position in the input) and
`kind` (conflict, suspect or both) are kept as they are.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .results import write_json
from .suspects import confused_pairs, per_area_table, suggested

ISSUES_COLUMNS = ["row", "title", "given", "suggested", "quality", "kind", "group", "match",
                  "looks_wrong", "looks_missing"]


def areas(mask_row: np.ndarray, names: np.ndarray) -> str:
    return " ".join(names[mask_row])


def issues_table(df: pd.DataFrame, names: list[str], targets: np.ndarray, codes: np.ndarray,
                 conflicts: pd.DataFrame, fit, judgement) -> pd.DataFrame:
    """One line per row that is in a conflict group or flagged by cleanlab, lowest quality score
    first (conflict rows without a score: by group, after the scored ones)."""
    names = np.asarray(names, dtype=object)
    n = len(df)
    in_conflict = np.zeros(n, bool)
    in_conflict[conflicts["index"].to_numpy()] = True
    flagged = judgement.flagged if judgement is not None else np.zeros(n, bool)
    rows = np.flatnonzero(in_conflict | flagged)
    kind = np.where(in_conflict[rows] & flagged[rows], "both",
                    np.where(flagged[rows], "suspect", "conflict"))
    group = pd.Series(pd.NA, index=range(n), dtype="Int64")
    match = pd.Series("", index=range(n), dtype=object)
    majority = pd.Series("", index=range(n), dtype=object)
    group.iloc[conflicts["index"]] = conflicts["group"].to_numpy()
    match.iloc[conflicts["index"]] = conflicts["match"].to_numpy()
    majority.iloc[conflicts["index"]] = conflicts["majority"].to_numpy()
    given = [" ".join(df["labels"].iloc[i]) for i in rows]
    if judgement is not None:
        fix = suggested(targets[rows], judgement.wrong[rows], judgement.missing[rows],
                        fit.mixed[codes[rows]])
        proposal = [areas(m, names) for m in fix]
        wrong = [areas(m, names) for m in judgement.wrong[rows]]
        missing = [areas(m, names) for m in judgement.missing[rows]]
        quality = np.round(judgement.quality[rows], 4)
    else:
        proposal, wrong, missing = given, [""] * len(rows), [""] * len(rows)
        quality = np.full(len(rows), np.nan)
    # a conflict row cleanlab lets pass: the group's majority is the suggestion
    proposal = [m if k == "conflict" and m else p
                for p, m, k in zip(proposal, majority.iloc[rows], kind)]
    table = pd.DataFrame({"row": df["row"].to_numpy()[rows], "title": df["input_title"].iloc[rows]
                          .to_numpy(), "given": given, "suggested": proposal, "quality": quality,
                          "kind": kind, "group": group.iloc[rows].to_numpy(),
                          "match": match.iloc[rows].to_numpy(), "looks_wrong": wrong,
                          "looks_missing": missing})
    return table.sort_values(["quality", "group", "row"], kind="stable",
                             na_position="last").reset_index(drop=True)[ISSUES_COLUMNS]


def write_outputs(out: Path, args, df: pd.DataFrame, names: list[str], targets: np.ndarray,
                  codes: np.ndarray, conflicts: pd.DataFrame, groups: list[dict], fit, judgement,
                  seconds: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    issues = issues_table(df, names, targets, codes, conflicts, fit, judgement)
    issues.to_csv(out / "issues.csv", index=False)
    table = per_area_table(targets, judgement, names) if judgement is not None else None
    pairs = confused_pairs(judgement, names) if judgement is not None else []
    kinds = issues["kind"].value_counts()
    flagged = int(judgement.flagged.sum()) if judgement is not None else 0
    summary = {
        "data": str(args.data), "rows": len(df), "distinct_titles": int(codes.max()) + 1,
        "areas": len(names), "folds": args.folds, "max_fit_titles": args.max_fit_titles,
        "encoder": args.encoder if fit is not None and "knn" in fit.parts else None,
        "knn": args.knn if fit is not None and "knn" in fit.parts else 0,
        "weights": fit.weights if fit is not None else None,
        "cleanlab_low_memory": judgement.low_memory if judgement is not None else None,
        "issues": {"rows": len(issues), **{k: int(kinds.get(k, 0))
                                           for k in ("conflict", "suspect", "both")}},
        "conflicts": {"groups": len(groups),
                      "same_title_groups": sum(g["same_title"] for g in groups),
                      "rows": len(conflicts),
                      "disagreeing_rows": int(conflicts["disagrees"].sum())},
        "suspects": {"rows": flagged, "share": flagged / len(df)},
        # cleanlab's overall_multilabel_health_score: 1 - the share of rows find_label_issues flags
        "health_score": 1 - flagged / len(df) if judgement is not None else None,
        "per_area": table.to_dict(orient="records") if table is not None else [],
        "confused_pairs": pairs,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    write_json(out / "summary.json", summary)
    (out / "report.md").write_text(report(summary, issues, groups))
    if table is not None:
        plot_noise(table).savefig(out / "noise_per_area.png", dpi=100)
    return summary


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def report(summary: dict, issues: pd.DataFrame, groups: list[dict], top: int = 30) -> str:
    s, c = summary, summary["conflicts"]
    lines = [f"# Label audit of {s['data']}", "",
             f"{s['rows']} rows, {s['distinct_titles']} distinct titles (after cleaning), "
             f"{s['areas']} areas. **{s['issues']['rows']} rows to look at**: "
             f"{s['issues']['conflict']} in a conflict only, {s['issues']['suspect']} suspect "
             f"only, {s['issues']['both']} both (issues.csv lists them all, worst first).", ""]
    if s["health_score"] is not None:
        parts = ", ".join(f"{k} {w:.1f}" for k, w in s["weights"].items())
        lines += [f"Suspects: cleanlab flags {s['suspects']['rows']} rows "
                  f"({100 * s['suspects']['share']:.1f}%); label health score "
                  f"{s['health_score']:.3f} (1: no row flagged). Out-of-fold probabilities of "
                  f"{s['folds']}-fold cross-fitting, mix: {parts}.", ""]
    else:
        lines += ["Suspects: none looked for (every row has the same single area).", ""]
    lines += ["## How to read this", "",
              "- A **conflict** group holds rows made of the same words (the same title after "
              "cleaning, or the same words in another order or with a plural *s*) whose areas "
              "differ. No model can be right on all of them: decide which set is right.",
              "- A **suspect** row's given areas disagree with what the other rows imply: a "
              "model fitted without the row (out of fold) gives its areas little probability. "
              "*quality* is cleanlab's label quality score of the area most in doubt (0-1: "
              "the out-of-fold probability of the row's side of it, given or not; low: likely "
              "wrong); "
              "*looks wrong* are given areas it doubts, *looks missing* areas it expects.",
              "- *suggested* is the given set with those changes (a conflict row: its group's "
              "majority). It is a hint, not a verdict: a rare but right area looks wrong too.",
              "- `row` is the 0-based data row in the input (the header is not a row).", ""]
    lines += [f"## Conflicts ({c['groups']} groups, {c['rows']} rows, {c['disagreeing_rows']} "
              f"disagree with their group's majority; {c['same_title_groups']} groups hold the "
              "very same title)", ""]
    ranked = sorted(groups, key=lambda g: (-g["disagreeing"], -g["rows"], g["group"]))[:top]
    if ranked:
        lines += [f"The {len(ranked)} groups with the most disagreeing rows.", "",
                  "| group | titles | label sets (rows) | majority | disagree |",
                  "| --- | --- | --- | --- | --- |"]
        for g in ranked:
            titles = "; ".join(g["titles"][:3]) + (" ..." if len(g["titles"]) > 3 else "")
            sets = "; ".join(f"{k} ({v})" for k, v in g["label_sets"].items())
            lines.append(f"| {g['group']} | {_cell(titles)} | {_cell(sets)} | {g['majority']} | "
                         f"{g['disagreeing']} of {g['rows']} |")
    else:
        lines.append("None: rows made of the same words always carry the same areas.")
    suspects = issues[issues["kind"] != "conflict"].head(top)
    lines += ["", f"## Suspects (the {len(suspects)} lowest quality scores)", ""]
    if len(suspects):
        lines += ["| row | title | given | suggested | quality | looks wrong | looks missing |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in suspects.itertuples():
            lines.append(f"| {r.row} | {_cell(r.title)} | {r.given} | {r.suggested} | "
                         f"{r.quality:.3f} | {r.looks_wrong} | {r.looks_missing} |")
    else:
        lines.append("None flagged.")
    lines += ["", "## Per area", ""]
    if s["per_area"]:
        lines += ["Estimated noise: the share of the area's rows where it looks wrong. Looks "
                  "missing: rows without the area that look like they should have it.", "",
                  "| area | rows | looks wrong | estimated noise | looks missing |",
                  "| --- | --- | --- | --- | --- |"]
        for a in s["per_area"]:
            lines.append(f"| {a['area']} | {a['rows']} | {a['looks_wrong']} | "
                         f"{100 * a['noise']:.1f}% | {a['looks_missing']} |")
        lines += ["", "## Areas most often confused", ""]
        if s["confused_pairs"]:
            lines += ["Rows where the first area looks wrong and the second missing.", "",
                      "| given | suggested instead | rows |", "| --- | --- | --- |"]
            lines += [f"| {p['given']} | {p['suggested']} | {p['rows']} |"
                      for p in s["confused_pairs"]]
        else:
            lines.append("None.")
    else:
        lines.append("Not estimated (a single area).")
    return "\n".join(lines) + "\n"


def plot_noise(table: pd.DataFrame) -> Figure:
    """Estimated noise per area (worst on top), with the rows that look to miss it."""
    table = table.iloc[::-1]  # barh draws the first row at the bottom
    fig = Figure(figsize=(7, 1.5 + 0.28 * len(table)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(table))
    ax.barh(y + 0.2, 100 * table["noise"], height=0.4, color="C3",
            label="looks wrong (% of its rows)")
    ax.barh(y - 0.2, 100 * table["looks_missing"] / np.maximum(table["rows"], 1), height=0.4,
            color="C0", label="looks missing (% of its rows)")
    ax.set(yticks=y, yticklabels=[f"{a} (n={n})" for a, n in zip(table["area"], table["rows"])],
           xlabel="%", ylim=(-0.6, len(table) - 0.4),
           title="Estimated label noise per area (cleanlab, out-of-fold)")
    fig.legend(loc="outside lower center", ncols=2)
    return fig
