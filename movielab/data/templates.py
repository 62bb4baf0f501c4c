"""Templates turn a Record into training text, and give generation its prompt and stop string."""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cached_property

from movielab.data.records import RECORD_FIELDS, Record
from movielab.errors import MovielabError

DESCRIPTION_TEMPLATE = "The description of the movie named '{title}' is:\n{description}\nEND_OF_MOVIE\n"


@dataclass(frozen=True)
class Template:
    """A str.format pattern over Record fields, e.g. "{title}: {description}".

    `stop` marks the end of one generated item (e.g. END_OF_MOVIE); generation cuts each sample there.
    """

    text: str = DESCRIPTION_TEMPLATE
    stop: str | None = "END_OF_MOVIE"

    def __post_init__(self) -> None:
        unknown = [name for name in self.fields if name not in RECORD_FIELDS]
        if unknown:
            raise MovielabError(
                f"data.template.text uses unknown field(s) {unknown}; known: {', '.join(RECORD_FIELDS)}"
            )
        if not self.fields:
            raise MovielabError("data.template.text has no {field} placeholder")

    @cached_property  # rendering reads it for every record
    def fields(self) -> tuple[str, ...]:
        """The record fields the template needs, in order of appearance."""
        names = [name for _, name, _, _ in string.Formatter().parse(self.text) if name]
        return tuple(dict.fromkeys(names))

    @property
    def ending(self) -> str:
        """The literal text after the last field: in the token stream it separates one record from
        the next, so generation with no prompt starts right after it (at the start of a record)."""
        literal, name, _, _ = list(string.Formatter().parse(self.text))[-1]
        return literal if name is None else ""

    def render(self, record: Record) -> str:
        return self.text.format_map({name: getattr(record, name) for name in self.fields})

    def prompt(self, **given: object) -> str:
        """The text up to the first field not given: the model writes the rest.

        With the description template, prompt(title="Up") ends after "is:\\n", and prompt() ends
        after "named '", so the model invents the title as well.
        """
        prefix = []
        for literal, name, spec, conversion in string.Formatter().parse(self.text):
            prefix.append(literal)
            if name is None:
                continue
            if given.get(name) in (None, ""):
                break
            field = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            prefix.append(field.format_map({name: given[name]}))
        return "".join(prefix)
