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
        - `cache`, `positions` (batch,) and `attend_to` (batch, end): one new token per row
          (time = 1) at the row's own position, attending to the cached keys marked True (those
          up to its position; the GPT builds the mask once per step, not once per block).
        """
        batch, length, channels = x.shape
        q, k, v = (
            t.view(batch, length, self.n_head, channels // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            for t in self.qkv(x).split(channels, dim=2)
        )
        mask, is_causal = None, True
        if cache is not None and positions is None:
            cache[0][:, :, :length], cache[1][:, :, :length] = k, v
        elif cache is not None:
            assert length == 1 and attend_to is not None, "a decoding step feeds one token per row"
            rows = torch.arange(batch, device=x.device)
            cache[0][rows, :, positions], cache[1][rows, :, positions] = k[:, :, 0], v[:, :, 0]  # (B, nh, hs)
            end = attend_to.size(1)
            k, v = cache[0][:, :, :end], cache[1][:, :, :end]  # (B, nh, end, hs)
            mask, is_causal = attend_to[:, None, None, :], False
        elif attend_to is not None:
            mask, is_causal = attend_to[:, None, None, :], False  # (B, 1, 1, T)
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
        attend_to = None
        if positions is not None:  # each row sees the cached keys up to its own position
            keys = torch.arange(int(positions.max()) + 1, device=idx.device)
            attend_to = keys[None, :] <= positions[:, None]
        for i, block in enumerate(self.blocks):
            x = block(
                x, cache=None if caches is None else caches[i], positions=positions, attend_to=attend_to
            )
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
        self,
        idx: torch.Tensor,
        prefix: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Feed `prefix` and idx (batch, time) from position 0 into `caches` (fresh ones if none);
        the logits of each row's last position (batch, vocab) and the caches. Rows shorter than
        `time` are padded at the end and give their `lengths` (batch,): causal attention keeps the
        padding out of them."""
        caches = self.empty_caches(idx.size(0)) if caches is None else caches
        hidden = self.hidden_states(idx, prefix, caches)
        if lengths is None:
            return self.lm_head(hidden[:, -1]), caches
        last = lengths + (0 if prefix is None else prefix.size(1)) - 1
        return self.lm_head(hidden[torch.arange(idx.size(0), device=idx.device), last]), caches

    def step(
        self, tokens: torch.Tensor, caches: list[tuple[torch.Tensor, torch.Tensor]], positions: torch.Tensor
    ) -> torch.Tensor:
        """Feed one token per row (batch,) at its position (batch,); next-token logits (batch, vocab)."""
        return self.lm_head(self.hidden_states(tokens[:, None], caches=caches, positions=positions)[:, -1])


