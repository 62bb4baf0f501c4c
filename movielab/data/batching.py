"""Batches drawn as a pure function of (seed, rank, step), so a resumed run sees the same data."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from movielab.data.contract import DataNeeds
from movielab.data.token_cache import TokenSplit
from movielab.errors import MovielabError

Batch = dict[str, torch.Tensor]


class StepBatchLoader:
    """An epoch of `steps_per_epoch` batches where batch k is `draw(k)` for the global step k.

    Lightning saves `state_dict()` in checkpoints and restores it on resume, so the run continues
    with the very batch an uninterrupted run would have drawn next (Lightning does not prefetch
    from a loader with a length, so "yielded" equals "trained on").
    """

    def __init__(self, draw: Callable[[int], Batch], steps_per_epoch: int) -> None:
        self.draw = draw
        self.steps_per_epoch = steps_per_epoch
        self.next_step = 0

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[Batch]:
        epoch_end = (self.next_step // self.steps_per_epoch + 1) * self.steps_per_epoch
        while self.next_step < epoch_end:
            batch = self.draw(self.next_step)
            self.next_step += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"next_step": self.next_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_step = int(state["next_step"])


class FixedBatches:
    """The same batches every epoch (validation). A plain list would read to Lightning as one
    dataloader per element."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)


def windows_at(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> Batch:
    """Inputs and next-token targets for windows starting at `starts`, gathered in one indexing op."""
    windows = torch.from_numpy(tokens[starts[:, None] + np.arange(block_size + 1)].astype(np.int64))
    return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}


def _require_counts(options: object, names: tuple[str, ...]) -> None:
    """Each named option is null or an integer of at least 1, or a one-line error naming it."""
    for name in names:
        value = getattr(options, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise MovielabError(f"data.batching.{name}={value!r} must be an integer of at least 1")


def _require_a_shard_per_rank(count: int, what: str, world_size: int) -> None:
    """Under DDP every rank must validate something: one with no batches would skip validation
    while the others wait for its share of val/loss."""
    if count < world_size:
        raise MovielabError(
            f"the validation split has {count} {what}, fewer than the {world_size} processes (DDP ranks) "
            "that each validate a share; use fewer trainer.devices or more validation data "
            "(data.val_fraction, data.batching.val_max_windows)"
        )


def step_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, rank, step])


def _bounded(options: Any, name: str, bound: int | None, too_long: str) -> Any:
    """`options` with data.batching.<name> set to the model's `bound` where it is unset; a value
    above the bound is refused (`too_long` is the rest of that error, `{}` the bound)."""
    value = getattr(options, name)
    if value is None:
        return replace(options, **{name: bound})
    if bound is not None and value > bound:
        raise MovielabError(f"data.batching.{name}={value} " + too_long.format(bound))
    return options


@dataclass(frozen=True)
class WindowBatching:
    """Random fixed-length windows from the token stream, for language models over running text.

    steps_per_epoch: default one pass over the training tokens; repeat_batches: cycle the first N
    batches (the overfit debug preset).
    """

    batch_size: int
    block_size: int | None = None  # default: the model's context (bound by connect)
    steps_per_epoch: int | None = None
    repeat_batches: int | None = None
    val_max_windows: int | None = None

    def __post_init__(self) -> None:
        _require_counts(
            self, ("block_size", "batch_size", "steps_per_epoch", "repeat_batches", "val_max_windows")
        )

    def connected(self, needs: DataNeeds) -> WindowBatching:
        """Windows as long as the model's context, unless data.batching.block_size says shorter."""
        if self.block_size is None and needs.window_length is None:
            raise MovielabError("data.batching.block_size must be set: this model does not say its context")
        too_long = "is longer than the model's context (model.net.config.block_size={})"
        return _bounded(self, "block_size", needs.window_length, too_long)

    def _check_length(self, split: TokenSplit, name: str) -> None:
        if len(split.tokens) < self.block_size + 1:
            raise MovielabError(
                f"the {name} split has {len(split.tokens)} tokens, fewer than block_size+1="
                f"{self.block_size + 1}; use a smaller model.net.config.block_size or more data"
            )

    def train_loader(
        self, split: TokenSplit, seed: int, rank: int = 0, world_size: int = 1
    ) -> StepBatchLoader:
        self._check_length(split, "training")
        tokens, block, batch = split.tokens, self.block_size, self.batch_size

        def draw(step: int) -> Batch:
            if self.repeat_batches:
                step %= self.repeat_batches
            starts = step_rng(seed, rank, step).integers(0, len(tokens) - block, size=batch)
            return windows_at(tokens, starts, block)

        steps = self.steps_per_epoch or max(1, math.ceil(len(tokens) / (block * batch)))
        return StepBatchLoader(draw, steps)

    def val_loader(self, split: TokenSplit, rank: int = 0, world_size: int = 1) -> FixedBatches:
        """Consecutive non-overlapping windows: the same validation set every time, sharded by rank."""
        self._check_length(split, "validation")
        n_windows = (len(split.tokens) - 1) // self.block_size
        if self.val_max_windows:
            n_windows = min(n_windows, self.val_max_windows)
        _require_a_shard_per_rank(n_windows, "windows", world_size)
        starts = np.arange(n_windows)[rank::world_size] * self.block_size
        return FixedBatches(
            [
                windows_at(split.tokens, starts[i : i + self.batch_size], self.block_size)
                for i in range(0, len(starts), self.batch_size)
            ]
        )


