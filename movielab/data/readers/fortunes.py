"""Read a Unix fortune file: entries separated by lines holding a single `%`, one record each."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from movielab.data.readers.base import FileReader
from movielab.data.readers.lines import iter_text_lines
from movielab.data.records import Record

SEPARATOR = "%"
ATTRIBUTION_MARKS = ("--", "\u2014")  # `-- Author` (and an em dash) on a line of its own


@dataclass(frozen=True)
class FortunesReader(FileReader):
    """An entry may span lines and end with `-- Author` lines.

    strip_attribution: drop the trailing attribution lines (the sentence is what a model learns);
    join_lines: join an entry's lines with spaces into one sentence, instead of keeping them as
    lines (a fortune wrapped at 72 columns is still one sentence).
    Input-file policy (NUL bytes, invalid UTF-8, control characters, such as the backspaces of old
    fortune files): readers/lines.py.
    """

    strip_attribution: bool = True
    join_lines: bool = True

    def read(self, path: str | Path, required: Iterable[str] = ()) -> Iterator[Record]:
        lines: list[str] = []
        start = 1
        for line_number, raw in enumerate(iter_text_lines(path), start=1):
            line = raw.rstrip("\r\n")
            if line.strip() == SEPARATOR:
                yield self._record(lines, start)
                lines, start = [], line_number + 1
            else:
                lines.append(line)
        if any(line.strip() for line in lines):  # a file may or may not end with a `%` line
            yield self._record(lines, start)

    def _record(self, lines: list[str], start: int) -> Record:
        """An entry with no sentence (empty, or only an attribution) becomes a record without text,
        which preparation counts and reports as skipped."""
        kept = [line for line in lines if line.strip()]
        if self.strip_attribution:
            while kept and kept[-1].strip().startswith(ATTRIBUTION_MARKS):
                kept.pop()
        if not kept:
            return Record(text=None, line=start)
        first = next(i for i, line in enumerate(lines) if line.strip())
        if self.join_lines:
            text = " ".join(line.strip() for line in kept)
        else:
            text = "\n".join(line.rstrip() for line in kept)
        return Record(text=text, line=start + first)
