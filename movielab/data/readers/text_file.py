"""Read a plain-text file as records: one per paragraph (blank-line separated) or one per line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from movielab.data.readers.base import FileReader
from movielab.data.readers.lines import iter_text_lines
from movielab.data.records import Record
from movielab.errors import MovielabError

UNITS = ("paragraph", "line")


@dataclass(frozen=True)
class TextFileReader(FileReader):
    """Records are the unit the train/val split works on, so a paragraph never lands in both splits.

    `units_per_record` > 1 groups that many consecutive paragraphs (or lines) into one record, kept
    in their original layout: a script's validation split is then runs of consecutive utterances,
    so a window reads a conversation rather than utterances drawn from all over the file.
    Input-file policy (NUL bytes, invalid UTF-8, control characters): readers/lines.py.
    """

    unit: str = "paragraph"
    units_per_record: int = 1

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise MovielabError(f"data.reader.unit='{self.unit}' is not one of {', '.join(UNITS)}")
        if self.units_per_record < 1:
            raise MovielabError(f"data.reader.units_per_record={self.units_per_record} must be at least 1")

    def read(self, path: str | Path, required: Iterable[str] = ()) -> Iterator[Record]:
        units = self._units(path)
        if self.units_per_record == 1:
            yield from units
            return
        separator = "\n\n" if self.unit == "paragraph" else "\n"
        group: list[Record] = []
        for record in units:
            group.append(record)
            if len(group) == self.units_per_record:
                yield Record(text=separator.join(r.text for r in group), line=group[0].line)
                group = []
        if group:
            yield Record(text=separator.join(r.text for r in group), line=group[0].line)

    def _units(self, path: str | Path) -> Iterator[Record]:
        pending: list[str] = []
        start = 0
        for line_number, line in enumerate(iter_text_lines(path), start=1):
            stripped = line.rstrip("\r\n")
            if self.unit == "line":
                if stripped.strip():
                    yield Record(text=stripped, line=line_number)
                continue
            if stripped.strip():
                if not pending:
                    start = line_number
                pending.append(stripped)
            elif pending:
                yield Record(text="\n".join(pending), line=start)
                pending = []
        if pending:
            yield Record(text="\n".join(pending), line=start)
