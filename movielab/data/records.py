"""The typed record every reader yields and every template consumes."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Record:
    """One item of training data: a movie, a script utterance, a sentence.

    Text fields are None when the source has no value. `rating` stays on the source's own scale
    (the data config states the scale); `line` is where the record starts in its file, for messages.
    """

    title: str | None = None
    description: str | None = None
    tagline: str | None = None
    text: str | None = None
    year: int | None = None
    rating: float | None = None
    genres: tuple[str, ...] = ()
    line: int = 0

    def has(self, field_name: str) -> bool:
        value = getattr(self, field_name)
        return value not in (None, "", ())


RECORD_FIELDS = tuple(f.name for f in fields(Record) if f.name != "line")
