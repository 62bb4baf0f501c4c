"""A run's data without a trainer: a reader, a template, a tokenizer and a batching, prepared into
token data. Training wraps it in a LightningDataModule (movielab.data.datamodule); evaluation,
which only reads the held-out texts, uses it as it is and never imports Lightning."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

from movielab.data.contract import DataFacts, DataNeeds
from movielab.data.genres import GenreVocabulary
from movielab.data.preparation import Reader, prepare_token_data
from movielab.data.templates import Template
from movielab.data.token_cache import TokenData
from movielab.data.tokenizers import Tokenizer, TokenizerSpec
from movielab.errors import MovielabError

log = logging.getLogger(__name__)


def bundled_sample(name: str) -> Path:
    return Path(str(resources.files("movielab.data") / "samples" / name))


class TextData:
    """`path` is the user's file; without it the bundled `sample` is used and a line says so.

    What the model needs is bound by `connect(needs)` before the data is prepared; the token data is
    prepared by `setup()` (or `prepare()`, callable before a Trainer exists), and `facts()` is what
    the model is then bound to (vocabulary, genres, rating scale).
    `rating_scale` [low, high] states the file's rating scale (e.g. [0, 10] for IMDb, [0.5, 5] for
    Letterboxd stars): rating-conditioned models read it, and ratings outside it are an error.
    """

    def __init__(
        self,
        reader: Reader,
        template: Template,
        tokenizer: TokenizerSpec,
        batching: Any,
        path: str | None = None,
        sample: str | None = None,
        source_hint: str = "",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        cache_dir: str = "outputs/cache/tokens",
        genre_min_count: int = 1,
        max_tokens: int | None = None,
        rating_scale: list[float] | None = None,
    ) -> None:
        super().__init__()  # cooperative: TextDataModule adds LightningDataModule after it
        self.reader = reader
        self.template = template
        self.tokenizer_spec = tokenizer
        self.batching = batching
        self.path = path
        self.sample = sample
        self.source_hint = source_hint
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.seed = seed
        self.cache_dir = cache_dir
        self.genre_min_count = genre_min_count
        self.max_tokens = max_tokens
        self.rating_scale = rating_scale
        self.data: TokenData | None = None

    def connect(self, needs: DataNeeds) -> None:
        """Bind what the model needs, once, before preparation (litgpt's DataModule.connect): batch
        windows and rows as long as it takes, records it cannot hold dropped, its own tokenizer."""
        if self.data is not None:
            raise RuntimeError("connect() must come before the data is prepared")
        self.batching = self.batching.connected(needs)
        if needs.max_record_tokens is not None:
            self.max_tokens = min(self.max_tokens or needs.max_record_tokens, needs.max_record_tokens)
        if needs.tokenizer is not None and needs.tokenizer != self.tokenizer_spec:
            log.info("The model brings its own tokenizer: %s", needs.tokenizer.kind)
            self.tokenizer_spec = needs.tokenizer

    def facts(self) -> DataFacts:
        """What the prepared data tells the model: its tokenizer, genres and rating scale."""
        data = self.prepare()
        return DataFacts(
            tokenizer=data.tokenizer,
            genres=tuple(data.stats.get("genres", ())),
            genres_below_min_count=int(data.stats.get("genres_below_min_count", 0)),
            genre_min_count=self.genre_min_count,
            rating_scale=None
            if self.rating_scale is None
            else (float(self.rating_scale[0]), float(self.rating_scale[1])),
            batch_size=self.batching.batch_size,
            train_genre_labels=data.train.values.get("genres"),
        )

    def resolve_path(self) -> Path:
        if self.path is None:
            if self.sample is None:
                raise MovielabError(f"data.path is required: point it at your file ({self.source_hint})")
            sample = bundled_sample(self.sample)
            log.info(
                "No data.path given: training on the bundled sample %s (invented data). "
                "For real data add data.path=/path/to/your/file (%s)",
                sample.name,
                self.source_hint,
            )
            return sample
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise MovielabError(f"data file not found: {path} (expected {self.source_hint})")
        return path

    def prepare(self) -> TokenData:
        if self.data is None:
            self.data = prepare_token_data(
                self.resolve_path(),
                self.reader,
                self.template,
                self.tokenizer_spec,
                self.val_fraction,
                self.split_seed,
                self.cache_dir,
                self.genre_min_count,
                max_tokens=self.max_tokens,
            )
            self._check_rating_scale(self.data)
        return self.data

    def _check_rating_scale(self, data: TokenData) -> None:
        if self.rating_scale is None:
            return
        low, high = self.rating_scale
        for split in (data.train, data.val):
            ratings = split.values.get("rating")
            outside = ratings[(ratings < low) | (ratings > high)] if ratings is not None else []
            if len(outside):
                raise MovielabError(
                    f"{data.stats['source']}: rating {float(outside[0]):g} is outside data.rating_scale="
                    f"[{low:g}, {high:g}]; set data.rating_scale to the file's scale"
                )

    @property
    def tokenizer(self) -> Tokenizer:
        return self.prepare().tokenizer

    @property
    def genre_vocabulary(self) -> GenreVocabulary:
        """The genres of the training split (empty when the data has none): multi-hot columns."""
        return GenreVocabulary(tuple(self.prepare().stats.get("genres", ())))

    @property
    def fingerprint(self) -> str:
        return self.prepare().fingerprint
