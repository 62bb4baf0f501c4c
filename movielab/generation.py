"""One generation API for every model that writes text: the generate CLI, evaluation, the samples
callback and the server all come through `generate` (or the `DecodingBatch` it drives).

A model that writes text is a `GeneratesText`: it names the prompt fields it takes, turns a
prompt into token ids (and condition embeddings), and offers a `RowDecoder`, an incremental
decoder over a changing set of rows. Each row is one request: its own prompt, sampling settings
and seed, so a row's text does not depend on which other rows share its batch, and rows join and
leave a batch between steps (continuous batching). Text streams out as `TextPiece` events whose
concatenation is the row's final text; a `RowFinished` event carries the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from movielab.decoding import RowDecoder
from movielab.errors import MovielabError
from movielab.sampling import SamplingSettings, draw_tokens

REPLACEMENT = "\ufffd"  # a multi-byte character cut between tokens decodes to this until it is whole


@dataclass(frozen=True)
class PromptField:
    """One thing a prompt may give: free text, a number on a scale, or names from a vocabulary."""

    name: str
    kind: str  # "text" | "number" | "choices"
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"name": self.name, "kind": self.kind, "help": self.help}
        if self.kind == "number":
            described.update(low=self.low, high=self.high)
        if self.kind == "choices":
            described["choices"] = list(self.choices)
        return described


@dataclass
class PreparedPrompt:
    """A checked prompt as the decoder takes it: token ids, optional prefix embeddings (positions,
    width) and the text the result starts with."""

    ids: torch.Tensor
    text: str
    prefix: torch.Tensor | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class GeneratesText(Protocol):
    """A trained model that writes text (movielab.models.language_sampler, text_gan_sampler)."""

    stop: str | None

    def prompt_fields(self) -> tuple[PromptField, ...]: ...

    def prepare(self, prompt: Mapping[str, Any]) -> PreparedPrompt:
        """Check a prompt (one-line MovielabError naming a bad field) and encode it."""

    def decoder(self, use_cache: bool = True) -> RowDecoder: ...

    def settings_for(self, settings: SamplingSettings) -> SamplingSettings:
        """The settings with what this model never writes banned (e.g. its unknown token)."""

    def stop_ids(self) -> list[int]:
        """The token ids that end a sample (empty: no stop, write until the limit)."""

    def token_limit(self, prompt: PreparedPrompt) -> int | None:
        """The most new tokens the model itself can write for this prompt (None: no limit)."""

    def render(self, prompt: PreparedPrompt, new_ids: Sequence[int]) -> tuple[str, bool]:
        """The text so far (prompt included, cut at the stop, trailing space removed) and whether
        the stop has been written."""


@runtime_checkable
class TrainsTextWriter(Protocol):
    """A training module whose model writes text (the language models, the text GAN)."""

    def text_sampler(self, tokenizer: Any, template: Any) -> GeneratesText: ...


@dataclass(frozen=True)
class Request:
    """One row to write: a prompt (field -> value), how to sample it, and its seed."""

    prompt: Mapping[str, Any]
    settings: SamplingSettings
    seed: int


@dataclass
class GeneratedText:
    text: str
    cut_off: bool  # used up max_new_tokens before the model wrote its stop
    seed: int
    new_tokens: int
    copies_training: bool | None = None  # None: no index of the training texts at hand
    redraws: int = 0  # times it was drawn again because it copied a training text


@dataclass(frozen=True)
class TextPiece:
    row: int
    text: str


@dataclass(frozen=True)
class RowRestarted:
    """The row's text so far is withdrawn (it copied a training text and is drawn again)."""

    row: int
    reason: str


@dataclass(frozen=True)
class RowFinished:
    row: int
    result: GeneratedText


Event = TextPiece | RowRestarted | RowFinished


def held_back(text: str, stop: str | None) -> int:
    """How many trailing characters of a partial text may still change: a half-written character,
    and the beginning of the stop string (it is cut away if the rest follows)."""
    hold = len(text) - len(text.rstrip(REPLACEMENT))
    if stop:
        body = text[: len(text) - hold]
        for size in range(min(len(stop) - 1, len(body)), 0, -1):
            if body.endswith(stop[:size]):
                return hold + size
    return hold


