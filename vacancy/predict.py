"""Tag vacancy titles with their areas using a trained model (a run's `best/` directory).

    python -m vacancy.predict --model runs/my/best "Senior Java Developer" "Data Engineer / ML"
    python -m vacancy.predict --model runs/my/best --input titles.csv --output tagged.parquet
    torchrun --standalone --nproc_per_node 4 -m vacancy.predict --model runs/my/best \\
        --input titles.csv.gz --output tagged.csv.gz              # 4 processes (or GPUs)

A title's probabilities are the transformer's, mixed with the TF-IDF model and the kNN part saved
beside it when the run trained them (`--ensemble off`: the transformer alone). An area is predicted
when its probability reaches the per-label threshold saved with the model (thresholds.json, picked
on val), and a title with none gets its most probable area when the run said so (decision.json);
`--threshold T` uses T for every label instead, and `--top-k K` keeps at most the K most probable
of the predicted areas (alone: the K most probable areas). Titles are cleaned by the same function
as in training (data.clean_title); an empty one gets no area.

A file is tagged in chunks of `--chunk-rows` rows, so memory stays flat whatever its size. Each
distinct cleaned title is scored once in the whole file: a chunk scores only the titles no earlier
chunk had, sorted by length, and the scores are kept (up to `--cache-titles` distinct titles; past
that the cache is emptied at the end of a chunk and refills). Each chunk goes to a part file in
OUTPUT.parts/, with the titles it scored, so `--resume` continues a killed run from its last
complete chunk, with the same cache it had; at the end the parts are joined into OUTPUT.tmp,
renamed OUTPUT. Under torchrun, rank 0 reads, cleans and writes, and every rank scores its share
of each chunk's new titles: the batches are the same as in one process, so is the output file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("vacancy")
CHUNK_ROWS = 100_000
CACHE_TITLES = 1_000_000  # distinct titles with their scores: ~250 MB with 23 labels
MODEL_FILES = {"config.json": "its config", "thresholds.json": "its thresholds"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
STATE_FILE = "state.json"


class PredictError(ValueError):
    """Bad model directory or input file; the message names it."""


def select(probs: np.ndarray, thresholds: np.ndarray, top_k: int | None,
           at_least_one: bool = False) -> list[np.ndarray]:
    """Per title, the indices of its predicted labels, most probable first. (An empty title is
    never scored, so the at-least-one rule never gives it an area: see Scorer.tag.)"""
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")
        chosen = order[row[order] >= thresholds[order]]
        if at_least_one and not len(chosen):
            chosen = order[:1]
        out.append(chosen[:top_k] if top_k else chosen)
    return out


def model_dir(path: str) -> Path:
    """The saved model directory: `path` itself, or its best/ when given a whole run directory."""
    model = Path(path)
    if not model.is_dir():
        raise PredictError(f"--model {path}: no such directory")
    if (model / "best").is_dir():
        return model / "best"
    run_files = ("train.log", "history.jsonl", "last", "metrics.json")
    if any((model / f).exists() for f in run_files):
        raise PredictError(f"{path} holds no best/ (the run did not finish an epoch)")
    if not (model / "config.json").is_file():
        raise PredictError(f"--model {path}: not a saved model (no config.json); pass a run's "
                           "best/ directory or the run directory")
    return model


def check_model_files(path: Path, backend: str) -> None:
    """What loading needs, checked first so that a missing file is named, not a loader's
    traceback."""
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if backend != "onnx" and not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    decision = path / "decision.json"
    if decision.is_file():
        saved = json.loads(decision.read_text())
        weights = saved.get("weights") or {}
        for part in ("tfidf", "knn"):
            if saved.get(part) and weights.get(part, part == "tfidf") and \
                    not (path / saved[part]).is_dir():
                missing.append(f"{saved[part]}/")
    if missing:
        raise PredictError(f"--model {path}: incomplete best/ directory, missing "
                           f"{', '.join(missing)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vacancy.predict",
                                     description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("titles", nargs="*", help="titles to tag (or use --input)")
    parser.add_argument("--model", required=True,
                        help="a run's best/ directory, or the run directory (its best/)")
    parser.add_argument("--input", help="a table with a `title` column (other columns are kept): "
                                        ".csv, .csv.gz, .parquet or .jsonl, by its extension; "
                                        "- reads CSV from stdin")
    parser.add_argument("--output", help="where --input's rows go, with a `predicted` column "
                                         "(space-separated areas); format by extension, - or "
                                         "none: CSV to stdout")
    parser.add_argument("--probs", action="store_true",
                        help="also write one p_<label> column per area, its probability "
                             "(off by default: 23 more columns)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run from its last chunk in OUTPUT.parts/ (same "
                             "input, model and flags; with no parts it simply starts)")
    parser.add_argument("--threshold", type=float, help="one threshold for every label instead "
                                                        "of the saved per-label ones")
    parser.add_argument("--top-k", type=int, help="at most this many areas per title, the most "
                                                  "probable first")
    parser.add_argument("--ensemble", choices=("on", "off"), default="on",
                        help="off: the transformer alone, without the TF-IDF model and kNN part "
                             "saved beside it (default: as the run saved it)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="what scores the transformer part (auto: the ONNX export in best/ "
                             "when there is one, else PyTorch)")
    parser.add_argument("--onnx-file", choices=("model.int8.onnx", "model.onnx"),
                        help="the onnx backend's graph in best/onnx/ (default: the int8 one when "
                             "the export has it, else fp32)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="the torch backend's weights (auto: bf16 on a CUDA card that has "
                             "it, else fp32)")
    parser.add_argument("--device", default="cpu",
                        help="one process: cpu or cuda (under torchrun each rank takes its GPU)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS,
                        help="rows read, tagged and written at a time")
    parser.add_argument("--cache-titles", type=int, default=CACHE_TITLES,
                        help="distinct titles whose scores are kept across chunks")
    args = parser.parse_args(argv)
    if bool(args.titles) == bool(args.input):
        parser.error("give titles on the command line or --input FILE (one of the two)")
    if args.output and not args.input:
        parser.error("--output needs --input")
    args.output = args.output or ("-" if args.input else None)
    if args.resume and "-" in (args.input, args.output):
        parser.error("--resume needs --input FILE and --output FILE (not stdin or stdout)")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        parser.error(f"--threshold: must be in [0, 1], got {args.threshold}")
    for flag in ("top_k", "batch_size", "chunk_rows", "cache_titles"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')}: must be >= 1, got {value}")
    return args


def readable(raw) -> str | None:
    """A title as text, or None when it is missing or unreadable (not text, or bytes that were
    not UTF-8)."""
    if not isinstance(raw, str) or "\ufffd" in raw:
        return None
    return raw


class Scorer:
    """Cleaned title -> its areas as written and its probabilities, each distinct title scored
    once. The probabilities sit in one growing float32 array, the areas strings are shared
    between titles (few distinct ones): ~250 bytes a title with 23 labels, key included.
    Bounded: past --cache-titles titles the cache is emptied at a chunk's end (`end_chunk`), so
    it holds exactly the titles scored since the last emptying, which a resumed run reloads."""

    def __init__(self, tagger, args, thresholds: np.ndarray, world: "World") -> None:
        self.tagger, self.args, self.thresholds, self.world = tagger, args, thresholds, world
        self.names = np.array(tagger.labels)
        self.end_chunk(force=True)

    def add(self, titles: list[str], probs: np.ndarray) -> None:
        chosen = select(probs, self.thresholds, self.args.top_k, self.tagger.at_least_one)
        start = len(self.index)
        if start + len(titles) > len(self.probs):  # grow by doubling: amortised O(1) a title
            grown = np.empty((max(2 * len(self.probs), start + len(titles)), len(self.names)),
                             np.float32)
            grown[:start] = self.probs[:start]
            self.probs = grown
        self.probs[start:start + len(titles)] = probs
        for i, (title, idx) in enumerate(zip(titles, chosen)):
            areas = " ".join(self.names[idx])
            self.index[title] = start + i
            self.areas.append(self._shared.setdefault(areas, areas))

    def new_titles(self, cleaned: list[str | None]) -> list[str]:
        """The distinct non-empty titles not yet scored, shortest first (ties by text, so that
        the batches, and hence the scores to the last bit, do not depend on the row order)."""
        new = {t for t in cleaned if t and t not in self.index}
        return sorted(new, key=lambda t: (len(t), t))

    def tag(self, cleaned: list[str | None], progress=None) -> tuple:
        """(areas per row, probabilities per row (NaN for a title that is empty or None),
        the new titles scored, their probabilities)."""
        todo = self.new_titles(cleaned)
        scored = self.world.score(self.tagger, todo, self.args, progress)
        self.add(todo, scored)
        rows = np.array([self.index[t] if t else -1 for t in cleaned], np.int64)
        probs = self.probs[np.maximum(rows, 0)] if len(rows) else \
            np.zeros((0, len(self.names)), np.float32)
        probs[rows < 0] = np.nan
        areas = [self.areas[i] if i >= 0 else "" for i in rows.tolist()]
        return areas, probs, todo, scored

    def end_chunk(self, force: bool = False) -> bool:
        """Empty the cache if it is over its limit; whether it was."""
        if not force and len(self.index) <= self.args.cache_titles:
            return False
        self.index: dict[str, int] = {}
        self.areas: list[str] = []
        self._shared: dict[str, str] = {}
        self.probs = np.empty((1024, len(self.names)), np.float32)
        return True


class World:
    """Scoring shared out over the ranks of a torchrun job (one process: all of it here). Rank 0
    sends each chunk's new titles; the batches are cut as in one process and dealt out in turn,
    and rank 0 gathers them back in order."""
    STOP = None

    def __init__(self) -> None:
        self.dist = None
        if "RANK" in os.environ:  # under a launcher: torch is needed for the process group
            from . import dist
            self.dist = dist
        self.device = self.dist.setup() if self.dist else None
        self.rank = self.dist.rank() if self.dist else 0
        self.size = self.dist.world_size() if self.dist else 1

    def score(self, tagger, titles: list[str], args, progress=None) -> np.ndarray:
        if self.size > 1 and self.rank == 0:
            self.dist.broadcast_object(titles)  # the other ranks wait in serve()
        batches = [titles[i:i + args.batch_size] for i in range(0, len(titles), args.batch_size)]
        mine = []
        for n, batch in enumerate(batches[self.rank::self.size]):
            mine.append(tagger.probs(batch, args.batch_size, args.max_length, clean=False))
            if progress is not None:
                progress.scoring(min(len(titles), (n + 1) * self.size * args.batch_size),
                                 len(titles))
        if self.size > 1:
            gathered = self.dist.gather_object(mine)
            if self.rank != 0:
                return np.zeros((0, len(tagger.labels)), np.float32)
            mine = [gathered[i % self.size][i // self.size] for i in range(len(batches))]
        return np.concatenate(mine) if mine else np.zeros((0, len(tagger.labels)), np.float32)

    def serve(self, tagger, args) -> None:
        """Ranks other than 0: score shares until rank 0 says stop."""
        while (titles := self.dist.broadcast_object(None)) is not self.STOP:
            self.score(tagger, titles, args)

    def stop(self) -> None:
        if self.size > 1 and self.rank == 0:
            self.dist.broadcast_object(self.STOP)

    def teardown(self) -> None:
        if self.dist:
            self.dist.teardown()


def clean_all(texts: list[str | None]) -> list[str | None]:
    from .data import clean_titles
    kept = [t for t in texts if t is not None]
    cleaned = iter(clean_titles(kept))
    return [next(cleaned) if t is not None else None for t in texts]


class BadRows:
    """Rows given no area because their title is empty or unreadable, for one warning line."""

    def __init__(self, saved: dict | None = None) -> None:
        saved = saved or {}
        self.empty, self.unreadable = saved.get("empty", 0), saved.get("unreadable", 0)
        self.examples: list[int] = saved.get("examples", [])  # 1-based data rows

    def count(self, texts: list, cleaned: list, first_row: int) -> None:
        for i, (text, clean) in enumerate(zip(texts, cleaned)):
            if text is None:
                self.unreadable += 1
            elif not clean:
                self.empty += 1
            else:
                continue
            if len(self.examples) < 5:
                self.examples.append(first_row + i + 1)

    def warn(self, path: str, problems) -> None:
        if self.empty or self.unreadable:
            total = self.empty + self.unreadable
            rows = ", ".join(map(str, self.examples)) + (", ..." if total > 5 else "")
            print(f"warning: --input {path}: {total} row(s) tagged with no area: {self.empty} "
                  f"with an empty title, {self.unreadable} with none or an unreadable one "
                  f"(rows {rows})", file=sys.stderr)
        for lines, what in ((problems.skipped_lines, "with more fields than the header, left "
                                                     "out"),
                            (problems.unreadable_lines, "not a JSON object, written as "
                                                        "{\"predicted\": \"\"}")):
            if lines:
                shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
                print(f"warning: --input {path}: {len(lines)} line(s) {what} (lines {shown})",
                      file=sys.stderr)


class Parts:
    """OUTPUT.parts/: one file per finished chunk, the titles each chunk scored (for a resumed
    run's cache) and state.json; joined into OUTPUT at the end."""

    def __init__(self, output: str, fmt: str, key: dict, resume: bool) -> None:
        self.output, self.fmt, self.key = Path(output), fmt, key
        self.dir = Path(output + ".parts")
        self.state = {"key": key, "chunks": 0, "rows": 0, "cache_from": 0, "bad": {}}
        saved = self.dir / STATE_FILE
        if resume and saved.is_file():
            state = json.loads(saved.read_text())
            if state.get("key") != key:
                raise PredictError(f"--resume: {self.dir} was made with another input, model or "
                                   "flags; run without --resume to start over")
            self.state = state
        elif self.dir.exists():  # a killed run's parts, not to be resumed (or without state)
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def part(self, i: int) -> Path:
        ext = self.fmt if self.fmt != "jsonl" else "jsonl"
        return self.dir / f"part-{i:05d}.{ext}"

    def reload(self, scorer: Scorer) -> None:
        """The cache as it was after the last finished chunk."""
        for i in range(self.state["cache_from"], self.state["chunks"]):
            titles = json.loads((self.dir / f"scored-{i:05d}.json").read_text())
            scorer.add(titles, np.load(self.dir / f"scored-{i:05d}.npy"))

    def commit(self, i: int, chunk, columns, scored: list[str], probs: np.ndarray, rows: int,
               bad: BadRows, emptied: bool) -> None:
        from .tabular import write_part
        tmp = self.dir / f"part-{i:05d}.tmp"
        write_part(chunk, self.fmt, tmp, header=i == 0, columns=columns)
        os.replace(tmp, self.part(i))
        (self.dir / f"scored-{i:05d}.json").write_text(json.dumps(scored, ensure_ascii=False))
        np.save(self.dir / f"scored-{i:05d}.npy", probs)
        self.state.update(chunks=i + 1, rows=self.state["rows"] + rows,
                          bad={"empty": bad.empty, "unreadable": bad.unreadable,
                               "examples": bad.examples})
        if emptied:  # the cache starts again at the next chunk: earlier scores are not needed
            for j in range(self.state["cache_from"], i + 1):
                for ext in ("json", "npy"):
                    (self.dir / f"scored-{j:05d}.{ext}").unlink(missing_ok=True)
            self.state["cache_from"] = i + 1
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.dir / STATE_FILE)

    def finish(self, columns, empty_chunk) -> None:
        """Join the parts into OUTPUT (atomically: OUTPUT.tmp, renamed) and remove them."""
        from .tabular import join_parts, write_part
        if not self.state["chunks"]:  # no rows: a file with the columns alone
            write_part(empty_chunk, self.fmt, self.part(0), header=True, columns=columns)
            self.state["chunks"] = 1
        tmp = Path(str(self.output) + ".tmp")
        join_parts([self.part(i) for i in range(self.state["chunks"])], self.fmt, tmp)
        os.replace(tmp, self.output)
        shutil.rmtree(self.dir)


