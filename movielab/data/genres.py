"""Genre names made comparable across sources, and the genre vocabulary a run trains with.

Sources spell genres differently ("Sci-Fi", "Science Fiction", "science-fiction", "Romance Film",
"Action/Adventure", "unknown"), so every genre passes through `normalize_genres` before it is counted
or looked up: lower case, single spaces, hyphens and underscores as spaces, a trailing " film" or
" movie" dropped, combined names split on , / | ;, placeholders dropped, and the few synonyms in
GENRE_SYNONYMS mapped to one name. The mapping is deliberately small: extend it when a source
needs it, not speculatively.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from movielab.errors import MovielabError

# after lower-casing and turning hyphens into spaces; maps a spelling to the one name we use
GENRE_SYNONYMS = {
    "sci fi": "science fiction",
    "scifi": "science fiction",
    "sf": "science fiction",
    "crime fiction": "crime",
    "animated": "animation",
    "biographical": "biography",
    "biopic": "biography",
    "romantic": "romance",
    "suspense": "thriller",
}
# values that mean "no genre" in the sources
GENRE_PLACEHOLDERS = frozenset({"", "unknown", "n/a", "na", "none", "\\n", "-", "(no genres listed)"})
_SEPARATORS = re.compile(r"[,/|;]")
_SUFFIXES = (" film", " movie")


def normalize_genre(name: str) -> str | None:
    """One genre name in its canonical spelling, or None for a placeholder such as "unknown"."""
    text = " ".join(name.casefold().replace("-", " ").replace("_", " ").split())
    for suffix in _SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
    text = GENRE_SYNONYMS.get(text, text)
    return None if text in GENRE_PLACEHOLDERS else text


def normalize_genres(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical genre names, combined names split, duplicates and placeholders dropped, order kept."""
    result: dict[str, None] = {}
    for name in names:
        if name.strip().casefold() in GENRE_PLACEHOLDERS:
            continue
        for part in _SEPARATORS.split(name):
            canonical = normalize_genre(part)
            if canonical is not None:
                result[canonical] = None
    return tuple(result)


@dataclass(frozen=True)
class GenreVocabulary:
    """The genres a model knows, in a fixed order: the columns of the multi-hot "genres" array.

    Built from the TRAINING split only; genres seen only in validation (or fewer than `min_count`
    times in training) are not in it, and records' unknown genres are ignored when encoding.
    """

    names: tuple[str, ...] = ()

    @classmethod
    def from_genre_lists(cls, genre_lists: Iterable[Sequence[str]], min_count: int = 1) -> GenreVocabulary:
        counts = Counter(g for genres in genre_lists for g in normalize_genres(genres))
        return cls(tuple(sorted(name for name, count in counts.items() if count >= min_count)))

    def __len__(self) -> int:
        return len(self.names)

    def __bool__(self) -> bool:
        return bool(self.names)

    def multi_hot(self, genre_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """(n_lists, n_genres) uint8, 1 where the list holds the genre; unknown genres are ignored."""
        column = {name: i for i, name in enumerate(self.names)}
        array = np.zeros((len(genre_lists), len(self.names)), dtype=np.uint8)
        for row, genres in enumerate(genre_lists):
            for genre in normalize_genres(genres):
                if genre in column:
                    array[row, column[genre]] = 1
        return array

    def require_known(self, genres: Iterable[str], option: str = "genres") -> tuple[str, ...]:
        """Canonical names of genres a user asked for; a one-line error for any the model does not know."""
        if isinstance(genres, str):
            genres = [genres]
        requested = normalize_genres(genres)
        unknown = [g for g in requested if g not in self.names]
        if unknown:
            raise MovielabError(
                f"{option}: unknown genre(s) {', '.join(unknown)}; this model knows: {', '.join(self.names)}"
            )
        if not requested:
            raise MovielabError(f"{option}: no genre given; this model knows: {', '.join(self.names)}")
        return requested
