"""Tables read and written in chunks, for tagging files of any size: CSV (also gzipped), Parquet
and JSON lines, the format named by the extension; `-` is CSV on stdin or stdout.

A chunk is held in its format's own form, so that every input column comes back as it was read:
a pandas DataFrame of strings (CSV), a pyarrow Table (Parquet: types and nulls kept), a list of
dicts (JSON lines: key order and value types kept). `add_columns` appends the tagger's columns,
`write_part` writes one chunk as a file of the output format, and `join_parts` concatenates those
files into one (for CSV and JSON lines a plain byte copy; gzip members concatenate into one valid
gzip stream), so a run can stop after any chunk and resume from its parts.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

FORMATS = {".csv": "csv", ".csv.gz": "csv.gz", ".parquet": "parquet", ".jsonl": "jsonl",
           ".ndjson": "jsonl"}
FLOAT_DIGITS = 6  # decimals of the probability columns, in every format but Parquet (float32)


class TableError(ValueError):
    """A file that cannot be read or written as a table; the message names it."""


def table_format(path: str, flag: str) -> str:
    """The format of `path` from its extension; `-` (stdin/stdout) is CSV."""
    if path == "-":
        return "csv"
    name = Path(path).name.lower()
    for ext in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return FORMATS[ext]
    raise TableError(f"{flag} {path}: unknown extension; use one of "
                     f"{', '.join(sorted(FORMATS))} (or - for CSV on stdin/stdout)")


@dataclass
class Problems:
    """Rows the reader could not use as they are, for the run's one warning line."""
    skipped_lines: list[int] = field(default_factory=list)  # CSV lines with too many fields
    unreadable_lines: list[int] = field(default_factory=list)  # JSON lines that are not objects


def title_column(columns, path: str) -> str:
    """The `title` column's name as the file spells it (any case, spaces around)."""
    found = [c for c in columns if str(c).strip().lower() == "title"]
    if not found:
        raise TableError(f"--input {path}: no `title` column; found "
                         f"{', '.join(map(repr, columns)) or 'no columns'}")
    return found[0]


class ChunkReader:
    """Iterate over an input table `rows` rows at a time: each chunk is (its titles as read, the
    chunk in its format's form). `columns` and `total` (rows, where the format says it) are known
    once the reader is made; the title column is renamed `title`, as before streaming."""

    def __init__(self, path: str, rows: int) -> None:
        self.path, self.rows, self.fmt = path, rows, table_format(path, "--input")
        self.problems = Problems()
        self.total: int | None = None
        if path != "-" and not Path(path).is_file():
            raise TableError(f"--input {path}: no such file")
        try:
            self._chunks = getattr(self, "_read_" + self.fmt.replace(".gz", ""))()
            self._first = next(self._chunks, None)
        except TableError:
            raise
        except (OSError, ValueError, UnicodeDecodeError, EOFError) as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TableError(f"--input {path}: cannot read as {self.fmt} ({why})")
        self.columns = self.columns or []  # JSON lines whose first chunk holds no object
        self.title = title_column(self.columns, path)

    def __iter__(self) -> Iterator[tuple[list, object]]:
        chunks = self._chunks
        if self._first is not None:
            chunks = _chain_first(self._first, chunks)
            self._first = None
        rows = 0
        while True:
            try:
                chunk = next(chunks, None)
            except TableError:
                raise
            except (OSError, ValueError, UnicodeDecodeError, EOFError) as e:  # e.g. cut short
                why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise TableError(f"--input {self.path}: cannot read past row {rows} ({why})")
            if chunk is None:
                return
            rows += len(chunk)
            yield self._titles(chunk), self._renamed(chunk)

    def _titles(self, chunk) -> list:
        if self.fmt == "parquet":
            return chunk.column(self.title).to_pylist()
        if self.fmt == "jsonl":
            return [r.get(self.title) if r is not None else None for r in chunk]
        return chunk[self.title].tolist()

    def _renamed(self, chunk):
        if self.title == "title":
            return chunk
        if self.fmt == "parquet":
            return chunk.rename_columns(["title" if c == self.title else c
                                         for c in chunk.column_names])
        if self.fmt == "jsonl":
            return [{("title" if k == self.title else k): v for k, v in r.items()}
                    if r is not None else None for r in chunk]
        return chunk.rename(columns={self.title: "title"})

    @property
    def output_columns(self) -> list[str]:
        return ["title" if c == self.title else c for c in self.columns]

    def _read_csv(self):
        import pandas as pd
        source = sys.stdin.buffer if self.path == "-" else self.path
        try:
            reader = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                                 encoding_errors="replace", chunksize=self.rows,
                                 on_bad_lines="warn", compression="infer")
        except pd.errors.EmptyDataError:
            raise TableError(f"--input {self.path}: the file is empty")
        self.columns = None
        while True:
            # a line with more fields than the header is left out by pandas with a warning,
            # which is counted here for the run's own warning line
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                try:
                    chunk = next(reader)
                except StopIteration:
                    if self.columns is None and self.path != "-":  # a header and no rows
                        self.columns = list(pd.read_csv(self.path, nrows=0, dtype=str,
                                                        encoding="utf-8-sig").columns)
                    return
                except pd.errors.ParserError as e:
                    raise TableError(f"--input {self.path}: cannot read as CSV "
                                     f"({str(e).strip()})")
            for w in caught:
                self.problems.skipped_lines += map(int, re.findall(r"Skipping line (\d+)",
                                                                   str(w.message)))
            if self.columns is None:
                self.columns = list(chunk.columns)
            yield chunk

    def _read_parquet(self):
        import pyarrow.parquet as pq
        file = pq.ParquetFile(self.path)
        self.columns, self.total = list(file.schema_arrow.names), file.metadata.num_rows
        import pyarrow as pa
        for batch in file.iter_batches(batch_size=self.rows):
            yield pa.Table.from_batches([batch])

    def _read_jsonl(self):
        self.columns = None
        with open(self.path, encoding="utf-8-sig", errors="replace") as f:
            chunk, line_no = [], 0
            for line in f:
                line_no += 1
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if not isinstance(record, dict):
                    self.problems.unreadable_lines.append(line_no)
                    record = None
                elif self.columns is None:
                    self.columns = list(record)
                chunk.append(record)
                if len(chunk) == self.rows:
                    yield chunk
                    chunk = []
            if self.columns is None:
                raise TableError(f"--input {self.path}: no JSON object on any line")
            if chunk:
                yield chunk