def run_key(args, path: Path) -> dict:
    """What a resumed run must share with the killed one."""
    src = Path(args.input).resolve()
    stat = src.stat()
    settings = {k: getattr(args, k) for k in ("threshold", "top_k", "probs", "ensemble",
                                              "max_length", "chunk_rows", "cache_titles",
                                              "batch_size", "backend", "onnx_file",
                                              "precision")}
    weights = next((path / n for n in WEIGHT_FILES if (path / n).is_file()), path / "config.json")
    return {"input": str(src), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "model": str(path.resolve()),
            "model_hash": hashlib.sha256(weights.read_bytes()[:1 << 20]).hexdigest()[:16],
            "settings": settings}


def tag_file(args, scorer: Scorer, path: Path) -> None:
    """Rank 0: --input to --output, chunk by chunk."""
    from .progress import TagProgress
    from .tabular import ChunkReader, add_columns, table_format, write_part
    reader = ChunkReader(args.input, args.chunk_rows)
    out_fmt = table_format(args.output, "--output")
    columns = reader.output_columns
    to_stdout = args.output == "-"
    parts = None if to_stdout else Parts(args.output, out_fmt, run_key(args, path)
                                         if args.input != "-" else {}, args.resume)
    done = parts.state["chunks"] if parts else 0
    bad = BadRows(parts.state["bad"] if parts else None)
    if parts:
        parts.reload(scorer)
    progress = TagProgress("tagging", reader.total, done=parts.state["rows"] if parts else 0)
    first_row, empty_chunk = 0, None
    try:
        for i, (raw, chunk) in enumerate(reader):
            if i < done:  # a resumed run: this chunk is in its part already
                first_row += len(raw)
                continue
            texts = [readable(t) for t in raw]
            cleaned = clean_all(texts)
            bad.count(texts, cleaned, first_row)
            predicted, probs, scored, new = scorer.tag(cleaned, progress)
            chunk = add_columns(chunk, reader.fmt, predicted, probs if args.probs else None,
                                scorer.tagger.labels)
            if to_stdout:
                write_part(chunk, out_fmt, sys.stdout.buffer, header=i == 0, columns=columns)
                scorer.end_chunk()
            else:
                parts.commit(i, chunk, columns, scored, new, len(raw), bad, scorer.end_chunk())
            first_row += len(raw)
            progress.chunk(len(raw), len(scored))
        if not first_row:
            empty_chunk = add_columns(_empty_like(reader), reader.fmt, [],
                                      np.zeros((0, len(scorer.names)), np.float32)
                                      if args.probs else None, scorer.tagger.labels)
            if to_stdout:
                write_part(empty_chunk, out_fmt, sys.stdout.buffer, header=True, columns=columns)
    finally:
        progress.close()
    if parts:
        parts.finish(columns, empty_chunk)
    bad.warn(args.input, reader.problems)
    if not to_stdout:
        print(f"wrote {parts.state['rows']} row(s) to {args.output}", file=sys.stderr)


