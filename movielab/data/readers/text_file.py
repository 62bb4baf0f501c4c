"""Read a plain-text file as records: one per paragraph (blank-line separated) or one per line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from movielab.data.readers.lines import iter_text_lines
from movielab.data.records import Record
from movielab.errors import MovielabError

UNITS = ("paragraph", "line")


@dataclass(frozen=True)
class TextFileReader:
    """Records are the unit the train/val split works on, so a paragraph never lands in both splits."""

    unit: str = "paragraph"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise MovielabError(f"data.reader.unit='{self.unit}' is not one of {', '.join(UNITS)}")

    def read(self, path: str | Path, required: Iterable[str] = ()) -> Iterator[Record]:
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
