"""The official IMDb TSVs: title.basics.tsv joined with title.ratings.tsv on tconst, streamed.

The real files have ~10M basics rows and ~1.4M ratings: the ratings are held as two compact arrays
(16 bytes a title) and the basics file is read line by line, so the join needs modest memory.
The files are tab-separated without quoting (titles may contain quotes) and write null as \\N.
Input-file policy (NUL bytes, invalid UTF-8, control characters): readers/lines.py.
"""

from __future__ import annotations

import logging
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movielab.data.readers.base import FileReader
from movielab.data.readers.lines import iter_text_lines
from movielab.data.records import Record
from movielab.errors import MovielabError

log = logging.getLogger(__name__)

NULL = "\\N"
BASICS_COLUMNS = ("tconst", "titleType", "primaryTitle", "originalTitle", "startYear", "genres")
RATINGS_COLUMNS = ("tconst", "averageRating", "numVotes")


class _Table:
    """A TSV whose header names its columns; data lines are checked for the header's number of tabs
    (C-speed), and `rows` can drop lines by one column's value before splitting them whole."""

    def __init__(self, path: Path, expected: Sequence[str]) -> None:
        self.path, self.lines = path, iter_text_lines(path)
        header = next(self.lines, "").rstrip("\r\n").split("\t")
        missing = [name for name in expected if name not in header]
        if missing:
            raise MovielabError(
                f"{path}: column(s) {', '.join(missing)} missing; an IMDb TSV has a header with "
                f"{', '.join(expected)} (found: {', '.join(header) or 'nothing'})"
            )
        self.columns = len(header)
        self.at = {name: header.index(name) for name in expected}
        self.filtered = 0

    def rows(
        self, column: str | None = None, kept: frozenset[str] = frozenset()
    ) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of each data row; with `column`, only rows whose value there is `kept`
        (the others are counted in `filtered`)."""
        tabs, position = self.columns - 1, self.at[column] if column else -1
        for line_number, line in enumerate(self.lines, start=2):
            line = line.rstrip("\r\n")
            if line.count("\t") != tabs:
                if not line:
                    continue
                raise MovielabError(
                    f"{self.path}:{line_number}: {line.count(chr(9)) + 1} tab-separated fields, "
                    f"the header has {self.columns}"
                )
            if position >= 0 and line.split("\t", position + 1)[position] not in kept:
                self.filtered += 1
                continue
            yield line_number, line.split("\t")


def _title_number(path: Path, line_number: int, tconst: str) -> int:
    if not (tconst.startswith("tt") and tconst[2:].isdigit()):
        raise MovielabError(f"{path}:{line_number}: tconst '{tconst}' is not an IMDb id like tt0000001")
    return int(tconst[2:])


@dataclass(frozen=True)
class ImdbTsvReader(FileReader):
    """`data.path` is title.basics.tsv; `ratings` defaults to title.ratings.tsv beside it.

    Keeps titles whose titleType is in `title_types` and, with `require_rating`, that have a rating
    with at least `min_votes` votes (an inner join). `title_column`: primaryTitle or originalTitle.
    """

    ratings: str | None = None
    title_types: Sequence[str] = ("movie",)
    min_votes: int = 0
    title_column: str = "primaryTitle"
    require_rating: bool = True

    def __post_init__(self) -> None:
        if self.title_column not in ("primaryTitle", "originalTitle"):
            raise MovielabError(
                f"data.reader.title_column='{self.title_column}' must be primaryTitle or originalTitle"
            )

    def ratings_path(self, basics: str | Path) -> Path:
        return Path(self.ratings).expanduser() if self.ratings else Path(basics).parent / "title.ratings.tsv"

    def companion_files(self, path: str | Path) -> list[Path]:
        """Files read besides data.path: their content is part of the token-cache key."""
        ratings = self.ratings_path(path)
        if not ratings.is_file():
            raise MovielabError(
                f"IMDb ratings file not found: {ratings} (title.ratings.tsv; set data.reader.ratings=PATH)"
            )
        return [ratings]

    def load_ratings(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Sorted title numbers (tt0000001 -> 1) and their average ratings, votes >= min_votes."""
        numbers, ratings = array("q"), array("d")
        table = _Table(path, RATINGS_COLUMNS)
        at = table.at
        for line_number, fields in table.rows():
            votes, rating = fields[at["numVotes"]], fields[at["averageRating"]]
            if NULL in (votes, rating):
                continue
            if not votes.isdigit():
                raise MovielabError(f"{path}:{line_number}: numVotes '{votes}' is not a whole number")
            if int(votes) < self.min_votes:
                continue
            try:
                value = float(rating)
            except ValueError:
                raise MovielabError(
                    f"{path}:{line_number}: averageRating '{rating}' is not a number"
                ) from None
            numbers.append(_title_number(path, line_number, fields[at["tconst"]]))
            ratings.append(value)
        order = np.argsort(np.frombuffer(numbers, dtype=np.int64), kind="stable")
        return np.frombuffer(numbers, dtype=np.int64)[order], np.frombuffer(ratings, dtype=np.float64)[order]

    def read(self, path: str | Path, required: Iterable[str] = ()) -> Iterator[Record]:
        path = Path(path)
        rated, ratings = self.load_ratings(self.companion_files(path)[0])
        skipped: Counter = Counter()
        table = _Table(path, BASICS_COLUMNS)
        at = table.at
        for line_number, fields in table.rows("titleType", frozenset(self.title_types)):
            number = _title_number(path, line_number, fields[at["tconst"]])
            index = int(np.searchsorted(rated, number))
            rating = float(ratings[index]) if index < len(rated) and rated[index] == number else None
            if rating is None and self.require_rating:
                skipped[
                    f"no rating with at least data.reader.min_votes={self.min_votes} votes"
                    if self.min_votes
                    else "no rating; data.reader.require_rating=false keeps them"
                ] += 1
                continue
            title, year, genres = fields[at[self.title_column]], fields[at["startYear"]], fields[at["genres"]]
            yield Record(
                title=None if title == NULL else title,
                year=int(year) if year.isdigit() else None,
                rating=rating,
                genres=() if genres == NULL else tuple(g for g in genres.split(",") if g),
                line=line_number,
            )
        skipped[f"titleType not in data.reader.title_types={list(self.title_types)}"] = table.filtered
        for reason, count in skipped.items():
            if count:
                log.info("%s: skipped %d titles (%s)", path.name, count, reason)
