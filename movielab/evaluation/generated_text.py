"""How good, how diverse and how novel are generated texts, and do they read as the requested genres?

Samples are compared field by field through the run's template ("{title}\\n{description}..."): the
exact-copy rate is over whole samples, the title-copy rate over titles (the reference reported 55%
of generated titles were training titles), and the text metrics over the body (the template's last
field, e.g. the plot): n-gram novelty against the training bodies, distinct-1/2, self-BLEU, and
BLEU against the held-out bodies (movielab.metrics). A genre classifier (movielab.predict's model)
judges whether a sample reads as the genres it was asked for.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import cycle, islice

import numpy as np

from movielab.data.genres import normalize_genres
from movielab.data.records import Record
from movielab.data.templates import Template
from movielab.data.token_cache import TokenData
from movielab.evaluation.training_texts import training_texts
from movielab.metrics import KnownNgrams, ReferenceSet, distinct_n, self_bleu, words
from movielab.models.genre_predictor import GenrePredictor
from movielab.text_index import TextIndex


def template_pattern(template: Template) -> re.Pattern:
    """A regex with one named group per field, matching a sample as generation prints it (cut at
    the stop string, trailing whitespace removed)."""
    text = template.text
    if template.stop and template.stop in text:
        text = text[: text.index(template.stop)]
    parts, seen = [], set()
    for literal, name, _, _ in string.Formatter().parse(text.rstrip()):
        parts.append(re.escape(literal))
        if name:
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
            seen.add(name)
    return re.compile("^" + "".join(parts) + "$", re.DOTALL)


@dataclass
class FieldReader:
    """Splits samples into the template's fields; the body is the last field (the whole text when
    a sample does not fit the template, e.g. a plain one-line-per-sample file)."""

    template: Template

    def __post_init__(self) -> None:
        self.pattern = template_pattern(self.template)
        self.body_field = self.template.fields[-1]

    def fields(self, text: str) -> dict[str, str]:
        match = self.pattern.match(text.strip())
        return {k: v.strip() for k, v in match.groupdict().items()} if match else {}

    def body(self, text: str) -> str:
        return self.fields(text).get(self.body_field, text.strip())

    def title(self, text: str) -> str | None:
        return self.fields(text).get("title")

    def record(self, text: str) -> Record:
        body = self.body(text)
        return Record(title=self.title(text), description=body, text=body)


@dataclass
class ReferenceTexts:
    """A run's training and held-out records as generation prints them, with the held-out genres."""

    reader: FieldReader
    training: list[str]
    heldout: list[str]
    heldout_genres: list[tuple[str, ...]]

    @classmethod
    def from_data(cls, data: TokenData, template: Template) -> ReferenceTexts:
        heldout = training_texts(dataclasses.replace(data, train=data.val), template)  # the val split
        names = data.stats.get("genres", [])
        hot = data.val.values.get("genres", np.zeros((data.val.n_records, 0)))
        genres = [tuple(names[j] for j in np.flatnonzero(row)) for row in hot]
        return cls(FieldReader(template), training_texts(data, template), heldout, genres)

    def __post_init__(self) -> None:
        self.training_bodies = [self.reader.body(t) for t in self.training]
        self.training_titles = [t for t in map(self.reader.title, self.training) if t is not None]
        self.heldout_bodies = [self.reader.body(t) for t in self.heldout]
        self._known: dict[int, KnownNgrams] = {}
        self._heldout_sets: dict[int, ReferenceSet] = {}

    @cached_property
    def training_index(self) -> TextIndex:
        return TextIndex.from_texts(self.training)

    @cached_property
    def title_index(self) -> TextIndex:
        return TextIndex.from_texts(self.training_titles)

    def requested_genres(self, count: int) -> list[list[str]]:
        """The genres `count` samples of a genre-conditioned model ask for: the held-out movies'
        genres in turn (those with any), so samples and real texts ask for the same mix."""
        with_genres = [list(g) for g in self.heldout_genres if g]
        return list(islice(cycle(with_genres), count)) if with_genres else []

    def known_ngrams(self, n: int) -> KnownNgrams:
        """The training bodies' n-grams, collected once for every sample set scored against them."""
        if n not in self._known:
            self._known[n] = KnownNgrams(self.training_bodies, n)
        return self._known[n]

    def heldout_set(self, n: int) -> ReferenceSet:
        if n not in self._heldout_sets:
            self._heldout_sets[n] = ReferenceSet(self.heldout_bodies, max_n=n)
        return self._heldout_sets[n]


def text_metrics(samples: Sequence[str], references: ReferenceTexts, n: int = 4) -> dict[str, float]:
    """Copy rates, novelty, diversity and held-out BLEU of one set of samples."""
    reader = references.reader
    bodies = [reader.body(s) for s in samples]
    metrics = {
        "samples": len(samples),
        "words": float(np.mean([len(words(b)) for b in bodies])) if bodies else 0.0,
        "copy_rate": references.training_index.copy_rate(samples),
    }
    titles = [t for t in map(reader.title, samples) if t is not None]
    if titles and references.training_titles:
        metrics["title_copy_rate"] = references.title_index.copy_rate(titles)
    metrics[f"novelty_{n}gram"] = references.known_ngrams(n).novelty(bodies)
    metrics["distinct_1"] = distinct_n(bodies, 1)
    metrics["distinct_2"] = distinct_n(bodies, 2)
    metrics[f"self_bleu_{n}"] = self_bleu(bodies, n)
    metrics[f"bleu_{n}"] = references.heldout_set(n).bleu(bodies, n) if references.heldout_bodies else 0.0
    return metrics


class GenreJudge:
    """A trained genre classifier asked whether samples read as the genres they were meant to have."""

    def __init__(self, predictor: GenrePredictor) -> None:
        self.predictor = predictor

    @property
    def genres(self) -> tuple[str, ...]:
        return self.predictor.genres

    def recognition(self, records: Sequence[Record], requested: Sequence[Sequence[str]]) -> dict[str, float]:
        """genre_recall: share of the requested genres (that the classifier knows) it predicts;
        genre_top1: share of samples whose most probable genre is a requested one."""
        probs = self.predictor.probabilities(records).cpu()
        predicted = probs >= self.predictor.threshold
        column = {name: i for i, name in enumerate(self.genres)}
        found = asked = top_hits = judged = 0
        for row, genres in enumerate(requested):
            wanted = [column[g] for g in normalize_genres(genres) if g in column]
            if not wanted:
                continue
            judged += 1
            asked += len(wanted)
            found += int(predicted[row, wanted].sum())
            top_hits += int(int(probs[row].argmax()) in wanted)
        if not judged:
            return {}
        return {"genre_recall": found / asked, "genre_top1": top_hits / judged}