def batch_size_of(batch: Batch) -> int:
    """Samples in a batch (for Lightning's ThroughputMonitor)."""
    return batch["inputs"].size(0)


def tokens_in(batch: Batch) -> int:
    """Tokens in a batch (ThroughputMonitor's items, so items_per_sec is tokens/s)."""
    return batch["inputs"].numel()


def pad_rows(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int | None = None) -> tuple:
    """Rows tokens[starts[i] : starts[i] + lengths[i]] right-padded with 0 to `width` (default the
    longest), in one indexing op: ids (rows, width) int64 and a mask (rows, width), True on real tokens.
    The one padding helper: training batches, scored titles and classified texts all come through it."""
    width = int(lengths.max()) if width is None else width
    positions = np.arange(width)
    real = positions[None, :] < lengths[:, None]
    index = np.where(real, starts[:, None] + positions, 0)
    ids = np.where(real, tokens[index] if len(tokens) else 0, 0).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(real)


def pad_id_lists(rows: Sequence[Sequence[int]], width: int | None = None) -> tuple:
    """pad_rows for rows given as lists of ids."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
    return pad_rows(flat, starts, lengths, width)


def padded_records(split: TokenSplit, records: np.ndarray, max_length: int | None) -> Batch:
    """Whole records as rows, right-padded: inputs, next-token targets (-100 at padding, so the loss
    ignores it), a padding mask (True on real input tokens) and the records' values ("rating", ...).
    Records longer than max_length + 1 tokens are cut to fit."""
    starts = split.offsets[records]
    lengths = split.offsets[records + 1] - starts
    if max_length is not None:
        lengths = np.minimum(lengths, max_length + 1)
    tokens, real = pad_rows(split.tokens, starts, lengths)
    targets = tokens[:, 1:].masked_fill(~real[:, 1:], -100)
    batch = {"inputs": tokens[:, :-1], "targets": targets, "padding_mask": real[:, :-1]}
    for name, values in split.values.items():
        batch[name] = torch.from_numpy(np.asarray(values[records]))
    return batch


@dataclass(frozen=True)
class RecordBatching:
    """One record per row (a title, a sentence), padded: for models of whole items.

    Each epoch shuffles the records (seeded by (seed, epoch)), sorts them by length within pools
    of `batch_size * pool_batches` records so a batch holds similar lengths (little compute spent
    on padding), and shuffles the batch order. Step k's batch depends on (seed, rank, k) only.
    """

    batch_size: int
    max_length: int | None = None  # default: what the model takes (bound by connect)
    pool_batches: int = 50
    repeat_batches: int | None = None

    def __post_init__(self) -> None:
        _require_counts(self, ("batch_size", "max_length", "pool_batches", "repeat_batches"))

    def connected(self, needs: DataNeeds) -> RecordBatching:
        """Rows cut to what the model takes, unless data.batching.max_length says shorter."""
        too_long = (
            "is longer than the model takes: at most {} tokens "
            "(its block_size less one position per condition prefix)"
        )
        return _bounded(self, "max_length", needs.record_length, too_long)

    def epoch_plan(self, lengths: np.ndarray, seed: int, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of record indices) of one epoch, in training order."""
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(lengths))
        pool = self.batch_size * self.pool_batches
        batches = []
        for begin in range(0, len(order), pool):
            chunk = order[begin : begin + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def train_loader(
        self, split: TokenSplit, seed: int, rank: int = 0, world_size: int = 1
    ) -> StepBatchLoader:
        if split.n_records == 0:
            raise MovielabError("the training split has no records")
        lengths = split.lengths
        n_batches = math.ceil(split.n_records / self.batch_size)
        plans: dict[int, list[np.ndarray]] = {}

        def draw(step: int) -> Batch:
            if self.repeat_batches:
                step %= self.repeat_batches
            epoch, index = divmod(step * world_size + rank, n_batches)
            if epoch not in plans:
                plans.clear()  # keep one epoch's plan in memory
                plans[epoch] = self.epoch_plan(lengths, seed, epoch)
            return padded_records(split, plans[epoch][index], self.max_length)

        return StepBatchLoader(draw, math.ceil(n_batches / world_size))

    def val_loader(self, split: TokenSplit, rank: int = 0, world_size: int = 1) -> FixedBatches:
        """Every validation record once, sorted by length, sharded by rank."""
        _require_a_shard_per_rank(split.n_records, "records", world_size)
        order = np.argsort(split.lengths, kind="stable")[rank::world_size]
        return FixedBatches(
            [
                padded_records(split, order[i : i + self.batch_size], self.max_length)
                for i in range(0, len(order), self.batch_size)
            ]
        )