def _chain_first(first, rest):
    yield first
    yield from rest


def add_columns(chunk, fmt: str, predicted: list[str], probs: np.ndarray | None,
                labels: list[str]):
    """The chunk with `predicted` and, given probabilities (NaN: none for that row), one
    `p_<label>` column per label. Input columns of the same names are replaced."""
    new = {"predicted": predicted}
    if probs is not None:
        new.update((f"p_{x}", probs[:, j]) for j, x in enumerate(labels))
    if fmt == "parquet":
        import pyarrow as pa
        for name, values in new.items():
            if name in chunk.column_names:
                chunk = chunk.drop_columns([name])
            array = pa.array(values, pa.string()) if name == "predicted" else \
                pa.array(values, pa.float32(), mask=np.isnan(values))
            chunk = chunk.append_column(name, array)
        return chunk
    if fmt == "jsonl":
        rounded = None if probs is None else np.round(probs.astype(np.float64), FLOAT_DIGITS)
        out = []
        for i, record in enumerate(chunk):
            record = dict(record) if record is not None else {}
            record["predicted"] = predicted[i]
            if rounded is not None:
                record.update((f"p_{x}", None if np.isnan(p) else float(p))
                              for x, p in zip(labels, rounded[i]))
            out.append(record)
        return out
    chunk = chunk.copy()
    for name, values in new.items():
        chunk[name] = values
    return chunk


def _as_frame(chunk, columns: list[str]):
    import pandas as pd
    if isinstance(chunk, list):
        new = [c for c in (chunk[0] if chunk else {}) if c not in columns]
        return pd.DataFrame(chunk, columns=columns + new)
    if not isinstance(chunk, pd.DataFrame):
        return chunk.to_pandas()
    return chunk


def write_part(chunk, fmt: str, out, header: bool, columns: list[str]) -> None:
    """One chunk to `out` (a path, or a binary stream such as stdout) in format `fmt`; `header`:
    a CSV part that starts the file."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        if not isinstance(chunk, pa.Table):
            chunk = pa.Table.from_pandas(_as_frame(chunk, columns), preserve_index=False) \
                if not isinstance(chunk, list) else pa.Table.from_pylist(chunk)
        pq.write_table(chunk, out)
        return
    if fmt == "jsonl":
        records = chunk if isinstance(chunk, list) else _records(chunk)
        data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                       for r in records).encode()
    else:
        text = _as_frame(chunk, columns).to_csv(None, index=False, header=header,
                                                float_format=f"%.{FLOAT_DIGITS}f")
        data = text.encode()
        if fmt == "csv.gz":  # mtime 0: the same rows give the same bytes
            data = gzip.compress(data, compresslevel=6, mtime=0)
    if isinstance(out, (str, Path)):
        Path(out).write_bytes(data)
    else:
        out.write(data)
        out.flush()


def _records(chunk) -> list[dict]:
    import pandas as pd
    if isinstance(chunk, pd.DataFrame):
        frame = chunk.astype(object).where(chunk.notna(), None)
        return frame.to_dict("records")
    rows = chunk.to_pylist()
    for r in rows:  # float32 -> Python float with FLOAT_DIGITS, like the other formats
        for k, v in r.items():
            if k.startswith("p_") and isinstance(v, float):
                r[k] = round(v, FLOAT_DIGITS)
    return rows


def join_parts(parts: list[Path], fmt: str, out: Path) -> None:
    """The parts, in order, as one file at `out`."""
    if fmt != "parquet":
        with open(out, "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        return
    import pyarrow.parquet as pq
    writer = None
    try:
        for part in parts:
            table = pq.read_table(part)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
