"""Read a FOCUS file into batches of text columns, streaming, whatever its format.

CSV (optionally gzip-compressed) is read by pyarrow's multi-threaded streaming reader with every
column as text, so no value is ever guessed into a float. Parquet columns of other types are
turned into text: decimals and integers exactly, timestamps as ISO text, maps and structs as JSON.
Empty fields and the text null in any letter case (NULL, null, Null: the FOCUS specification's
own example files write `null`) are null.

What pyarrow can't read is refused naming the line: a byte that isn't UTF-8 (Latin-1 exports), a
row too long for the reader (over BLOCK_SIZE, usually a quote left open), a quote never closed.
Finding the line costs a second pass over the file, made only once the file is being refused.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from .errors import FileRefused

# "" and every letter case of "null" (16 spellings): pyarrow matches null texts exactly.
NULL_TEXTS = [""] + ["".join(c) for c in itertools.product(*zip("null", "NULL", strict=True))]
BLOCK_SIZE = 8 << 20  # bytes of CSV per batch: ~15,000 rows of a ~550-byte FOCUS export
# Blocks the CSV reader may read past the batches already handed out. Arrow's own read-ahead is
# 32 blocks (256 MB held for the whole import); a few keep its threads busy.
READ_AHEAD_BLOCKS = 3


@dataclass
class Batch:
    arrays: list[pa.Array]  # one string array per column, in file order
    first_line: int  # line number of the batch's first row (the header is line 1)
    # Each row's line number, when rows were skipped before or inside the batch; else None and
    # the rows are numbered on from first_line.
    lines: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.arrays[0]) if self.arrays else 0

    def line(self, offset: int) -> int:
        if self.lines is not None:
            return int(self.lines[offset])
        return self.first_line + offset

    def line_numbers(self) -> np.ndarray:
        if self.lines is not None:
            return self.lines
        return np.arange(self.first_line, self.first_line + self.count, dtype=np.int64)


class RereadForLines(Exception):
    """The multi-threaded reader skipped a malformed row without knowing its line, so the rows
    after it can't be numbered. The caller reads the file again with `use_threads=False`."""


def _numbered(first: int, count: int, skipped: list[int]) -> np.ndarray:
    """The first `count` line numbers from `first` on that aren't in `skipped` (ascending)."""
    lines = np.arange(first, first + count, dtype=np.int64)
    for number in skipped:
        if number >= first:
            lines[lines >= number] += 1
    return lines

    def column(self, index: int) -> list[str | None]:
        return self.arrays[index].to_pylist()


def file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".csv.gz") or name.endswith(".gz"):
        return "csv.gz"
    return "csv"


def read_headers(path: Path) -> list[str]:
    fmt = file_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowException, OSError) as exc:
            raise FileRefused(f"not a readable Parquet file ({exc})") from None
    opener = gzip.open if fmt == "csv.gz" else open
    try:
        with opener(path, "rb") as raw:
            head = raw.read(1 << 20)
    except (OSError, EOFError) as exc:
        raise FileRefused(f"cannot read the file ({exc})") from None
    if not head.strip():
        raise FileRefused("the file is empty")
    if b"\x00" in head:
        raise FileRefused("not a CSV file (it contains binary data)")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the read boundary
            raise FileRefused(_not_utf8(path)) from None
        text = head[: exc.start].decode("utf-8-sig")
    first_line = next(csv.reader(io.StringIO(text)), [])
    if len(first_line) < 2:
        raise FileRefused("not a FOCUS CSV file (the first line is not a header of columns)")
    return first_line


def read_batches(
    path: Path, headers: list[str], problems: list[str], use_threads: bool = True
) -> Iterator[Batch]:
    """Yield the file's rows in batches. Rows that don't parse are added to `problems`.

    With `use_threads`, a malformed CSV row raises RereadForLines instead of numbering the rows
    after it wrong; single-threaded, every row keeps its line number."""
    if file_format(path) == "parquet":
        yield from _read_parquet(path)
    else:
        yield from _read_csv(path, headers, problems, use_threads)


