"""The tokenizer interface, its registry, and the spec that names which tokenizer to train."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from movielab.errors import MovielabError

_REGISTRY: dict[str, type[Tokenizer]] = {}


class VocabularyLearner(Protocol):
    """Learns a tokenizer from training texts fed in chunks, so preparation never holds them all:
    `add` each chunk in the same order every run, then `finish` once."""

    def add(self, texts: Sequence[str]) -> None: ...

    def finish(self) -> Tokenizer: ...


class Tokenizer(ABC):
    """Text <-> token ids. Trained on the training split; its state is plain JSON so it can live
    inside a checkpoint loaded with `weights_only=True` and beside the run as tokenizer.json."""

    kind: ClassVar[str]
    # the id of what the tokenizer did not see in training (None: it reads any text), never sampled
    unknown_id: int | None = None

    @classmethod
    @abstractmethod
    def learner(cls, n_texts: int, **options: Any) -> VocabularyLearner:
        """A learner for `n_texts` training texts (the count lets it choose a bounded sample up front);
        bad options are refused here, before any text is read."""

    @classmethod
    def train(cls, texts: Sequence[str], **options: Any) -> Tokenizer:
        """Build the vocabulary from training texts held in memory (small data, tests)."""
        learner = cls.learner(len(texts), **options)
        learner.add(texts)
        return learner.finish()

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, text: str) -> np.ndarray:
        """Token ids as an integer array."""

    @abstractmethod
    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state, without the "kind" key (added by `to_state`)."""

    @classmethod
    @abstractmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Tokenizer: ...

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode(text) for text in texts]

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of all `texts` as one flat int64 array, and each text's number of ids: the token
        cache's layout, so a chunk of records is appended with no per-record arrays kept."""
        encoded = self.encode_batch(texts)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ids = np.concatenate(encoded).astype(np.int64, copy=False) if encoded else np.zeros(0, np.int64)
        return ids, lengths

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.state_dict()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_state(), ensure_ascii=False), encoding="utf-8")


def register_tokenizer(cls: type[Tokenizer]) -> type[Tokenizer]:
    """Class decorator: make a tokenizer available to TokenizerSpec and checkpoints by its `kind`."""
    _REGISTRY[cls.kind] = cls
    return cls


def _tokenizer_class(kind: str) -> type[Tokenizer]:
    if kind not in _REGISTRY:
        raise MovielabError(f"unknown tokenizer kind '{kind}'; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def tokenizer_from_state(state: Mapping[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer saved by `Tokenizer.to_state` (e.g. from a checkpoint)."""
    state = dict(state)
    return _tokenizer_class(state.pop("kind")).from_state_dict(state)


@dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer to train and with what options; its repr is part of the token-cache key."""

    kind: str = "char"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _tokenizer_class(self.kind)

    def train(self, texts: Sequence[str]) -> Tokenizer:
        return _tokenizer_class(self.kind).train(texts, **dict(self.options))

    def learner(self, n_texts: int) -> VocabularyLearner:
        return _tokenizer_class(self.kind).learner(n_texts, **dict(self.options))
