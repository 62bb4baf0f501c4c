"""File -> records -> filtered, split, tokenized and cached token ids: the one path every model uses.

Preparation streams, so its memory does not grow with the file. The input is read once: each
kept record's rendered text and values are appended to a spill file in the cache's staging folder
(RecordSpill). With the record count known, the split is drawn exactly as split_indices always
drew it; then the spill is read twice, in chunks: once to learn the tokenizer's vocabulary and the
genre vocabulary from the training records, once to encode every record and append it to its
split's files. Memory holds one chunk, the vocabularies and one byte per record (its split).
"""

from __future__ import annotations

import logging
import os
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from movielab.data.genres import GenreVocabulary, normalize_genres
from movielab.data.split import split_indices
from movielab.data.templates import Template
from movielab.data.token_cache import (
    SPLITS,
    TokenCacheBuilder,
    TokenData,
    TokenSplit,
    cache_key,
    file_digest,
    load_token_cache,
    token_dtype,
)
from movielab.data.tokenizers import Tokenizer, TokenizerSpec
from movielab.errors import MovielabError

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 << 20  # rendered text (UTF-8) per chunk of the learning and encoding passes
RECORD_BLOCK = 1 << 16  # per-record values buffered (written) and read at a time
PROGRESS_SECONDS = 10.0


class Reader(Protocol):
    def read(self, path: str | Path, required: Any = ()) -> Any: ...

    def companion_files(self, path: str | Path) -> list[Path]: ...


@dataclass(frozen=True)
class FileState:
    """What changes when a file is written to: compared before and after reading it."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileState:
        stat = os.stat(path)
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino)


def require_unchanged(path: Path, before: FileState) -> None:
    after = FileState.of(path)
    if after != before:
        raise MovielabError(
            f"{path} changed while it was being read ({before.size} -> {after.size} bytes, modified "
            f"again); prepare once the file is complete and nothing writes to it"
        )


class Progress:
    """A log line every `interval` seconds with the records done and the rate, so a long
    preparation shows it is moving while short ones (and tests) stay quiet."""

    def __init__(self, label: str, interval: float, total: int | None = None) -> None:
        self.label, self.interval, self.total = label, interval, total
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        of_total = f" of {self.total:,}" if self.total else ""
        log.info("%s: %s%s records (%s records/s)", self.label, f"{done:,}", of_total, self.rate(done))

    def rate(self, done: int) -> str:
        return f"{done / max(time.monotonic() - self.start, 1e-9):,.0f}"


class GenreIds:
    """Canonical genre names (genres.normalize_genres) as small integers, in order of first
    appearance; the names of repeated genre lists are looked up once."""

    MEMO_SIZE = 100_000

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self.memo: dict[tuple[str, ...], list[int]] = {}

    def of(self, genres: tuple[str, ...]) -> list[int]:
        if not genres:
            return []
        known = self.memo.get(genres)
        if known is not None:
            return known
        ids = []
        for name in normalize_genres(genres):
            if name not in self.ids:
                self.ids[name] = len(self.names)
                self.names.append(name)
            ids.append(self.ids[name])
        if len(self.memo) < self.MEMO_SIZE:
            self.memo[genres] = ids
        return ids


@dataclass(frozen=True)
class SpillChunk:
    start: int  # index of the chunk's first record among all kept records
    texts: list[str]
    ratings: np.ndarray  # float32, NaN where the record has none
    genre_lengths: np.ndarray  # number of genre ids of each record
    genre_ids: np.ndarray  # the records' GenreIds, concatenated

    @property
    def n_records(self) -> int:
        return len(self.texts)


class RecordSpill:
    """The kept records' rendered texts (UTF-8, concatenated) and values, appended to files in
    `folder` as they are read, then read back in chunks of about CHUNK_BYTES of text."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = {
            name: open(folder / f"{name}.bin", "wb")  # noqa: SIM115 (closed by close())
            for name in ("texts", "text_ends", "ratings", "genre_ends", "genre_ids")
        }
        self.buffers = {
            "text_ends": array("q"),
            "ratings": array("f"),
            "genre_ends": array("q"),
            "genre_ids": array("q"),
        }
        self.text_bytes = self.n_genres = self.n_records = 0

    def add(self, text: str, rating: float | None, genre_ids: list[int]) -> None:
        data = text.encode("utf-8")
        self.files["texts"].write(data)
        self.text_bytes += len(data)
        self.n_genres += len(genre_ids)
        buffers = self.buffers
        buffers["text_ends"].append(self.text_bytes)
        buffers["ratings"].append(np.nan if rating is None else rating)
        buffers["genre_ends"].append(self.n_genres)
        buffers["genre_ids"].extend(genre_ids)
        self.n_records += 1
        if len(buffers["text_ends"]) >= RECORD_BLOCK:
            self._flush()

    def _flush(self) -> None:
        for name, buffer in self.buffers.items():
            self.files[name].write(buffer.tobytes())
            del buffer[:]

    def close(self) -> None:
        self._flush()
        for handle in self.files.values():
            handle.close()

    def chunks(self) -> Iterator[SpillChunk]:
        dtypes = {"text_ends": np.int64, "ratings": np.float32, "genre_ends": np.int64, "genre_ids": np.int64}
        handles = {name: open(self.folder / f"{name}.bin", "rb") for name in self.files}  # noqa: SIM115
        try:
            text_start = genre_start = 0
            for block_start in range(0, self.n_records, RECORD_BLOCK):
                count = min(RECORD_BLOCK, self.n_records - block_start)
                block = {
                    n: _read_array(handles[n], dtypes[n], count)
                    for n in ("text_ends", "ratings", "genre_ends")
                }
                first = 0
                while first < count:
                    # records up to CHUNK_BYTES of text past this chunk's start, at least one
                    last = max(first + 1, int(np.searchsorted(block["text_ends"], text_start + CHUNK_BYTES)))
                    last = min(last, count)
                    text_ends = block["text_ends"][first:last] - text_start
                    data = handles["texts"].read(int(text_ends[-1]))
                    starts = np.concatenate([[0], text_ends[:-1]]).tolist()
                    texts = [
                        data[a:b].decode("utf-8") for a, b in zip(starts, text_ends.tolist(), strict=True)
                    ]
                    genre_ends = block["genre_ends"][first:last] - genre_start
                    yield SpillChunk(
                        start=block_start + first,
                        texts=texts,
                        ratings=block["ratings"][first:last],
                        genre_lengths=np.diff(genre_ends, prepend=0),
                        genre_ids=_read_array(handles["genre_ids"], dtypes["genre_ids"], int(genre_ends[-1])),
                    )
                    text_start += int(text_ends[-1])
                    genre_start += int(genre_ends[-1])
                    first = last
        finally:
            for handle in handles.values():
                handle.close()