@dataclass
class _Row:
    row: int
    request: Request
    prompt: PreparedPrompt
    settings: SamplingSettings
    generator: torch.Generator
    limit: int
    model_limit: int | None
    history: list[int]
    new_ids: list[int] = field(default_factory=list)
    emitted: str = ""
    redraws: int = 0


class DecodingBatch:
    """Rows decoded together, one token a step; rows may be added between steps.

    `copies` says whether a text is a training text (the result's flag); with `reject`, such a
    text is drawn again (from the row's generator, which goes on), up to `max_redraws` times.
    """

    def __init__(
        self,
        sampler: GeneratesText,
        use_cache: bool = True,
        copies: Callable[[str], bool] | None = None,
        reject: bool = False,
        max_redraws: int = 10,
        device: torch.device | str = "cpu",
    ) -> None:
        if reject and copies is None:
            raise MovielabError("rejecting training copies needs an index of the training texts")
        self.sampler = sampler
        self.decoder = sampler.decoder(use_cache=use_cache)
        self.copies = copies
        self.reject = reject
        self.max_redraws = max_redraws
        self.device = torch.device(device)
        self.stop = sampler.stop_ids()
        self.rows: list[_Row] = []
        self.logits = torch.zeros(0)  # (rows, vocab): each row's next-token logits
        self._drawn = False  # tokens drawn that the net has not read yet (between draw and advance)
        self._restarting: list[_Row] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: int, request: Request, prompt: PreparedPrompt | None = None) -> list[Event]:
        """Start a row (its prompt prepared here unless given); the events of its first text."""
        return self.add_many([(row, request, prompt)])

    def add_many(self, rows: Sequence[tuple[int, Request, PreparedPrompt | None]]) -> list[Event]:
        """Start rows together (the net feeds prompts of one length in one batch)."""
        states = []
        for row, request, prompt in rows:
            prompt = prompt if prompt is not None else self.sampler.prepare(request.prompt)
            generator = torch.Generator(device=self.device).manual_seed(int(request.seed))
            model_limit = self.sampler.token_limit(prompt)
            limit = request.settings.max_new_tokens
            if model_limit is not None:
                limit = min(model_limit, limit)
            settings = self.sampler.settings_for(request.settings)
            states.append(
                _Row(row, request, prompt, settings, generator, limit, model_limit, prompt.ids.tolist())
            )
        return self._start(states)

    def _start(self, states: list[_Row]) -> list[Event]:
        if not states:
            return []
        assert not self._drawn, "rows join between steps, not between draw and advance"
        logits = self.decoder.add_rows([(s.prompt.ids, s.prompt.prefix, s.generator) for s in states])
        self.logits = logits if not self.rows else torch.cat([self.logits, logits])
        self.rows += states
        return [event for state in states for event in self._pieces(state, final=False)]

    def cancel(self, row: int) -> None:
        """Stop a row (its client went away): no more events for it."""
        index = next((i for i, state in enumerate(self.rows) if state.row == row), None)
        if index is not None:
            self._drop([index])

    def step(self) -> list[Event]:
        """One new token for every row; the pieces of text it adds and the rows it finishes."""
        return self.draw() + self.advance()

    def draw(self) -> list[Event]:
        """The first half of a step: every row draws its next token from the logits it has (a
        server sends these events while `advance` runs the net). `advance` must follow."""
        if not self.rows:
            return []
        tokens = draw_tokens(
            self.logits,
            [state.history for state in self.rows],
            [state.settings for state in self.rows],
            [state.generator for state in self.rows],
        )
        events: list[Event] = []
        done = []
        for index, (state, token) in enumerate(zip(self.rows, tokens, strict=True)):
            state.new_ids.append(token)
            state.history.append(token)
            stopped = bool(self.stop) and state.new_ids[-len(self.stop) :] == self.stop
            if stopped or len(state.new_ids) >= state.limit:
                finished = self._finish(state)
                if isinstance(finished[-1], RowRestarted):
                    self._restarting.append(state)
                events += finished
                done.append(index)
            else:
                events += self._pieces(state, final=False)
        if done:
            self._drop(done)
        self._drawn = True
        return events

    def advance(self) -> list[Event]:
        """The second half of a step: the net reads the drawn tokens, giving the next logits; rows
        drawn again (they copied a training text) start over."""
        if not self._drawn:
            return []
        self._drawn = False
        if self.rows:
            kept = torch.tensor([s.new_ids[-1] for s in self.rows], dtype=torch.long, device=self.device)
            self.logits = self.decoder.advance(kept)
        restart, self._restarting = self._restarting, []
        for state in restart:
            state.new_ids, state.history, state.emitted = [], state.prompt.ids.tolist(), ""
            state.redraws += 1
        return self._start(restart)

    def _drop(self, indices: list[int]) -> None:
        self.decoder.remove(indices)
        gone = set(indices)
        self.rows = [s for i, s in enumerate(self.rows) if i not in gone]
        self.logits = self.logits[[i for i in range(len(self.logits)) if i not in gone]]

    def _pieces(self, state: _Row, final: bool) -> list[Event]:
        text, _ = self.sampler.render(state.prompt, state.new_ids)
        if not text.startswith(state.emitted):
            return []  # a later token rewrote the tail: wait until the text extends what was sent
        end = len(text) if final else len(text) - held_back(text, self.sampler.stop)
        piece = text[len(state.emitted) : end]
        if not piece:
            return []
        state.emitted += piece
        return [TextPiece(state.row, piece)]

    def _finish(self, state: _Row) -> list[Event]:
        """The row's last pieces and its result, or its withdrawal when it is drawn again."""
        text, stopped = self.sampler.render(state.prompt, state.new_ids)
        copied = self.copies(text) if self.copies is not None else None
        if self.reject and copied and state.redraws < self.max_redraws:
            return [RowRestarted(state.row, "copies a training text")]
        natural_end = state.model_limit is not None and len(state.new_ids) >= state.model_limit
        cut_off = bool(self.sampler.stop) and not stopped and not natural_end
        result = GeneratedText(text, cut_off, state.request.seed, len(state.new_ids), copied, state.redraws)
        return [*self._pieces(state, final=True), RowFinished(state.row, result)]


