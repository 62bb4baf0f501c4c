"""The CMU Movie Summary Corpus: plot_summaries.txt joined with movie.metadata.tsv by Wikipedia id.

plot_summaries.txt holds one `wikipedia_id<TAB>summary` per line. movie.metadata.tsv has no header
and nine tab-separated columns: wikipedia id, freebase id, name, release date, revenue, runtime,
languages, countries, genres; the last three are JSON maps {freebase id: name}. Neither file is
quoted, so they are split on tabs rather than read with the csv module.
Input-file policy (NUL bytes, invalid UTF-8, control characters): readers/lines.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from movielab.data.readers.base import FileReader
from movielab.data.readers.lines import iter_text_lines
from movielab.data.records import Record
from movielab.errors import MovielabError

log = logging.getLogger(__name__)

METADATA_COLUMNS = 9
_ID, _NAME, _DATE, _GENRES = 0, 2, 3, 8


@dataclass(frozen=True)
class MovieMetadata:
    title: str | None
    year: int | None
    genres: tuple[str, ...]


@dataclass(frozen=True)
class CmuSummaryReader(FileReader):
    """Reads plot_summaries.txt (the data path); `metadata` defaults to movie.metadata.tsv beside it
    (with the same prefix: cmu_plot_summaries.txt pairs with cmu_movie.metadata.tsv).

    A summary whose id has no metadata row still becomes a record (no title, year or genres), so a
    template that needs only the plot keeps it and one that needs the title drops and counts it.
    """

    metadata: str | None = None

    def read(self, path: str | Path, required: Iterable[str] = ()) -> Iterator[Record]:
        path = Path(path)
        metadata_path = Path(self.metadata).expanduser() if self.metadata else default_metadata_path(path)
        if not metadata_path.is_file():
            raise MovielabError(
                f"{path}: the CMU metadata file {metadata_path} is missing; put movie.metadata.tsv beside "
                "plot_summaries.txt or set data.reader.metadata=/path/to/movie.metadata.tsv"
            )
        movies = read_movie_metadata(metadata_path)
        unmatched = 0
        for line_number, line in enumerate(iter_text_lines(path), start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            wiki_id, tab, summary = line.partition("\t")
            if not tab:
                raise MovielabError(
                    f"{path}:{line_number}: expected '<wikipedia id><TAB><summary>', found no tab"
                )
            movie = movies.get(wiki_id.strip())
            if movie is None:
                unmatched += 1
                movie = MovieMetadata(None, None, ())
            yield Record(
                title=movie.title,
                description=summary.strip() or None,
                year=movie.year,
                genres=movie.genres,
                line=line_number,
            )
        if unmatched:
            log.info("%s: %d summaries have no row in %s", path.name, unmatched, metadata_path.name)


def default_metadata_path(summaries: Path) -> Path:
    prefix = (
        summaries.name.removesuffix("plot_summaries.txt")
        if summaries.name.endswith("plot_summaries.txt")
        else ""
    )
    return summaries.with_name(f"{prefix}movie.metadata.tsv")


def read_movie_metadata(path: Path) -> dict[str, MovieMetadata]:
    movies = {}
    for line_number, line in enumerate(iter_text_lines(path), start=1):
        cells = line.rstrip("\r\n").split("\t")
        if len(cells) == 1 and not cells[0].strip():
            continue
        if len(cells) != METADATA_COLUMNS:
            raise MovielabError(
                f"{path}:{line_number}: expected {METADATA_COLUMNS} tab-separated columns (id, freebase id, "
                f"name, date, revenue, runtime, languages, countries, genres), found {len(cells)}"
            )
        movies[cells[_ID].strip()] = MovieMetadata(
            title=cells[_NAME].strip() or None,
            year=int(cells[_DATE][:4]) if cells[_DATE][:4].isdigit() else None,
            genres=_genre_names(path, line_number, cells[_GENRES]),
        )
    return movies


def _genre_names(path: Path, line_number: int, cell: str) -> tuple[str, ...]:
    if not cell.strip():
        return ()
    try:
        genres = json.loads(cell)
    except json.JSONDecodeError as exc:
        raise MovielabError(
            f"{path}:{line_number}: the genres column is not a JSON map ({exc.msg}): {cell[:60]}"
        ) from None
    if not isinstance(genres, dict):
        raise MovielabError(f"{path}:{line_number}: the genres column is not a JSON map: {cell[:60]}")
    return tuple(str(name).strip() for name in genres.values() if str(name).strip())
