"""File -> records -> filtered, split, tokenized and cached token ids: the one path every model uses."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from movielab.data.genres import GenreVocabulary
from movielab.data.records import Record
from movielab.data.split import split_indices
from movielab.data.templates import Template
from movielab.data.token_cache import (
    TokenData,
    TokenSplit,
    cache_key,
    encode_split,
    file_digest,
    load_token_cache,
    save_token_cache,
)
from movielab.data.tokenizers import TokenizerSpec
from movielab.errors import MovielabError

log = logging.getLogger(__name__)


class Reader(Protocol):
    def read(self, path: str | Path, required: Any = ()) -> Any: ...


def keep_complete_records(records: list[Record], required: tuple[str, ...]) -> tuple[list[Record], Counter]:
    """Drop records missing a field the template needs; count the drops by field."""
    kept, skipped = [], Counter()
    for record in records:
        missing = next((name for name in required if not record.has(name)), None)
        if missing is None:
            kept.append(record)
        else:
            skipped[missing] += 1
    return kept, skipped


def record_values(records: list[Record], genres: GenreVocabulary | None = None) -> dict[str, np.ndarray]:
    """Per-record arrays stored beside the tokens (conditions and labels of later models).

    With a non-empty genre vocabulary, "genres" is a (records, genres) uint8 multi-hot array whose
    columns follow `genres.names`; genres outside the vocabulary are ignored.
    """
    ratings = np.array([np.nan if r.rating is None else r.rating for r in records], dtype=np.float32)
    values = {"rating": ratings}
    if genres:
        values["genres"] = genres.multi_hot([r.genres for r in records])
    return values


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
    keep = ~drop
    offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(split.offsets.dtype)
    tokens = split.tokens[np.repeat(keep, lengths)]
    return TokenSplit(tokens, offsets, {k: v[keep] for k, v in split.values.items()}), counts


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
) -> TokenData:
    """`genre_min_count`: a genre enters the vocabulary (stats["genres"]) when at least this many
    training records have it. `max_tokens`: drop (and count) records longer than this many tokens;
    records with no tokens are always dropped."""
    # a reader may read files besides `path` (IMDb ratings beside title.basics.tsv): their content counts too
    companions = [file_digest(p) for p in getattr(reader, "companion_files", lambda _: [])(path)]
    key = cache_key(
        file_digest(path),
        *companions,
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

    records = list(reader.read(path, required=template.fields))
    kept, skipped = keep_complete_records(records, template.fields)
    for field_name, count in skipped.items():
        log.info("%s: skipped %d of %d records with no %s", path.name, count, len(records), field_name)
    if not kept:
        raise MovielabError(
            f"{path}: no records left after filtering ({len(records)} read, all missing "
            f"{', '.join(skipped) or 'text'}); check data.reader and data.template"
        )
    train_idx, val_idx = split_indices(len(kept), val_fraction, split_seed)
    texts = [template.render(record) for record in kept]
    trained = tokenizer.train([texts[i] for i in train_idx])
    genres = GenreVocabulary.from_genre_lists([kept[i].genres for i in train_idx], genre_min_count)
    values = record_values(kept, genres)
    train = encode_split(trained, [texts[i] for i in train_idx], {k: v[train_idx] for k, v in values.items()})
    val = encode_split(trained, [texts[i] for i in val_idx], {k: v[val_idx] for k, v in values.items()})
    n_encoded = {"train": train.n_records, "val": val.n_records}
    train, dropped_train = drop_by_length(train, max_tokens)
    val, dropped_val = drop_by_length(val, max_tokens)
    dropped = {"train": dropped_train, "val": dropped_val}
    for name, counts in dropped.items():
        for reason, count in counts.items():
            log.info("%s: dropped %d of %d %s records: %s", path.name, count, n_encoded[name], name, reason)
    if train.n_records == 0:
        raise MovielabError(
            f"{path}: every training record was dropped ({dropped_train}); raise data.max_tokens"
        )
    stats = {
        "source": str(path),
        "records_read": len(records),
        "records_skipped": dict(skipped),
        "records_dropped": dropped,
        "train_records": train.n_records,
        "val_records": val.n_records,
        "train_tokens": int(len(train.tokens)),
        "val_tokens": int(len(val.tokens)),
        "vocab_size": trained.vocab_size,
        "genres": list(genres.names),  # the genre vocabulary, from the training split
    }
    log.info(
        "%s: %d records -> %d train / %d val, %d / %d tokens, vocabulary %d",
        path.name,
        len(kept),
        train.n_records,
        val.n_records,
        len(train.tokens),
        len(val.tokens),
        trained.vocab_size,
    )
    return save_token_cache(cache_dir, key, trained, train, val, stats)
