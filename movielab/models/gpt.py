"""A small GPT: pre-LayerNorm blocks, causal scaled_dot_product_attention, tied weights, KV cache."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from movielab.errors import MovielabError


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1
    bias: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise MovielabError(f"model.net.config.{name}={getattr(self, name)} must be at least 1")
        if self.n_embd % self.n_head:
            raise MovielabError(
                f"model.net.config.n_embd={self.n_embd} must be divisible by n_head={self.n_head}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise MovielabError(f"model.net.config.dropout={self.dropout} must be in [0, 1)")


class KVCache(nn.Module):
    """Preallocated keys and values of one attention layer: prefill once, then one token a step."""

    def __init__(self, batch_size: int, n_head: int, max_length: int, head_dim: int, like: torch.Tensor):
        super().__init__()
        shape = (batch_size, n_head, max_length, head_dim)
        self.register_buffer("keys", like.new_zeros(shape), persistent=False)
        self.register_buffer("values", like.new_zeros(shape), persistent=False)

    def update(
        self, start: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + keys.size(2)
        self.keys[:, :, start:end] = keys
        self.values[:, :, start:end] = values
        return self.keys[:, :, :end], self.values[:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.kv_cache: KVCache | None = None

    def forward(
        self, x: torch.Tensor, start: int | None = None, attend_to: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Causal attention; with `attend_to` (batch, time) bool, bidirectional attention to the keys
        marked True (an encoder over padded rows: every token sees every real token)."""
        batch, length, channels = x.shape
        q, k, v = (
            t.view(batch, length, self.n_head, channels // self.n_head).transpose(1, 2)
            for t in self.qkv(x).split(channels, dim=2)
        )
        mask, is_causal = None, True
        if attend_to is not None:
            mask, is_causal = attend_to[:, None, None, :], False
        elif self.kv_cache is not None and start is not None:
            k, v = self.kv_cache.update(start, k, v)
            if start > 0 and length == 1:
                is_causal = False  # one new token attends to every cached key
            elif start > 0:
                # queries sit at positions start..start+length-1 and see every key up to their own
                query_pos = torch.arange(start, start + length, device=x.device)
                mask = torch.arange(start + length, device=x.device)[None, :] <= query_pos[:, None]
                is_causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(batch, length, channels)))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, start: int | None = None, attend_to: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), start, attend_to)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections, scaled as in GPT-2
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def max_context(self) -> int:
        return self.config.block_size

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden_states(
        self, idx: torch.Tensor, start: int | None = None, prefix: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final hidden states of `prefix` (condition embeddings, batch x P x n_embd), if any, then idx."""
        offset = start or 0
        x = self.wte(idx)
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
        if offset + x.size(1) > self.config.block_size:
            raise ValueError(f"sequence of {offset + x.size(1)} exceeds block_size {self.config.block_size}")
        positions = torch.arange(offset, offset + x.size(1), device=idx.device)
        x = self.drop(x + self.wpe(positions))
        for block in self.blocks:
            x = block(x, start)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for every position of `idx` (batch, time) -> (batch, time, vocab).

        With a `prefix` (movielab.models.conditioning) in the first positions, the logits start at
        the prefix's last position, which predicts idx's first token: (batch, time + 1, vocab).
        """
        hidden = self.hidden_states(idx, prefix=prefix)
        if prefix is not None:
            hidden = hidden[:, prefix.size(1) - 1 :]
        return self.lm_head(hidden)

    # Incremental decoding (the protocol movielab.sampling drives)
    def begin_decoding(self, batch_size: int) -> None:
        like = self.wte.weight
        head_dim = self.config.n_embd // self.config.n_head
        for block in self.blocks:
            block.attn.kv_cache = KVCache(
                batch_size, self.config.n_head, self.config.block_size, head_dim, like
            )

    def decode_step(self, idx: torch.Tensor, start: int, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Feed tokens at positions start.. through the cache; logits of the last position (batch, vocab).

        A `prefix` is fed before idx (prefilling with start=0), so idx may then be empty.
        """
        return self.lm_head(self.hidden_states(idx, start, prefix)[:, -1])

    def end_decoding(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = None
