"""Reading the CSV files people import (recipients, departments): UTF-8 text (a BOM is fine; a GBK export is
named as such), a header naming known columns, and the rows with the line each starts on.

Each import names its columns and the error type its callers expect (`error`, `CsvError` by default), raised
with a one-line message.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

MAX_CSV_BYTES = 64 * 1024 * 1024  # ~500,000 recipients; a bigger file is split by whoever exports it


class CsvError(Exception):
    """A CSV file that cannot be used as it is; one line naming the file."""


def read_csv_text(path: Path, error: type[Exception] = CsvError) -> str:
    """The text of a CSV file in UTF-8 (a BOM is fine), else `error` in one line; a GBK file is named as
    such so whoever exported it knows what to change."""
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise error(f"{path}: {size} bytes, more than the {MAX_CSV_BYTES} an import takes")
        data = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: {e.strerror or e}") from e
    return decode_csv(data, str(path), error)


def decode_csv(data: bytes, name: str = "CSV", error: type[Exception] = CsvError) -> str:
    """Bytes of a CSV file as text: UTF-8 with or without a BOM; `error` for anything else."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        try:
            data.decode("gb18030")
        except UnicodeDecodeError:
            raise error(f"{name}: not UTF-8 text (bad byte at offset {e.start})") from None
        raise error(
            f"{name}: the file is GBK (GB 18030) encoded; save it as UTF-8 (CSV UTF-8 in Excel) and import again"
        ) from None


def parse_rows(
    text: str,
    name: str,
    *,
    kind: str,
    columns: Sequence[str],
    required: Sequence[str],
    comments: bool = False,
    error: type[Exception] = CsvError,
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of a `kind` ("recipients") CSV, each row with its first line number; blank
    rows are skipped, and with `comments` rows whose first field starts with ``#``.

    `error` when the text is empty, lacks a required column, names an unknown or repeated one, or is not
    CSV at all. A row with more fields than the header comes back with the extra fields under ``""``, to be
    rejected.
    """
    if "\0" in text:
        raise error(f"{name}: not CSV text (it holds NUL characters, like a binary file)")
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    line = 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(field.strip() for field in record):
                continue
            if comments and record[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = _check_header(
                    [f.strip().lower() for f in record], name, kind, columns, required, error
                )
                continue
            row = dict(zip(header, record, strict=False))
            if len(record) > len(header):
                row[""] = ",".join(record[len(header) :])
            rows.append((start, row))
    except csv.Error as e:
        raise error(f"{name}: not CSV at line {reader.line_num} ({e})") from None
    if header is None:
        raise error(f"{name}: empty; the first line names the columns ({', '.join(columns)})")
    return header, rows


def _check_header(
    header: list[str],
    name: str,
    kind: str,
    columns: Sequence[str],
    required: Sequence[str],
    error: type[Exception],
) -> list[str]:
    unknown = [c for c in header if c not in columns]
    missing = [c for c in required if c not in header]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(repr(c[:30]) for c in unknown)}")
        raise error(f"{name}: not a {kind} CSV: {'; '.join(parts)} (columns: {', '.join(columns)})")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise error(f"{name}: column(s) {', '.join(repeated)} given twice")
    return header