def _read_array(handle: BinaryIO, dtype: type, count: int) -> np.ndarray:
    return np.frombuffer(handle.read(count * np.dtype(dtype).itemsize), dtype=dtype)


def select_records(split: TokenSplit, keep: np.ndarray) -> TokenSplit:
    """The records where `keep` is True, with their tokens and values, in order."""
    lengths = split.lengths
    offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    tokens = split.tokens[np.repeat(keep, lengths)]
    return TokenSplit(tokens, offsets, {k: v[keep] for k, v in split.values.items()})


def drop_by_length(split: TokenSplit, max_tokens: int | None) -> tuple[TokenSplit, dict[str, int]]:
    """Drop records with no tokens or more than `max_tokens`; return what is left and the counts
    by reason (so nothing disappears without a line in the log and the cache stats)."""
    lengths = split.lengths
    reasons = {"no tokens": lengths == 0}
    if max_tokens is not None:
        reasons[f"longer than max_tokens={max_tokens}"] = lengths > max_tokens
    drop = np.logical_or.reduce(list(reasons.values()))
    counts = {reason: int(mask.sum()) for reason, mask in reasons.items() if mask.any()}
    if not drop.any():
        return split, counts
    return select_records(split, ~drop), counts


def multi_hot(chunk: SpillChunk, column_of: np.ndarray, n_columns: int) -> np.ndarray:
    """(records, n_columns) uint8: 1 where a record has the genre of that column (GenreVocabulary's
    layout); `column_of` maps a GenreIds id to its column, -1 for genres outside the vocabulary."""
    hot = np.zeros((chunk.n_records, n_columns), dtype=np.uint8)
    rows = np.repeat(np.arange(chunk.n_records), chunk.genre_lengths)
    columns = column_of[chunk.genre_ids]
    known = columns >= 0
    hot[rows[known], columns[known]] = 1
    return hot


