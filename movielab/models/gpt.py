"""A small GPT: pre-LayerNorm blocks, causal scaled_dot_product_attention, tied weights, KV cache."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from movielab.decoding import RowDecoderBase
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


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attend_to: torch.Tensor | None = None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Causal attention over x (batch, time, channels); three modes:

        - no cache: training or a full forward; with `attend_to` (batch, time) bool, bidirectional
          attention to the keys marked True (an encoder over padded rows);
        - `cache` (keys, values), each (batch, n_head, block_size, head_dim), no positions: prefill,
          x holds positions 0.. and its keys and values are written to the cache;
        - `cache` and `positions` (batch,): one new token per row (time = 1) at the row's own
          position, attending to every cached key up to it.
        """
        batch, length, channels = x.shape
        q, k, v = (
            t.view(batch, length, self.n_head, channels // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            for t in self.qkv(x).split(channels, dim=2)
        )
        mask, is_causal = None, True
        if attend_to is not None:
            mask, is_causal = attend_to[:, None, None, :], False  # (B, 1, 1, T)
        elif cache is not None and positions is None:
            cache[0][:, :, :length], cache[1][:, :, :length] = k, v
        elif cache is not None:
            assert length == 1, "a decoding step feeds one token per row"
            rows = torch.arange(batch, device=x.device)
            cache[0][rows, :, positions], cache[1][rows, :, positions] = k[:, :, 0], v[:, :, 0]  # (B, nh, hs)
            end = int(positions.max()) + 1
            k, v = cache[0][:, :, :end], cache[1][:, :, :end]  # (B, nh, end, hs)
            is_causal = False  # one query per row sees its cached keys...
            if bool((positions != positions[0]).any()):  # ...up to its own position
                mask = (torch.arange(end, device=x.device)[None, :] <= positions[:, None])[:, None, None, :]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )  # (B, nh, T, hs)
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

    def forward(self, x: torch.Tensor, **attention: torch.Tensor | tuple | None) -> torch.Tensor:
        """`attention`: CausalSelfAttention's attend_to / cache / positions."""
        x = x + self.attn(self.ln_1(x), **attention)
        return x + self.mlp(self.ln_2(x))


class TransformerStack(nn.Module):
    """Token and position embeddings, the blocks and the final norm: what the GPT and the encoder
    share (the attribute names are their checkpoints' keys)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)


class GPT(TransformerStack):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
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

    @property
    def prefix_width(self) -> int:
        """The width of the condition embeddings it takes before its tokens."""
        return self.config.n_embd

    def decoder(self) -> GPTDecoder:
        return GPTDecoder(self)

    def hidden_states(
        self,
        idx: torch.Tensor,
        prefix: torch.Tensor | None = None,
        caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states (batch, P + time, n_embd) of `prefix` (condition embeddings, batch x P
        x n_embd), if any, then idx. With `caches` (one (keys, values) per block), prefill them;
        with `positions` (batch,) too, idx is one token per row at those positions."""
        x = self.wte(idx)  # (B, T, C)
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
        if positions is None:
            if x.size(1) > self.config.block_size:
                raise ValueError(f"sequence of {x.size(1)} exceeds block_size {self.config.block_size}")
            x = x + self.wpe(torch.arange(x.size(1), device=idx.device))
        else:
            x = x + self.wpe(positions)[:, None]
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache=None if caches is None else caches[i], positions=positions)
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

    def empty_caches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Zeroed keys and values for every block: (batch, n_head, block_size, head_dim) each."""
        c = self.config
        shape = (batch_size, c.n_head, c.block_size, c.n_embd // c.n_head)
        like = self.wte.weight
        return [(like.new_zeros(shape), like.new_zeros(shape)) for _ in self.blocks]

    def prefill(
        self, idx: torch.Tensor, prefix: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Feed `prefix` and idx (batch, time) from position 0 into fresh caches; the logits of the
        last position (batch, vocab) and the caches."""
        caches = self.empty_caches(idx.size(0))
        return self.lm_head(self.hidden_states(idx, prefix, caches)[:, -1]), caches

    def step(
        self, tokens: torch.Tensor, caches: list[tuple[torch.Tensor, torch.Tensor]], positions: torch.Tensor
    ) -> torch.Tensor:
        """Feed one token per row (batch,) at its position (batch,); next-token logits (batch, vocab)."""
        return self.lm_head(self.hidden_states(tokens[:, None], caches=caches, positions=positions)[:, -1])


