"""Does leaving the rows an audit flags out of train help? Injected label noise, the audit, and
training with and without `--drop-label-issues`, scored on the uncorrupted test labels.

    python studies/audit_training.py --data ../shared/data/onet_titles_it.csv --name it \
        --seeds 1 2 3 --out runs/audit_study

With a fixed seed (--noise-seed) it corrupts --share of the usable rows of --data, in equal
shares: one area swapped for another, a wrong area added, one of two or more areas dropped
(NAME/noisy.csv; NAME/injected.csv lists the rows). It audits the corrupted file (`python -m
vacancy.audit`, NAME/audit/) and says how many of the rows the run would drop were injected. Then
it trains the default recipe (`train_ddp.py --data noisy.csv --seed S` under torchrun) per seed
and arm, and `python -m vacancy.baseline` once (it has no seed):

- noisy: every train row, as the corrupted file has them;
- drop: `--drop-label-issues NAME/audit`;
- oracle: the injected rows dropped (a hand-made issues.csv of them): what a perfect audit gives;
- clean: the uncorrupted file (the ceiling).

The split is the same for all (the corruption keeps every row usable), so every run is scored on
the same test titles against their uncorrupted labels (the label columns of the uncorrupted
train split, as a run's own metrics restrict them): micro-/macro-F1 mean ± std over the seeds,
and the paired bootstrap interval (vacancy.bootstrap, 1,000 resamples of the test titles) of the
seed-mean difference to the noisy arm and to the baseline. Finished runs are kept: rerunning
completes a study.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vacancy import bootstrap  # noqa: E402
from vacancy.data import load_splits, parse_labels  # noqa: E402
from vacancy.label_issues import input_rows, read_flagged  # noqa: E402
from vacancy.results import read_predictions  # noqa: E402

KINDS = ("swap", "add", "drop")
ARMS = ("noisy", "drop", "oracle", "clean")


def corrupt(df: pd.DataFrame, usable: np.ndarray, share: float, seed: int
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`df` with `share` of the `usable` rows' areas corrupted, in equal shares of KINDS (a drop
    only where a row has two areas or more), and the list of what was done."""
    rng = np.random.default_rng(seed)
    areas = [parse_labels(a) for a in df["area"]]
    names = sorted({x for row in areas for x in row})
    n = round(share * len(usable))
    wanted = {kind: n // 3 + (i < n % 3) for i, kind in enumerate(KINDS)}
    order = rng.permutation(usable)
    multi = [r for r in order if len(areas[r]) >= 2][:wanted["drop"]]
    if len(multi) < wanted["drop"]:
        sys.exit(f"error: {len(multi)} rows have two areas or more, {wanted['drop']} drops wanted")
    taken = set(multi)
    rest = [r for r in order if r not in taken]
    picked = {"drop": multi, "swap": rest[:wanted["swap"]],
              "add": rest[wanted["swap"]:wanted["swap"] + wanted["add"]]}
    out, log = df.copy(), []
    for kind, rows in picked.items():
        for r in rows:
            given = list(areas[r])
            others = [x for x in names if x not in given]
            gone = rng.choice(given)
            kept = [x for x in given if x != gone]
            new = kept if kind == "drop" else \
                kept + [rng.choice(others)] if kind == "swap" else given + [rng.choice(others)]
            out.loc[r, "area"] = " ".join(sorted(new))
            log.append({"row": int(r), "kind": kind, "given": " ".join(given),
                        "noisy": " ".join(sorted(new))})
    return out, pd.DataFrame(log).sort_values("row", kind="stable")


def prepare_files(args, study: Path) -> tuple[Path, pd.DataFrame]:
    noisy, injected = study / "noisy.csv", study / "injected.csv"
    if not noisy.exists():
        df = pd.read_csv(args.data, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        usable = input_rows(args.data)[0]["row"].to_numpy()
        out, log = corrupt(df, usable, args.share, args.noise_seed)
        out.to_csv(noisy, index=False)
        log.to_csv(injected, index=False)
    log = pd.read_csv(injected, dtype={"given": str, "noisy": str}, keep_default_na=False)
    oracle = study / "oracle"
    if not (oracle / "issues.csv").exists():
        oracle.mkdir(exist_ok=True)
        issues = pd.DataFrame({"row": log["row"], "kind": "suspect", "title": "",
                               "given": log["noisy"], "suggested": log["given"], "quality": 0.0})
        issues.to_csv(oracle / "issues.csv", index=False)
    return noisy, log


def audit(args, study: Path, noisy: Path, injected: pd.DataFrame) -> None:
    folder = study / "audit"
    if not (folder / "issues.csv").exists():
        cmd = [sys.executable, "-m", "vacancy.audit", "--data", str(noisy), "--output-dir",
               str(folder), *args.audit_flags]
        print("$", " ".join(cmd), flush=True)
        with open(study / "audit.log", "a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    flagged = set(read_flagged(str(folder)).tolist())
    wrong = set(injected["row"].tolist())
    hits = len(flagged & wrong)
    train = set(split_rows(noisy, args.split_seed)["train"])
    print(f"audit: {len(flagged)} rows to drop (conflict rows that agree with their majority "
          f"kept), {hits} of them injected: precision {hits / max(len(flagged), 1):.3f}, recall "
          f"{hits / len(wrong):.3f} of the {len(wrong)} injected rows; in train: "
          f"{len(flagged & train)} dropped, {len(flagged & train & wrong)} of the "
          f"{len(wrong & train)} injected train rows among them")


def split_rows(path: Path, split_seed: int) -> dict[str, list[int]]:
    """Each split part's rows as positions in the file (label_issues' mapping)."""
    from vacancy.data import split
    rows = input_rows(str(path))[0]
    parts = split(rows, split_seed, str(path))
    return {name: getattr(parts, name)["row"].tolist() for name in ("train", "val", "test")}


def train(arm: str, data: Path, run_dir: Path, seed: int, nproc: int, extra: list[str]) -> None:
    if (run_dir / "metrics.json").exists():
        return
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    resume = ["--resume"] if (run_dir / "config.json").exists() else []
    cmd = [*launcher, str(ROOT / "train_ddp.py"), "--data", str(data), "--seed", str(seed),
           "--output-dir", str(run_dir), "--wandb", "off", *resume, *extra]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def baseline(data: Path, run_dir: Path) -> None:
    if not (run_dir / "metrics.json").exists():
        cmd = [sys.executable, "-m", "vacancy.baseline", "--data", str(data), "--output-dir",
               str(run_dir), "--overwrite"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)


def predicted_on_clean(run_dir: Path, clean) -> np.ndarray:
    """The run's predicted labels as a matrix over the uncorrupted train split's labels, after
    checking that it was tested on the same titles."""
    pred = read_predictions(run_dir)
    if pred.titles.tolist() != clean.parts.test["title"].tolist():
        sys.exit(f"error: {run_dir}: its test titles are not those of the uncorrupted split")
    column = {name: j for j, name in enumerate(clean.labels.names)}
    out = np.zeros((len(pred.titles), len(column)), dtype=bool)
    for i, row in enumerate(pred.predicted):
        for name in np.array(pred.labels)[row]:
            if name in column:
                out[i, column[name]] = True
    return out


def score(arms: dict[str, list[Path]], clean, resamples: int) -> str:
    truth = clean.targets["test"].astype(bool)
    counts = bootstrap.resample_counts(len(truth), resamples)
    per_run, resampled = {}, {}
    for arm, runs in arms.items():
        scores = [bootstrap.f1_scores(np.ones((1, len(truth)), np.float32), truth,
                                      predicted_on_clean(r, clean)) for r in runs]
        per_run[arm] = np.array([[s[0][0], s[1][0]] for s in scores])  # (runs, micro/macro)
        boot = [bootstrap.f1_scores(counts, truth, predicted_on_clean(r, clean)) for r in runs]
        resampled[arm] = [np.mean([b[k] for b in boot], axis=0) for k in (0, 1)]

    def spread(values: np.ndarray) -> str:
        return f"{values.mean():.4f}" if len(values) == 1 else \
            f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"

    def versus(arm: str, ref: str, k: int) -> str:
        if arm == ref or ref not in per_run:
            return ""
        diff = per_run[arm][:, k].mean() - per_run[ref][:, k].mean()
        low, high = bootstrap.interval(resampled[arm][k] - resampled[ref][k])
        return f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]"

    lines = ["| arm | runs | micro-F1 | macro-F1 | micro vs noisy | macro vs noisy | "
             "micro vs baseline |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for arm in arms:
        lines.append(f"| {arm} | {len(arms[arm])} | {spread(per_run[arm][:, 0])} | "
                     f"{spread(per_run[arm][:, 1])} | {versus(arm, 'noisy', 0)} | "
                     f"{versus(arm, 'noisy', 1)} | {versus(arm, 'baseline', 0)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the uncorrupted CSV")
    parser.add_argument("--name", required=True, help="the study's folder under --out")
    parser.add_argument("--out", default="runs/audit_study")
    parser.add_argument("--share", type=float, default=0.1, help="share of rows corrupted")
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--resamples", type=int, default=bootstrap.RESAMPLES)
    parser.add_argument("--audit-flags", nargs=argparse.REMAINDER, default=[],
                        help="the rest goes to python -m vacancy.audit")
    args = parser.parse_args(argv)
    study = Path(args.out).resolve() / args.name
    study.mkdir(parents=True, exist_ok=True)
    noisy, injected = prepare_files(args, study)
    print(f"{args.data}: {len(injected)} rows corrupted ("
          f"{', '.join(f'{k} {(injected.kind == k).sum()}' for k in KINDS)}), seed "
          f"{args.noise_seed}: {noisy}")
    if "drop" in args.arms:
        audit(args, study, noisy, injected)
    extra = {"noisy": (noisy, []), "clean": (Path(args.data).resolve(), []),
             "drop": (noisy, ["--drop-label-issues", str(study / "audit")]),
             "oracle": (noisy, ["--drop-label-issues", str(study / "oracle")])}
    runs = {}
    for seed in args.seeds:
        for arm in args.arms:
            run_dir = study / f"{arm}-s{seed}"
            train(arm, extra[arm][0], run_dir, seed, args.nproc,
                  ["--split-seed", str(args.split_seed), *extra[arm][1]])
            runs.setdefault(arm, []).append(run_dir)
    baseline(noisy, study / "baseline")
    runs["baseline"] = [study / "baseline"]
    clean = load_splits(args.data, args.split_seed)
    print(f"\ntest: {len(clean.parts.test)} titles, scored on their uncorrupted labels; "
          f"seeds {' '.join(map(str, args.seeds))}; baseline: python -m vacancy.baseline on "
          "noisy.csv; [95% paired bootstrap interval]\n")
    print(score(runs, clean, args.resamples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
