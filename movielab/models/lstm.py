"""A word-level LSTM language model: embedding, stacked LSTM, dropout, linear to the vocabulary.

Generation carries the (h, c) state from one step to the next, so each new word costs one LSTM
step instead of a re-run over the window (the reference re-ran the last 10 words per word).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from movielab.decoding import RowDecoderBase
from movielab.errors import MovielabError

State = tuple[torch.Tensor, torch.Tensor]


@dataclass
class LSTMConfig:
    """`block_size` is the length of the windows it is trained on (backpropagation through time
    reaches that far back); it does not limit generation. It lives here, as it does for the GPT, so
    the data configs and sweeps set the sequence length with one key for every model."""

    vocab_size: int
    block_size: int = 10
    embedding_dim: int = 400
    hidden_dim: int = 256
    n_layer: int = 2
    dropout: float = 0.5
    tie_weights: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "embedding_dim", "hidden_dim", "n_layer"):
            if getattr(self, name) < 1:
                raise MovielabError(f"model.net.config.{name}={getattr(self, name)} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise MovielabError(f"model.net.config.dropout={self.dropout} must be in [0, 1)")


class LSTM(nn.Module):
    """(batch, time) token ids -> (batch, time, vocab) logits; dropout between the LSTM layers and
    before the output layer, as in the reference.

    `tie_weights` shares the embedding matrix with the output layer (Press & Wolf 2017, Inan et al.
    2017): a word's input and output vectors are learned from both its contexts and its uses, which
    regularises a word model trained on a corpus of a million words. When the LSTM's width is not
    the embedding's, a linear projection maps its output to the embedding size first.
    """

    max_context: int | None = None  # the state summarises any length of history
    prefix_width: int | None = None  # it takes no condition prefix

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_dim,
            num_layers=config.n_layer,
            dropout=config.dropout if config.n_layer > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        needs_projection = config.tie_weights and config.hidden_dim != config.embedding_dim
        self.projection = (
            nn.Linear(config.hidden_dim, config.embedding_dim) if needs_projection else nn.Identity()
        )
        head_inputs = config.embedding_dim if config.tie_weights else config.hidden_dim
        self.head = nn.Linear(head_inputs, config.vocab_size)
        if config.tie_weights:
            # as PyTorch's word_language_model example: N(0, 1) embeddings would make the tied
            # output layer's first logits tens of nats apart
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
            self.head.weight = self.embedding.weight

    def run(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits for every position, and the state after the last one (None = zeros)."""
        outputs, state = self.lstm(self.embedding(idx), state)
        return self.head(self.projection(self.dropout(outputs))), state

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.run(idx)[0]

    def decoder(self) -> LSTMDecoder:
        return LSTMDecoder(self)


class LSTMDecoder(RowDecoderBase):
    """Rows of an LSTM decoded together: each row's (h, c) state is its whole history, so a new
    word costs one LSTM step however long the row is (the reference re-ran the last 10 words).
    Rows added together with prompts of one length are fed in one batch."""

    def __init__(self, lstm: LSTM) -> None:
        self.lstm = lstm
        self.state: State | None = None  # (h, c), each (n_layer, rows, hidden_dim)

    def add_rows(self, rows: Sequence[tuple[torch.Tensor, torch.Tensor | None, object]]) -> torch.Tensor:
        if any(prefix is not None for _, prefix, _ in rows):
            raise ValueError("the LSTM takes no prefix conditions")
        groups: dict[int, list[int]] = {}
        for i, (ids, _, _) in enumerate(rows):
            groups.setdefault(len(ids), []).append(i)
        logits: list[torch.Tensor | None] = [None] * len(rows)
        states: list[State | None] = [None] * len(rows)
        for members in groups.values():
            out, (h, c) = self.lstm.run(torch.stack([rows[i][0] for i in members]))
            for j, i in enumerate(members):
                logits[i], states[i] = out[j, -1], (h[:, j : j + 1], c[:, j : j + 1])
        h = torch.cat([s[0] for s in states], dim=1)
        c = torch.cat([s[1] for s in states], dim=1)
        if self.state is not None:
            h, c = torch.cat([self.state[0], h], dim=1), torch.cat([self.state[1], c], dim=1)
        self.state = (h, c)
        return torch.stack(logits)

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.lstm.run(tokens[:, None], self.state)
        return logits[:, -1]

    def remove(self, rows: list[int]) -> None:
        if self.state is None:
            return
        gone = set(rows)
        keep = [i for i in range(self.state[0].size(1)) if i not in gone]
        self.state = (self.state[0][:, keep], self.state[1][:, keep]) if keep else None
