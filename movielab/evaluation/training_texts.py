"""Fingerprints of the training texts, kept in checkpoints, to spot generated copies of them.

A text's fingerprint is 8 bytes of a hash of the text as movielab.metrics.copy_rate compares it
(case and spacing ignored), so a checkpoint carries 8 bytes a training record instead of the
data, and `generate avoid_training_titles=true` or the conditioning evaluation need nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from movielab.checkpoint import read_checkpoint
from movielab.data.templates import Template
from movielab.data.token_cache import TokenData, TokenSplit
from movielab.data.tokenizers import Tokenizer
from movielab.errors import MovielabError
from movielab.metrics import normalize


def fingerprint(text: str) -> int:
    digest = hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class TextIndex:
    """A set of texts by fingerprint: `text in index`, and the copy rate of samples."""

    def __init__(self, fingerprints: Iterable[int]) -> None:
        self.fingerprints = frozenset(int(f) for f in fingerprints)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TextIndex:
        return cls(fingerprint(t) for t in texts)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and fingerprint(text) in self.fingerprints

    def __len__(self) -> int:
        return len(self.fingerprints)

    def copy_rate(self, samples: Sequence[str]) -> float:
        """Share of samples that are a training text: movielab.metrics.copy_rate, by fingerprint."""
        return sum(s in self for s in samples) / max(1, len(samples))

    def to_tensor(self) -> torch.Tensor:
        return torch.tensor(sorted(self.fingerprints), dtype=torch.int64)

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor) -> TextIndex:
        return cls(tensor.tolist())


def record_texts(tokenizer: Tokenizer, split: TokenSplit, template: Template) -> list[str]:
    """Each record of a split as generation prints it: decoded, cut at the template's stop."""
    texts = []
    for i in range(split.n_records):
        text = tokenizer.decode(split.record_tokens(i))
        if template.stop and template.stop in text:
            text = text[: text.index(template.stop)]
        texts.append(text.rstrip())
    return texts


def training_texts(data: TokenData, template: Template) -> list[str]:
    return record_texts(data.tokenizer, data.train, template)


class TrainingTextIndex(L.Callback):
    """Puts the fingerprints of the training texts into every checkpoint (as this callback's state)."""

    def __init__(self) -> None:
        self.index: TextIndex | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if self.index is None and datamodule is not None:
            self.index = TextIndex.from_texts(training_texts(datamodule.prepare(), datamodule.template))

    def state_dict(self) -> dict[str, Any]:
        return {} if self.index is None else {"fingerprints": self.index.to_tensor()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "fingerprints" in state_dict:
            self.index = TextIndex.from_tensor(state_dict["fingerprints"])


def load_training_index(checkpoint_path: str | Path) -> TextIndex:
    """The training-text fingerprints a checkpoint carries, or a one-line error saying how to get them."""
    state = read_checkpoint(checkpoint_path).get("callbacks", {}).get(TrainingTextIndex.__qualname__, {})
    if "fingerprints" not in state:
        raise MovielabError(
            f"{checkpoint_path} holds no index of its training texts: train with the "
            "movielab.evaluation.TrainingTextIndex callback (callbacks=title_transformer does)"
        )
    return TextIndex.from_tensor(state["fingerprints"])