def _read_csv(
    path: Path, headers: list[str], problems: list[str], use_threads: bool = True
) -> Iterator[Batch]:
    names = [f"c{i}" for i in range(len(headers))]
    unnumbered = []
    skipped: list[int] = []  # line numbers of the malformed rows, single-threaded

    def on_invalid_row(row):
        if row.number is None:  # the multi-threaded reader doesn't know line numbers
            unnumbered.append(row)
        else:
            skipped.append(row.number)
            if row.text.count('"') % 2:
                # An open quote swallows the newlines after it: the "row" runs to the end.
                problems.append(
                    f"line {row.number}: unterminated quote starting on line {row.number} "
                    f"(a value opens a quote that is never closed)"
                )
            else:
                problems.append(
                    f"line {row.number}: expected {row.expected_columns} columns, "
                    f"found {row.actual_columns}"
                )
        return "skip"

    read_options = pa_csv.ReadOptions(
        column_names=names, skip_rows=1, block_size=BLOCK_SIZE, use_threads=use_threads
    )
    parse_options = pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row)
    convert_options = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        null_values=NULL_TEXTS,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    compression = "gzip" if file_format(path) == "csv.gz" else None
    line = 2
    paced = None
    try:
        paced = _Paced(pa.input_stream(str(path), compression=compression))
        reader = pa_csv.open_csv(
            pa.PythonFile(paced, mode="r"),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
        for record_batch in reader:
            if unnumbered:
                raise RereadForLines()
            if record_batch.num_rows == 0:
                continue
            lines = _numbered(line, record_batch.num_rows, skipped) if skipped else None
            yield Batch(arrays=list(record_batch.columns), first_line=line, lines=lines)
            paced.handed_out()
            line = (int(lines[-1]) if lines is not None else line + record_batch.num_rows - 1) + 1
        if unnumbered:
            raise RereadForLines()
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "UTF8" in message or "utf8" in message.lower():
            raise FileRefused(_not_utf8(path)) from None
        if "Empty CSV file" in message:
            return
        if "straddl" in message:
            raise FileRefused(_too_long(path, line)) from None
        raise FileRefused(f"not a readable CSV file near line {line}: {message}") from None
    except (OSError, EOFError) as exc:
        raise FileRefused(f"cannot read the file ({exc})") from None
    finally:
        if paced is not None:
            paced.stop()


class _Paced(io.RawIOBase):
    """A stream the CSV reader's I/O thread can read only READ_AHEAD_BLOCKS blocks past the
    batches handed out, so memory holds a few blocks, not Arrow's 32 (it reads the stream as
    fast as it can). Stopped (the import ended or failed), it reads as empty."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream
        self._read = 0
        self._handed_out = 0
        self._stopped = False
        self._turn = threading.Condition()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        with self._turn:
            while (
                not self._stopped
                and self._read >= (self._handed_out + READ_AHEAD_BLOCKS) * BLOCK_SIZE
            ):
                self._turn.wait()
            if self._stopped:
                return b""
        data = self._stream.read(size)
        self._read += len(data)
        return data

    def handed_out(self) -> None:
        with self._turn:
            self._handed_out += 1
            self._turn.notify_all()

    def stop(self) -> None:
        with self._turn:
            self._stopped = True
            self._turn.notify_all()


def _open_binary(path: Path):
    return gzip.open(path, "rb") if file_format(path) == "csv.gz" else open(path, "rb")


def _not_utf8(path: Path) -> str:
    """Where the first byte that isn't UTF-8 is: "not UTF-8 text: line 3, byte 7 of the line"."""
    line, line_start, offset, pending = 1, 0, 0, b""
    try:
        with _open_binary(path) as raw:
            while chunk := raw.read(1 << 20):
                data = pending + chunk  # a character cut at the read boundary is completed
                try:
                    data.decode("utf-8")
                    pending = b""
                except UnicodeDecodeError as exc:
                    if exc.end == len(data) and len(data) - exc.start < 4:
                        pending, data = data[exc.start :], data[: exc.start]
                    else:
                        before = data[: exc.start]
                        if b"\n" in before:
                            line += before.count(b"\n")
                            line_start = offset + before.rfind(b"\n") + 1
                        column = offset + exc.start - line_start + 1
                        return (
                            f"not UTF-8 text: line {line}, byte {column} of the line "
                            f"(0x{data[exc.start]:02x}); save the file as UTF-8"
                        )
                if b"\n" in data:
                    line += data.count(b"\n")
                    line_start = offset + data.rfind(b"\n") + 1
                offset += len(data)
    except (OSError, EOFError):
        pass
    return "not UTF-8 text; save the file as UTF-8"


def _too_long(path: Path, after_line: int) -> str:
    """The line of the first row over BLOCK_SIZE: the csv module counts lines inside quotes."""
    csv.field_size_limit(BLOCK_SIZE)
    try:
        with _open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            reader = csv.reader(text)
            while True:
                start = reader.line_num + 1
                try:
                    if next(reader, None) is None:
                        break
                except csv.Error:
                    return (
                        f"line {start}: a row over {BLOCK_SIZE >> 20} MB, too long to be a "
                        f"billing row (is a quote opened on line {start} and never closed?)"
                    )
    except (OSError, EOFError):
        pass
    finally:
        csv.field_size_limit(131072)
    return (
        f"a row at or after line {after_line} is too long to read "
        f"(over {BLOCK_SIZE >> 20} MB; is a quote left open?)"
    )


def _parquet_text(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_string(kind):
        return array
    if pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return pc.cast(array, pa.string())
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return pa.array(
            [None if v is None else v.isoformat() for v in array.to_pylist()], pa.string()
        )
    if pa.types.is_map(kind):
        return pa.array(
            [None if v is None else json.dumps(dict(v)) for v in array.to_pylist()], pa.string()
        )
    if pa.types.is_struct(kind) or pa.types.is_list(kind):
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in array.to_pylist()],
            pa.string(),
        )
    # Integers and decimals cast exactly; floating point casts to its shortest round-trip text.
    return pc.cast(array, pa.string())


def _read_parquet(path: Path) -> Iterator[Batch]:
    import pyarrow.parquet as pq

    line = 2
    try:
        parquet = pq.ParquetFile(path)
        for record_batch in parquet.iter_batches(batch_size=65536):
            if record_batch.num_rows == 0:
                continue
            arrays = []
            for array in record_batch.columns:
                text = _parquet_text(array)
                # Parquet has real nulls; the text null (any case) and "" mean null here too.
                is_blank = pc.or_kleene(pc.equal(text, ""), pc.equal(pc.utf8_lower(text), "null"))
                arrays.append(pc.if_else(is_blank, pa.scalar(None, pa.string()), text))
            yield Batch(arrays=arrays, first_line=line)
            line += record_batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise FileRefused(f"not a readable Parquet file ({exc})") from None
