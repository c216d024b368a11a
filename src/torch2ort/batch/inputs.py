"""What ``torch2ort batch`` reads: INPUT as a list of sources, one per output row, in a fixed order.

- a folder: every regular file under it (recursively, hidden files skipped), sorted by relative path;
  each row's source is the path relative to the folder. For a bundle whose preprocess tokenizes, each
  file's contents (UTF-8) are the text, never its name;
- a text file (``.txt`` or any other suffix not listed below): one input per line, split on ``\n``
  (and ``\r\n``) only, so ``row`` is the line number less one whatever other breaks (``\f``, U+2028)
  a text holds. For a bundle whose preprocess tokenizes, each line is a text; otherwise each line
  is a path (relative to the text file);
- a Parquet, CSV or JSONL file (``.parquet``, ``.csv``, ``.jsonl``/``.ndjson``) with ``column``: the
  column's string values, texts or paths as above.

The sources are plain strings, so a shard's work is a small JSON-able list (it travels to Ray actors).
``load(source)`` turns one into what ``Bundle.preprocess`` takes: a text, a path, or a .npy array.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from torch2ort.errors import PredictInputError, UsageError

TABLES = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".ndjson": "json"}


@dataclass
class Inputs:
    kind: str            # "files" (paths under root), "texts", or "text-files" (files whose contents are texts)
    root: str            # absolute folder that relative paths are resolved against
    sources: list[str]   # one per row

    def fingerprint(self) -> str:
        """A digest of what would be computed: changes when an input is added, removed or renamed."""
        h = hashlib.sha256(json.dumps([self.kind, self.root]).encode())
        for s in self.sources:
            h.update(s.encode("utf-8", "surrogatepass") + b"\0")
        return h.hexdigest()

    def load(self, source: str):
        """The value ``Bundle.preprocess`` takes for one source (or PredictInputError)."""
        if self.kind == "texts":
            return source
        path = Path(self.root) / source
        if not path.is_file():  # a FIFO or device named x.npy would block or never end
            raise PredictInputError(f"{source}: no such regular file")
        if self.kind == "text-files":
            return _read_text(path, source)
        if path.suffix.lower() == ".npy":
            from torch2ort.runtime.feeds import load_npy

            return load_npy(path, source)
        return str(path)


def read_inputs(path: str | Path, column: str | None, text_model: bool) -> Inputs:
    """The sources of INPUT, or UsageError with what was wrong (missing file, unknown column, empty)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"input {path} does not exist")
    if path.is_dir():
        if column:
            raise UsageError("--column applies to Parquet, CSV and JSONL inputs, not to a folder")
        files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        inputs = Inputs("text-files" if text_model else "files", str(path.resolve()), files)
    elif path.suffix.lower() in TABLES:
        values = _column(path, column)
        inputs = Inputs("texts" if text_model else "files", str(path.resolve().parent), values)
    else:
        if column:
            raise UsageError(f"--column applies to Parquet, CSV and JSONL inputs; {path.name} is read as a text "
                             f"file with one input per line (suffixes for tables: {', '.join(TABLES)})")
        if not path.is_file():
            raise UsageError(f"input {path} is not a regular file, a folder or a table")
        try:
            lines = split_lines(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not a UTF-8 text file (one input per line)") from None
        inputs = Inputs("texts" if text_model else "files", str(path.resolve().parent), lines)
    if not inputs.sources:
        raise UsageError(f"input {path} has no inputs (an empty folder or file)")
    return inputs


MAX_TEXT_FILE = 16 * 2**20  # a text bundle truncates to max_length tokens; larger files are not texts


def split_lines(text: str) -> list[str]:
    """Lines split on ``\n`` and ``\r\n`` only (``str.splitlines`` also breaks on ``\f``, ``\v``, NEL and
    U+2028, which moves every later row off its line number); a final newline ends the last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_text(path: Path, source: str) -> str:
    size = path.stat().st_size
    if size > MAX_TEXT_FILE:
        raise PredictInputError(f"{source}: {size / 2**20:.1f} MiB is too large for a text (limit "
                                f"{MAX_TEXT_FILE >> 20} MiB)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PredictInputError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise PredictInputError(f"{source}: cannot read it ({exc.strerror or exc})") from None


def _column(path: Path, column: str | None) -> list[str]:
    """One column of a Parquet/CSV/JSONL file as strings (nulls become empty strings, which fail per row)."""
    import pyarrow as pa

    kind = TABLES[path.suffix.lower()]
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq
            table = pq.read_table(path, columns=[column] if column else None)
        elif kind == "csv":
            import pyarrow.csv as pcsv
            table = pcsv.read_csv(path)
        else:
            import pyarrow.json as pjson
            table = pjson.read_json(path)
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"cannot read {path} as {kind}: {str(exc).splitlines()[0]}") from None
    if not column:
        raise UsageError(f"{path.name} is a table: name the input column with --column "
                         f"(columns: {', '.join(table.column_names)})")
    if column not in table.column_names:
        raise UsageError(f"{path.name} has no column {column!r}; columns: {', '.join(table.column_names)}")
    col = table.column(column)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise UsageError(f"column {column!r} is {col.type}; batch reads texts or file paths (strings)")
    return ["" if v is None else v for v in col.to_pylist()]
