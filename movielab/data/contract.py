"""What a model and its data tell each other, each once: the model's needs before the data is
prepared (DataNeeds, bound by TextData.connect), the data's facts after (DataFacts, bound
into the model's spec by movielab.models.spec.connect)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movielab.data.tokenizers import Tokenizer, TokenizerSpec


@dataclass(frozen=True)
class DataNeeds:
    """`window_length`: tokens per training window (the model's context); `record_length`: most
    input tokens of a record row (longer records are cut); `max_record_tokens`: longer records are
    dropped (and counted); `tokenizer`: the model brings its own (a pretrained model's)."""

    window_length: int | None = None
    record_length: int | None = None
    max_record_tokens: int | None = None
    tokenizer: TokenizerSpec | None = None


@dataclass(frozen=True)
class DataFacts:
    tokenizer: Tokenizer
    genres: tuple[str, ...] = ()
    genres_below_min_count: int = 0
    genre_min_count: int = 1
    rating_scale: tuple[float, float] | None = None
    batch_size: int | None = None
    train_genre_labels: np.ndarray | None = None  # (records, genres) multi-hot of the training split