def spill_records(
    path: Path, reader: Reader, template: Template, spill: RecordSpill, genre_ids: GenreIds, progress: float
) -> tuple[int, Counter]:
    """The one pass over the input: kept records go to the spill; returns (records read, skipped
    records counted by the first template field they miss)."""
    required = template.fields
    read, skipped = 0, Counter()
    shown = Progress(f"{path.name}: read", progress)
    for record in reader.read(path, required=required):
        read += 1
        missing = next((name for name in required if not record.has(name)), None)
        if missing is not None:
            skipped[missing] += 1
        else:
            spill.add(template.render(record), record.rating, genre_ids.of(record.genres))
        if not read % 1024:
            shown.update(read)
    spill.close()
    return read, skipped


@dataclass(frozen=True)
class Vocabularies:
    tokenizer: Tokenizer
    genres: GenreVocabulary
    genre_column: np.ndarray  # GenreIds id -> column in `genres`, -1 when left out
    genres_below_min_count: int
    genre_counts: dict[str, int]


def learn_vocabularies(
    spill: RecordSpill,
    is_val: np.ndarray,
    tokenizer: TokenizerSpec,
    genre_ids: GenreIds,
    genre_min_count: int,
    progress: Progress,
) -> Vocabularies:
    """The tokenizer's and the genre vocabulary from the training records only."""
    learner = tokenizer.learner(int((~is_val).sum()))
    counts = np.zeros(len(genre_ids.names), dtype=np.int64)
    for chunk in spill.chunks():
        val = is_val[chunk.start : chunk.start + chunk.n_records]
        learner.add([text for text, in_val in zip(chunk.texts, val.tolist(), strict=True) if not in_val])
        if len(counts):
            train_genres = chunk.genre_ids[~np.repeat(val, chunk.genre_lengths)]
            counts += np.bincount(train_genres, minlength=len(counts))
        progress.update(chunk.start + chunk.n_records)
    names = sorted(genre_ids.names[i] for i in np.flatnonzero(counts >= genre_min_count))
    column = np.full(len(genre_ids.names), -1, dtype=np.int64)
    for position, name in enumerate(names):
        column[genre_ids.ids[name]] = position
    return Vocabularies(
        tokenizer=learner.finish(),
        genres=GenreVocabulary(tuple(names)),
        genre_column=column,
        genres_below_min_count=int(((counts > 0) & (counts < genre_min_count)).sum()),
        genre_counts={name: int(counts[genre_ids.ids[name]]) for name in names},
    )