def _empty_like(reader):
    """A chunk of no rows with the input's columns."""
    if reader.fmt == "parquet":
        import pyarrow as pa
        return pa.table({c: pa.array([], pa.string()) for c in reader.output_columns})
    if reader.fmt == "jsonl":
        return []
    import pandas as pd
    return pd.DataFrame({c: pd.Series([], dtype=str) for c in reader.output_columns})


def print_titles(titles: list[str], scorer: Scorer) -> None:
    cleaned = clean_all([readable(t) for t in titles])
    predicted, probs, _, _ = scorer.tag(cleaned)
    index = {name: j for j, name in enumerate(scorer.names)}
    for title, clean, areas, row in zip(titles, cleaned, predicted, probs):
        print(title)
        if not clean:
            print("  (empty title: no area)")
            continue
        for area in areas.split():
            print(f"  {area:<20} {row[index[area]]:.3f}")
        if not areas:
            j = int(np.argmax(row))
            print(f"  (no area reaches its threshold; most probable: {scorer.names[j]} "
                  f"{row[j]:.3f})")


def load(args, world: World):
    """(model directory, tagger), or PredictError naming what is wrong."""
    path = model_dir(args.model)
    check_model_files(path, args.backend)
    from .inference import load_tagger
    device = world.device if world.device is not None else args.device
    try:
        tagger = load_tagger(path, device=device, ensemble=args.ensemble == "on",
                             backend=args.backend, onnx_file=args.onnx_file,
                             precision=args.precision)
    except (OSError, ValueError) as e:
        raise PredictError(f"--model {path}: cannot load ({str(e).splitlines()[0]})")
    return path, tagger


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # our lines (warnings, progress) on stderr as they are; put back afterwards, so that a
    # caller in the same process (a test, a notebook) keeps its own logging
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = log.handlers, log.propagate, log.level
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.INFO)
    world = World()
    try:
        try:
            path, tagger = load(args, world)
        except PredictError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2  # every rank checks the same model directory and stops alike
        if world.rank != 0:
            world.serve(tagger, args)
            return 0
        thresholds = tagger.thresholds if args.threshold is None else \
            np.full(len(tagger.labels), args.threshold)
        scorer = Scorer(tagger, args, thresholds, world)
        try:
            if args.input:
                from .tabular import TableError
                try:
                    tag_file(args, scorer, path)
                except (TableError, PredictError) as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 2
            else:
                print_titles(args.titles, scorer)
        finally:
            world.stop()
        return 0
    finally:
        world.teardown()
        log.handlers, log.propagate = saved[:2]
        log.setLevel(saved[2])


if __name__ == "__main__":
    sys.exit(main())
