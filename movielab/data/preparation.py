"""File -> records -> filtered, split, tokenized and cached token ids: the one path every model uses."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from movielab.data.records import Record
from movielab.data.split import split_indices
from movielab.data.templates import Template
from movielab.data.token_cache import (
    TokenData,
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


def record_values(records: list[Record]) -> dict[str, np.ndarray]:
    """Per-record arrays stored beside the tokens (conditions and labels of later models)."""
    ratings = np.array([np.nan if r.rating is None else r.rating for r in records], dtype=np.float32)
    return {"rating": ratings}


def prepare_token_data(
    path: Path,
    reader: Reader,
    template: Template,
    tokenizer: TokenizerSpec,
    val_fraction: float,
    split_seed: int,
    cache_dir: str | Path,
) -> TokenData:
    key = cache_key(file_digest(path), reader, template, tokenizer, val_fraction, split_seed)
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
    values = record_values(kept)
    train = encode_split(trained, [texts[i] for i in train_idx], {k: v[train_idx] for k, v in values.items()})
    val = encode_split(trained, [texts[i] for i in val_idx], {k: v[val_idx] for k, v in values.items()})
    stats = {
        "source": str(path),
        "records_read": len(records),
        "records_skipped": dict(skipped),
        "train_records": train.n_records,
        "val_records": val.n_records,
        "train_tokens": int(len(train.tokens)),
        "val_tokens": int(len(val.tokens)),
        "vocab_size": trained.vocab_size,
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
