"""Read any CSV/TSV by column name into Records (Letterboxd, IMDb exports, a user's own file)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from movielab.data.readers.base import FileReader
from movielab.data.readers.lines import iter_text_lines
from movielab.data.records import RECORD_FIELDS, Record
from movielab.errors import MovielabError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class MissingColumns(MovielabError):
    """A column the reader is set to read is not in the file's header; the header is kept so the
    train command can name the data= options whose columns it has."""

    def __init__(self, message: str, header: Sequence[str]) -> None:
        super().__init__(message)
        self.header = list(header)


@dataclass(frozen=True)
class CsvReader(FileReader):
    """Maps columns to Record fields by name, so extra or reordered columns do not matter.

    `columns` maps a Record field (title, description, tagline, text, year, rating, genres) to the
    file's column name, or to None to leave the field unread. Every mapped column must exist in
    the file (a mistyped rating column would otherwise train an unconditioned model without a
    word), except those of the fields listed in `optional`, which may be absent.
    Input-file policy (NUL bytes, invalid UTF-8, control characters): see readers/lines.py.
    """

    columns: Mapping[str, str | None] = field(default_factory=dict)
    delimiter: str = ","
    genre_separator: str = "|"
    null_values: tuple[str, ...] = ("", "\\N")
    optional: Sequence[str] = ()

    def __post_init__(self) -> None:
        if isinstance(self.optional, str) or not all(isinstance(name, str) for name in self.optional):
            raise MovielabError(
                f"data.reader.optional={self.optional!r} must be a list of record fields, e.g. [year]"
            )
        for option, names in (("columns", self.columns), ("optional", self.optional)):
            unknown = sorted(set(names) - set(RECORD_FIELDS))
            if unknown:
                raise MovielabError(
                    f"data.reader.{option}: unknown record field(s) {unknown}; "
                    f"known: {', '.join(RECORD_FIELDS)}"
                )
        if not isinstance(self.delimiter, str) or len(self.delimiter) != 1:
            raise MovielabError(
                f"data.reader.delimiter={self.delimiter!r} must be one character, e.g. ',' or '\\t'"
            )

    def read(self, path: str | Path, required: Iterable[str] = ()) -> Iterator[Record]:
        rows = csv.reader(iter_text_lines(path), delimiter=self.delimiter)
        try:
            header = [name.strip() for name in next(rows, [])]
            positions = self._column_positions(path, header, set(required))
            start_line = rows.line_num + 1
            for row in rows:
                if any(cell.strip() for cell in row):
                    yield self._record(path, row, positions, start_line)
                start_line = rows.line_num + 1
        except csv.Error as exc:
            raise MovielabError(f"{path}:{rows.line_num}: not readable as CSV ({exc})") from None

    def _column_positions(self, path: str | Path, header: list[str], required: set[str]) -> dict[str, int]:
        positions = {}
        for field_name, column in self.columns.items():
            if column is None:
                continue
            if column in header:
                positions[field_name] = header.index(column)
            elif field_name in required:
                raise MissingColumns(
                    f"{path}: required column '{column}' (for {field_name}) is missing; columns found: "
                    f"{_listed(header)}; map yours with data.reader.columns.{field_name}=<column>",
                    header,
                )
            elif field_name not in self.optional:
                raise MissingColumns(
                    f"{path}: data.reader.columns.{field_name}='{column}' names no column of the file; "
                    f"columns found: {_listed(header)}; map it to one of them, or set "
                    f"data.reader.columns.{field_name}=null to read no {field_name}",
                    header,
                )
        return positions

    def _record(self, path: str | Path, row: list[str], positions: dict[str, int], line: int) -> Record:
        values: dict[str, object] = {"line": line}
        for field_name, position in positions.items():
            cell = row[position].strip() if position < len(row) else ""
            if cell in self.null_values:
                continue
            values[field_name] = self._convert(path, line, field_name, cell)
        return Record(**values)

    def _convert(self, path: str | Path, line: int, field_name: str, cell: str) -> object:
        if field_name == "rating":
            try:
                return float(cell)
            except ValueError:
                raise MovielabError(f"{path}:{line}: rating '{cell}' is not a number") from None
        if field_name == "year":
            digits = cell[:4]
            return int(digits) if digits.isdigit() else None
        if field_name == "genres":
            return tuple(g.strip() for g in cell.split(self.genre_separator) if g.strip())
        return cell.replace("\r\n", "\n")


def _listed(header: list[str], most: int = 20, width: int = 40) -> str:
    """The header's columns for an error line: a file that is not CSV (its first line, prose, read
    as column names) is said to be so, not printed whole."""
    if not header:
        return "none"
    if any(len(name) > 2 * width or len(name.split()) > 4 for name in header):  # a sentence, not a name
        first = ", ".join(header)[:width]
        return f"none that look like a CSV header (its first line begins '{first}...'; plain text: data=text)"
    shown = [name if len(name) <= width else name[: width - 3] + "..." for name in header[:most]]
    more = f" and {len(header) - most} more" if len(header) > most else ""
    return ", ".join(shown) + more
