"""Training texts by fingerprint: the one copy-rate check (generated samples that are a training
text), kept in every checkpoint at 8 bytes a training record instead of the data itself.

A text's fingerprint is 8 bytes of a hash of the text normalised as `normalize` does (case and
spacing ignored), so `generate avoid_training_titles=true`, the server's "copies a training text"
flag and the evaluations need nothing but the checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import torch


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


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
        """Share of samples that are exact copies of a training text (case and spacing ignored)."""
        return sum(s in self for s in samples) / max(1, len(samples))

    def to_tensor(self) -> torch.Tensor:
        return torch.tensor(sorted(self.fingerprints), dtype=torch.int64)

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor) -> TextIndex:
        return cls(tensor.tolist())