def generate(
    sampler: GeneratesText,
    requests: Sequence[Request],
    max_batch: int = 64,
    use_cache: bool = True,
    copies: Callable[[str], bool] | None = None,
    reject: bool = False,
    max_redraws: int = 10,
    device: torch.device | str = "cpu",
) -> Iterator[Event]:
    """Write every request, up to `max_batch` rows at a time (a row that finishes makes room for
    the next); yields text pieces as they are produced and each row's RowFinished.

    Rows are numbered by their position in `requests`. Every prompt is checked before decoding
    starts, so a bad one fails fast with its row named."""
    if max_batch < 1:
        raise MovielabError(f"max_batch={max_batch} must be at least 1")
    prompts = []
    same_prompt = all(request.prompt == requests[0].prompt for request in requests)
    for row, request in enumerate(requests):
        try:
            prompts.append(sampler.prepare(request.prompt))
        except MovielabError as error:
            raise (error if same_prompt else MovielabError(f"sample {row + 1}: {error}")) from None
    batch = DecodingBatch(sampler, use_cache, copies, reject, max_redraws, device)
    waiting = iter(range(len(requests)))
    with torch.inference_mode():
        while True:
            joining = list(_take(waiting, max_batch - len(batch)))
            yield from batch.add_many([(row, requests[row], prompts[row]) for row in joining])
            if not len(batch):
                return
            yield from batch.step()


def _take(rows: Iterator[int], count: int) -> Iterable[int]:
    for _ in range(count):
        row = next(rows, None)
        if row is None:
            return
        yield row


def generate_texts(
    sampler: GeneratesText, requests: Sequence[Request], **options: Any
) -> list[GeneratedText]:
    """`generate` run to the end: one GeneratedText per request, in order."""
    results: list[GeneratedText | None] = [None] * len(requests)
    for event in generate(sampler, requests, **options):
        if isinstance(event, RowFinished):
            results[event.row] = event.result
    return [r for r in results if r is not None]


def requests_for(
    prompts: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    settings: SamplingSettings,
    seed: int,
    count: int | None = None,
) -> list[Request]:
    """`count` requests of one prompt, or one request per prompt; row i has seed `seed + i`, so
    sample i is the same whether it is drawn alone or with others."""
    if isinstance(prompts, Mapping):
        prompts = [prompts] * (count if count is not None else 1)
    return [Request(dict(prompt), settings, seed + i) for i, prompt in enumerate(prompts)]
