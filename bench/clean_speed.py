"""Cleaning speed: data.clean_title and data.clean_titles against NLTK's Treebank tokenizer alone
(data._clean_title_nltk, the reference they must equal), on titles with punctuation; the identity
of all three on every distinct title of a 1M-row file; and the training's cold start on that file.

    nice python bench/clean_speed.py                 # O*NET major and 1M rows; cold start, 2 ranks
    python bench/clean_speed.py --rows 100000 --skip-train

The 1M file is bench/data_scale.py's synthetic one (vacancy/synth.py, seed 0) with the row number
appended to `--numbered` of its titles (a fixed random share): job boards repeat titles, but a
file of mostly distinct ones is the worst case for cleaning, which is done once per distinct
title. Titles "with punctuation" are the distinct lower-cased ones that clean_title's plain-words
shortcut does not take ([a-z0-9 ] only), i.e. the ones NLTK's rules were run on. "Old" speeds are
NLTK's on a sample of `--sample` of them; "one by one" calls clean_title per title (the tagger's
way), "bulk" passes the sample to clean_titles. The identity check compares all three on every
distinct title (NLTK's side over all cores). The cold start is bench/data_scale.py's: the real
entry point under torchrun, minilm, a fresh cache directory, stopped at the first optimizer step,
for this code and for `--old-rev` (the code before the fast cleaning).
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pandas as pd  # noqa: E402

from vacancy import data  # noqa: E402

ONET = ROOT.parent / "shared" / "data" / "onet_titles_major.csv"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--onet", default=str(ONET), help="real titles to time too ('' for none)")
    parser.add_argument("--numbered", type=float, default=0.88,
                        help="share of the rows whose title gets its row number appended "
                             "(0.88: 93%% distinct titles at 1M rows)")
    parser.add_argument("--sample", type=int, default=20_000,
                        help="titles with punctuation timed per path (NLTK's is slow)")
    parser.add_argument("--nproc", type=int, default=2, help="ranks of the cold start")
    parser.add_argument("--old-rev", default="0b283f4", help="commit before the fast cleaning")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vacancy-clean"),
                        help="where the CSV, the old code and the runs go (the CSV is reused)")
    parser.add_argument("--skip-identity", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-old", action="store_true", help="no cold start of --old-rev")
    parser.add_argument("--skip-new", action="store_true", help="no cold start of this code")
    return parser.parse_args(argv)


def make_csv(work: Path, rows: int, numbered: float) -> Path:
    path = work / f"titles_{rows}_numbered{numbered:g}.csv"
    if not path.exists():
        from vacancy.synth import generate
        rng = random.Random(0)
        with open(f"{path}.tmp", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["title", "area"])
            for i, (title, areas) in enumerate(generate(rows, seed=0)):
                writer.writerow([f"{title} {i}" if rng.random() < numbered else title, areas])
        os.replace(f"{path}.tmp", path)
    return path


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def rate(fn, titles: list[str]) -> float:
    start = time.perf_counter()
    fn(titles)
    return len(titles) / (time.perf_counter() - start)


def speeds(name: str, titles: list[str], sample: int) -> None:
    """titles/s of each path on the distinct titles with punctuation of one file."""
    distinct = pd.unique(pd.Series([t.lower() for t in titles], dtype=object)).tolist()
    punctuated = [t for t in distinct if not data._is_plain(t)]
    some = random.Random(0).sample(punctuated, min(sample, len(punctuated)))
    data.clean_titles(some[:100])  # compiles the rules
    old = rate(lambda ts: [data._clean_title_nltk(t) for t in ts], some)
    one = rate(lambda ts: [data.clean_title(t) for t in ts], some)
    bulk = rate(data.clean_titles, some)
    every = rate(data.clean_titles, punctuated)
    print(f"| {name} | {len(titles):,} | {len(distinct):,} | {len(punctuated):,} | {old:,.0f} | "
          f"{one:,.0f} ({one / old:.1f}x) | {bulk:,.0f} ({bulk / old:.1f}x) | "
          f"{every:,.0f} ({every / old:.1f}x) | {load()} |", flush=True)


def _nltk_chunk(titles: list[str]) -> list[str]:
    return [data._clean_title_nltk(t) for t in titles]


def identity(titles: list[str]) -> int:
    """Distinct titles on which clean_title or clean_titles differ from NLTK (printed)."""
    distinct = pd.unique(pd.Series(titles, dtype=object)).tolist()
    start = time.perf_counter()
    size = -(-len(distinct) // 64)
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        reference = [t for part in pool.map(_nltk_chunk, [distinct[i:i + size] for i in
                                                          range(0, len(distinct), size)])
                     for t in part]
    nltk_s = time.perf_counter() - start
    bulk = data.clean_titles(distinct)
    one = [data.clean_title(t) for t in distinct]
    differ = [i for i, (r, b, o) in enumerate(zip(reference, bulk, one)) if not r == b == o]
    for i in differ[:5]:
        print(f"  differs: {distinct[i]!r}: NLTK {reference[i]!r}, clean_titles {bulk[i]!r}, "
              f"clean_title {one[i]!r}")
    print(f"identity: {len(distinct):,} distinct titles (NLTK over {os.cpu_count()} processes in "
          f"{nltk_s:.0f} s): {len(differ)} differ from NLTK; {load()}", flush=True)
    return len(differ)


def cold_start(args, csv_path: Path, work: Path) -> None:
    from data_scale import first_step, old_code
    runs = [] if args.skip_new else [("this code", ROOT)]
    if not args.skip_old:
        runs.append((f"old ({args.old_rev})", old_code(work, args.old_rev)))
    print(f"\n| cold start, {csv_path.name} | processes | first step (s) | CPU time, all processes "
          "(s) | peak RSS per rank (MB) | preparing process peak (MB) | load at start |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |", flush=True)
    for name, code in runs:
        cache = work / f"cache-{code.name}"
        shutil.rmtree(cache, ignore_errors=True)
        at_start = load()
        r = first_step(code, csv_path, args.nproc, work / f"run-{code.name}", cache)
        print(f"| {name} | {args.nproc} | {r['first_step_s']:.1f} | {r['cpu_s']:.1f} | "
              f"{r['rss_mb']:.0f} | {r['prep_rss_mb']:.0f} | {at_start} |", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPU(s); {load()} at start", flush=True)
    csv_path = make_csv(work, args.rows, args.numbered)
    big = pd.read_csv(csv_path, dtype=str, keep_default_na=False)["title"].tolist()
    print("\n| file | titles | distinct (lower-cased) | with punctuation | old: NLTK (titles/s) | "
          "clean_title, one by one | clean_titles, bulk | clean_titles, all with punctuation "
          "| load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |", flush=True)
    if args.onet and Path(args.onet).exists():
        speeds(Path(args.onet).name,
               pd.read_csv(args.onet, dtype=str, keep_default_na=False)["title"].tolist(),
               args.sample)
    speeds(csv_path.name, big, args.sample)
    differ = 0 if args.skip_identity else identity(big)
    if not args.skip_train:
        cold_start(args, csv_path, work)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
