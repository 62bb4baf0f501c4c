"""A transformer encoder built from the GPT's blocks, attending both ways, pooled to one vector per row."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from movielab.errors import MovielabError
from movielab.models.gpt import GPT, GPTConfig, TransformerStack


@dataclass
class TransformerEncoderConfig(GPTConfig):
    """The GPT's fields and `n_outputs`, the scores per row (bound from the data: one per genre)."""

    n_outputs: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_outputs < 1:
            raise MovielabError(f"the encoder needs at least one output, got n_outputs={self.n_outputs}")


class TransformerEncoder(TransformerStack):
    """Token ids and a padding mask -> `n_outputs` scores per row (e.g. one logit per genre).

    The stack is the GPT's (movielab.models.gpt.TransformerStack) with bidirectional attention restricted to
    the real tokens; the final hidden states are averaged over the real tokens and projected.
    """

    def __init__(self, config: TransformerEncoderConfig) -> None:
        super().__init__(config)
        self.head = nn.Linear(config.n_embd, config.n_outputs)
        self.apply(GPT._init_weights)

    def forward(self, idx: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, time) ids, (batch, time) True on real tokens -> (batch, n_outputs)."""
        if idx.size(1) > self.config.block_size:
            raise ValueError(f"sequence of {idx.size(1)} exceeds block_size {self.config.block_size}")
        if padding_mask is None:
            padding_mask = torch.ones_like(idx, dtype=torch.bool)
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.blocks:
            x = block(x, attend_to=padding_mask)
        x = self.ln_f(x)
        weights = padding_mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)
