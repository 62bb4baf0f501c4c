"""Incremental decoders over a changing set of rows: the protocol, and two generic ones.

A `RowDecoder` keeps whatever a net needs to continue each row (a KV cache, an LSTM state) and
feeds one token per row a step. GPT and LSTM have batched decoders of their own
(movielab.models.gpt.GPTDecoder, lstm.LSTMDecoder); here are the re-running decoder (no cache:
the reference's way, kept to check the caches against) and a row-by-row decoder for nets whose
caches cannot hold rows at different lengths in one batch (Hugging Face models, the GAN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

# a row to start: its prompt's ids (time,), prefix embeddings (positions, width) or None, and the
# row's generator (for nets that draw noise)
NewRow = tuple[torch.Tensor, torch.Tensor | None, torch.Generator | None]


class RowDecoder(Protocol):
    """Rows are numbered in the order they were added, removed rows closing the gap."""

    def add_rows(self, rows: Sequence[NewRow]) -> torch.Tensor:
        """Start rows from their prompts (fed together where the net can); their next-token
        logits (rows, vocab)."""

    def add(self, ids: torch.Tensor, prefix: torch.Tensor | None = None, generator=None) -> torch.Tensor:  # noqa: ANN001
        """Start one row; its next-token logits (vocab,)."""

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (rows,); the next-token logits (rows, vocab)."""

    def remove(self, rows: Sequence[int]) -> None:
        """Drop these rows and what they held."""


class RowState(Protocol):
    """One row of a row-by-row decoder."""

    def feed(self, token: int) -> torch.Tensor:
        """Feed the row's next token; its next-token logits (vocab,)."""


class RowDecoderBase:
    """`add` for one row, in terms of a decoder's `add_rows`."""

    def add_rows(self, rows: Sequence[NewRow]) -> torch.Tensor:
        raise NotImplementedError

    def add(self, ids: torch.Tensor, prefix: torch.Tensor | None = None, generator=None) -> torch.Tensor:  # noqa: ANN001
        return self.add_rows([(ids, prefix, generator)])[0]


class RowByRowDecoder(RowDecoderBase):
    """A RowDecoder that keeps one state per row and steps the rows one after another."""

    def __init__(
        self,
        start: Callable[[torch.Tensor, torch.Tensor | None, torch.Generator], tuple[torch.Tensor, RowState]],
    ) -> None:
        self.start = start
        self.rows: list[RowState] = []

    def add_rows(self, rows: Sequence[NewRow]) -> torch.Tensor:
        started = [self.start(ids, prefix, generator) for ids, prefix, generator in rows]
        self.rows += [row for _, row in started]
        return torch.stack([logits for logits, _ in started])

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.stack([row.feed(token) for row, token in zip(self.rows, tokens.tolist(), strict=True)])

    def remove(self, rows: Sequence[int]) -> None:
        gone = set(rows)
        self.rows = [row for i, row in enumerate(self.rows) if i not in gone]


class _RerunRow:
    def __init__(
        self, forward: Callable, ids: torch.Tensor, prefix: torch.Tensor | None, context: int | None
    ):
        self.forward, self.ids, self.prefix, self.context = forward, ids.tolist(), prefix, context
        self.device = ids.device

    def logits(self) -> torch.Tensor:
        window = self.ids if self.context is None else self.ids[-self.context :]
        idx = torch.tensor([window], dtype=torch.long, device=self.device)
        return self.forward(idx, None if self.prefix is None else self.prefix[None])[0, -1]

    def feed(self, token: int) -> torch.Tensor:
        self.ids.append(token)
        return self.logits()


def rerunning_decoder(
    forward: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    context: Callable[[torch.Tensor | None], int | None],
) -> RowByRowDecoder:
    """No cache: every step re-runs `forward(idx (1, time), prefix (1, P, width) | None) -> logits
    (1, time', vocab)` over the row's last `context(prefix)` tokens (None: all of them)."""

    def start(ids: torch.Tensor, prefix: torch.Tensor | None, generator: torch.Generator) -> tuple:
        row = _RerunRow(forward, ids, prefix, context(prefix))
        return row.logits(), row

    return RowByRowDecoder(start)
