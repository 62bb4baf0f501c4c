"""A word-level LSTM language model: embedding, stacked LSTM, dropout, linear to the vocabulary.

Generation carries the (h, c) state from one step to the next, so each new word costs one LSTM
step instead of a re-run over the window (the reference re-ran the last 10 words per word).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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
        self._state: State | None = None

    def run(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits for every position, and the state after the last one (None = zeros)."""
        outputs, state = self.lstm(self.embedding(idx), state)
        return self.head(self.projection(self.dropout(outputs))), state

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.run(idx)[0]

    # Incremental decoding (the protocol movielab.sampling drives)
    def begin_decoding(self, batch_size: int) -> None:
        self._state = None

    def decode_step(self, idx: torch.Tensor, start: int) -> torch.Tensor:
        """Feed `idx` (batch, time) after everything fed so far; logits of its last position.
        `start` is not needed: the carried state already knows how much came before."""
        logits, self._state = self.run(idx, self._state)
        return logits[:, -1]

    def end_decoding(self) -> None:
        self._state = None