class GPTDecoder(RowDecoderBase):
    """Rows of a GPT decoded together through KV caches, each row at its own position: rows added
    together are prefilled in one forward (padded to the longest, one per prefix shape), then
    every row advances one token a step.

    The caches live in buffers with room for more rows, one slot a row. A row that leaves frees
    its slot and the row in the last slot moves into it, so joining and leaving copy one row's
    cache, not every row's; the step runs in slot order and hands logits back in row order. When
    a row's context is full, its cache restarts from the last half context (prefix fed again), so
    long samples stay O(n) instead of O(n^2)."""

    def __init__(self, gpt: GPT) -> None:
        self.gpt = gpt
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = gpt.empty_caches(0)  # (capacity, ...)
        self.device = gpt.wte.weight.device
        self.slot_positions = torch.zeros(0, dtype=torch.long, device=self.device)  # by slot
        self.slots: list[int] = []  # by row: the row's slot
        self.histories: list[list[int]] = []  # by row: prompt, then generated
        self.prefixes: list[torch.Tensor | None] = []  # by row

    @property
    def caches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every occupied slot's keys and values: views of the first slots of the buffers."""
        rows = len(self.slots)
        return [(k[:rows], v[:rows]) for k, v in self.buffers]

    def _context(self, prefix: torch.Tensor | None) -> int:
        return self.gpt.config.block_size - (0 if prefix is None else prefix.size(0))

    def _reserve(self, rows: int) -> None:
        """Room for `rows` rows, growing the buffers by doubling (copies amortised over joins)."""
        capacity = self.buffers[0][0].size(0)
        if rows <= capacity:
            return
        grown = self.gpt.empty_caches(max(rows, 2 * capacity, 8))
        used = len(self.slots)
        for (k, v), (old_k, old_v) in zip(grown, self.buffers, strict=True):
            k[:used], v[:used] = old_k[:used], old_v[:used]
        self.buffers = grown

    def _prefill(self, first: int, starts: list[list[int]], prefixes: list[torch.Tensor | None]) -> tuple:
        """Rows of one prefix shape fed from position 0 straight into the buffer slots `first`,
        `first + 1`, ...: their logits and next positions."""
        lengths = torch.tensor([len(start) for start in starts], dtype=torch.long, device=self.device)
        idx = torch.zeros(len(starts), int(lengths.max()), dtype=torch.long, device=self.device)
        for row, start in enumerate(starts):
            idx[row, : len(start)] = torch.tensor(start, dtype=torch.long, device=self.device)
        prefix = None if prefixes[0] is None else torch.stack(prefixes)
        slots = slice(first, first + len(starts))
        logits, _ = self.gpt.prefill(idx, prefix, lengths, [(k[slots], v[slots]) for k, v in self.buffers])
        return logits, lengths + (0 if prefix is None else prefix.size(1))

    def add_rows(self, rows: Sequence[tuple[torch.Tensor, torch.Tensor | None, object]]) -> torch.Tensor:
        first = len(self.slots)
        starts = []
        for ids, prefix, _ in rows:
            if self._context(prefix) < 2:
                raise ValueError(f"block_size {self.gpt.config.block_size} leaves no room after the prefix")
            starts.append(ids.tolist()[-self._context(prefix) :])
        self._reserve(first + len(rows))
        groups: dict[tuple | None, list[int]] = {}
        for i, (_, prefix, _) in enumerate(rows):
            groups.setdefault(None if prefix is None else tuple(prefix.shape), []).append(i)
        logits: list[torch.Tensor | None] = [None] * len(rows)
        slots = [0] * len(rows)
        positions = []  # by slot: each group takes the next run of slots
        next_slot = first
        for members in groups.values():
            group_logits, group_positions = self._prefill(
                next_slot, [starts[i] for i in members], [rows[i][1] for i in members]
            )
            for j, i in enumerate(members):
                logits[i], slots[i] = group_logits[j], next_slot + j
            positions.append(group_positions)
            next_slot += len(members)
        self.slots += slots
        self.histories += [ids.tolist() for ids, _, _ in rows]
        self.prefixes += [prefix for _, prefix, _ in rows]
        self.slot_positions = torch.cat([self.slot_positions, *positions])
        return torch.stack(logits)

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        for row, token in enumerate(tokens.tolist()):
            self.histories[row].append(token)
        slots = torch.tensor(self.slots, dtype=torch.long, device=self.device)
        by_slot = torch.empty_like(tokens)
        by_slot[slots] = tokens
        return self._advance_slots(by_slot)[slots]

    def _advance_slots(self, tokens: torch.Tensor) -> torch.Tensor:
        """One token per slot (slots,); the next-token logits by slot."""
        positions = self.slot_positions
        full = positions >= self.gpt.config.block_size
        if not bool(full.any()):
            logits = self.gpt.step(tokens, self.caches, positions)
            self.slot_positions = positions + 1
            return logits
        logits = tokens.new_zeros(len(tokens), self.gpt.config.vocab_size, dtype=self.buffers[0][0].dtype)
        going = (~full).nonzero().flatten()
        if len(going):
            caches = [(k[going], v[going]) for k, v in self.caches]
            logits[going] = self.gpt.step(tokens[going], caches, positions[going])
            for (k, v), (ck, cv) in zip(self.buffers, caches, strict=True):
                k[going], v[going] = ck, cv
            positions[going] += 1
        row_in = {slot: row for row, slot in enumerate(self.slots)}
        for slot in full.nonzero().flatten().tolist():
            row = row_in[slot]
            prefix = self.prefixes[row]
            restart = self.histories[row][-(self._context(prefix) // 2) :]
            slot_logits, position = self._prefill(slot, [restart], [prefix])
            logits[slot], positions[slot] = slot_logits[0], position[0]
        return logits

    def remove(self, rows: Sequence[int]) -> None:
        gone = set(rows)
        kept = len(self.slots) - len(gone)
        freed = {self.slots[row] for row in gone}
        holes = sorted(slot for slot in freed if slot < kept)  # freed slots that stay in use
        movers = [slot for slot in range(kept, len(self.slots)) if slot not in freed]  # rows moving in
        if holes:
            into = torch.tensor(holes, dtype=torch.long, device=self.device)
            out_of = torch.tensor(movers, dtype=torch.long, device=self.device)
            for k, v in self.buffers:
                k[into], v[into] = k[out_of], v[out_of]
            self.slot_positions[into] = self.slot_positions[out_of]
        moved = dict(zip(movers, holes, strict=True))
        keep = [i for i in range(len(self.slots)) if i not in gone]
        self.slots = [moved.get(self.slots[i], self.slots[i]) for i in keep]
        self.histories = [self.histories[i] for i in keep]
        self.prefixes = [self.prefixes[i] for i in keep]
        self.slot_positions = self.slot_positions[:kept]