class GPTDecoder(RowDecoderBase):
    """Rows of a GPT decoded together through KV caches, each row at its own position: rows added
    together are prefilled together (those of one prompt length in one batch), then every row
    advances one token a step. When a row's context is full, its cache restarts from the last half
    context (prefix fed again), so long samples stay O(n) instead of O(n^2)."""

    def __init__(self, gpt: GPT) -> None:
        self.gpt = gpt
        self.caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.positions = torch.zeros(0, dtype=torch.long, device=gpt.wte.weight.device)
        self.histories: list[list[int]] = []  # every token of each row: prompt, then generated
        self.prefixes: list[torch.Tensor | None] = []

    def _context(self, prefix: torch.Tensor | None) -> int:
        return self.gpt.config.block_size - (0 if prefix is None else prefix.size(0))

    def _prefill(self, rows: list[list[int]], prefixes: list[torch.Tensor | None]) -> tuple:
        """Rows of one length (and prefix shape) fed from position 0: logits, caches, positions."""
        device = self.positions.device
        idx = torch.tensor(rows, dtype=torch.long, device=device).view(len(rows), -1)
        prefix = None if prefixes[0] is None else torch.stack(prefixes)
        logits, caches = self.gpt.prefill(idx, prefix)
        return logits, caches, idx.size(1) + (0 if prefix is None else prefix.size(1))

    def add_rows(self, rows: Sequence[tuple[torch.Tensor, torch.Tensor | None, object]]) -> torch.Tensor:
        starts = []
        for ids, prefix, _ in rows:
            if self._context(prefix) < 2:
                raise ValueError(f"block_size {self.gpt.config.block_size} leaves no room after the prefix")
            self.histories.append(ids.tolist())
            self.prefixes.append(prefix)
            starts.append(self.histories[-1][-self._context(prefix) :])
        groups: dict[tuple, list[int]] = {}
        for i, ((_, prefix, _), start) in enumerate(zip(rows, starts, strict=True)):
            groups.setdefault((len(start), None if prefix is None else tuple(prefix.shape)), []).append(i)
        logits: list[torch.Tensor | None] = [None] * len(rows)
        caches: list[list | None] = [None] * len(rows)
        positions = [0] * len(rows)
        for members in groups.values():
            group_logits, group_caches, position = self._prefill(
                [starts[i] for i in members], [rows[i][1] for i in members]
            )
            for j, i in enumerate(members):
                logits[i], positions[i] = group_logits[j], position
                caches[i] = [(k[j : j + 1], v[j : j + 1]) for k, v in group_caches]
        new = [
            (torch.cat([c[layer][0] for c in caches]), torch.cat([c[layer][1] for c in caches]))
            for layer in range(len(self.gpt.blocks))
        ]
        if self.caches is None:
            self.caches = new
        else:
            self.caches = [
                (torch.cat([k, nk]), torch.cat([v, nv]))
                for (k, v), (nk, nv) in zip(self.caches, new, strict=True)
            ]
        self.positions = torch.cat([self.positions, self.positions.new_tensor(positions)])
        return torch.stack(logits)

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        for row, token in enumerate(tokens.tolist()):
            self.histories[row].append(token)
        full = self.positions >= self.gpt.config.block_size
        if not bool(full.any()):
            logits = self.gpt.step(tokens, self.caches, self.positions)
            self.positions = self.positions + 1
            return logits
        logits = tokens.new_zeros(len(tokens), self.gpt.config.vocab_size, dtype=self.caches[0][0].dtype)
        going = (~full).nonzero().flatten()
        if len(going):
            caches = [(k[going], v[going]) for k, v in self.caches]
            logits[going] = self.gpt.step(tokens[going], caches, self.positions[going])
            for (k, v), (ck, cv) in zip(self.caches, caches, strict=True):
                k[going], v[going] = ck, cv
            self.positions[going] += 1
        for row in full.nonzero().flatten().tolist():
            prefix = self.prefixes[row]
            restart = self.histories[row][-(self._context(prefix) // 2) :]
            row_logits, caches, self.positions[row] = self._prefill([restart], [prefix])
            logits[row] = row_logits[0]
            for (k, v), (ck, cv) in zip(self.caches, caches, strict=True):
                k[row], v[row] = ck[0], cv[0]
        return logits

    def remove(self, rows: list[int]) -> None:
        gone = set(rows)
        keep = [i for i in range(len(self.histories)) if i not in gone]
        self.histories = [self.histories[i] for i in keep]
        self.prefixes = [self.prefixes[i] for i in keep]
        self.positions = self.positions[keep]
        if not keep:
            self.caches = None
        elif self.caches is not None:
            self.caches = [(k[keep], v[keep]) for k, v in self.caches]