def prepare_token_data(
    path: Path,
    reader: Reader,
    template: Template,
    tokenizer: TokenizerSpec,
    val_fraction: float,
    split_seed: int,
    cache_dir: str | Path,
    genre_min_count: int = 1,
    max_tokens: int | None = None,
    progress_seconds: float = PROGRESS_SECONDS,
) -> TokenData:
    """`genre_min_count`: a genre enters the vocabulary (stats["genres"]) when at least this many
    training records have it. `max_tokens`: drop (and count) records longer than this many tokens;
    records with no tokens are always dropped. `progress_seconds`: a progress line (records done,
    records/s) this often while preparing."""
    path = Path(path)
    # a reader may read files besides `path` (IMDb ratings beside title.basics.tsv): their content counts too
    inputs = [path, *reader.companion_files(path)]
    states = {p: FileState.of(p) for p in inputs}
    key = cache_key(
        *(file_digest(p) for p in inputs),
        reader,
        template,
        tokenizer,
        val_fraction,
        split_seed,
        genre_min_count,
        max_tokens,
    )
    cached = load_token_cache(cache_dir, key)
    if cached is not None:
        log.info("Tokens for %s loaded from cache %s", path.name, Path(cache_dir) / key)
        return cached

    started = time.monotonic()
    with TokenCacheBuilder(cache_dir, key) as builder:
        spill, genre_ids = RecordSpill(builder.scratch), GenreIds()
        read, skipped = spill_records(path, reader, template, spill, genre_ids, progress_seconds)
        for input_path, before in states.items():
            require_unchanged(input_path, before)
        for field_name, count in skipped.items():
            log.info("%s: skipped %d of %d records with no %s", path.name, count, read, field_name)
        if not spill.n_records:
            raise MovielabError(
                f"{path}: no records left after filtering ({read} read, all missing "
                f"{', '.join(skipped) or 'text'}); check data.reader and data.template"
            )
        if spill.n_records < 2:
            raise MovielabError(
                f"{path}: {spill.n_records} record kept of {read} read, and a train and a validation "
                "split need at least 2; check the skipped counts above, and what data.reader counts "
                "as one record"
            )
        is_val = np.zeros(spill.n_records, dtype=bool)
        is_val[split_indices(spill.n_records, val_fraction, split_seed)[1]] = True

        total = spill.n_records
        learned = learn_vocabularies(
            spill, is_val, tokenizer, genre_ids, genre_min_count,
            Progress(f"{path.name}: learning the vocabulary", progress_seconds, total),
        )  # fmt: skip
        if learned.genres_below_min_count:
            log.info(
                "%s: %d genres fell below genre_min_count=%d (fewer training records) and are left out; "
                "%d kept",
                path.name,
                learned.genres_below_min_count,
                genre_min_count,
                len(learned.genres),
            )
        trained = learned.tokenizer
        values = {"rating": ("float32", ())}
        if learned.genres:
            values["genres"] = ("uint8", (len(learned.genres),))
        writers = {
            name: builder.split_writer(name, token_dtype(trained.vocab_size), values) for name in SPLITS
        }
        encoded = dict.fromkeys(SPLITS, 0)
        dropped: dict[str, Counter] = {name: Counter() for name in SPLITS}
        shown = Progress(f"{path.name}: encoding", progress_seconds, total)
        for chunk in spill.chunks():
            ids, lengths = trained.encode_texts(chunk.texts)
            chunk_values = {"rating": chunk.ratings}
            if learned.genres:
                chunk_values["genres"] = multi_hot(chunk, learned.genre_column, len(learned.genres))
            whole = TokenSplit(ids, np.concatenate([[0], np.cumsum(lengths)]), chunk_values)
            val = is_val[chunk.start : chunk.start + chunk.n_records]
            for name, keep in (("train", ~val), ("val", val)):
                part = select_records(whole, keep)
                encoded[name] += part.n_records
                part, counts = drop_by_length(part, max_tokens)
                dropped[name].update(counts)
                writers[name].append(part)
            shown.update(chunk.start + chunk.n_records)

        for name, counts in dropped.items():
            for reason, count in counts.items():
                log.info("%s: dropped %d of %d %s records: %s", path.name, count, encoded[name], name, reason)
        n_records = {name: writers[name].n_records for name in SPLITS}
        n_tokens = {name: writers[name].n_tokens for name in SPLITS}
        if n_records["train"] == 0:
            raise MovielabError(
                f"{path}: every training record was dropped ({dict(dropped['train'])}); raise data.max_tokens"
            )
        stats = {
            "source": str(path),
            "records_read": read,
            "records_skipped": dict(skipped),
            "records_dropped": {name: dict(counts) for name, counts in dropped.items()},
            "train_records": n_records["train"],
            "val_records": n_records["val"],
            "train_tokens": n_tokens["train"],
            "val_tokens": n_tokens["val"],
            "vocab_size": trained.vocab_size,
            "genres": list(learned.genres.names),  # the genre vocabulary, from the training split
            "genre_min_count": genre_min_count,
            "genre_counts": learned.genre_counts,  # training records per vocabulary genre
            "genres_below_min_count": learned.genres_below_min_count,  # distinct training genres left out
        }
        data = builder.publish(trained, stats)
    log.info(
        "%s: %d records -> %d train / %d val, %d / %d tokens, vocabulary %d (prepared in %.1f s, "
        "%s records/s)",
        path.name,
        total,
        n_records["train"],
        n_records["val"],
        n_tokens["train"],
        n_tokens["val"],
        trained.vocab_size,
        time.monotonic() - started,
        f"{read / max(time.monotonic() - started, 1e-9):,.0f}",
    )
    return data
