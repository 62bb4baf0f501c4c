"""Character-level tokenizer: one id per character seen in training, id 0 for anything unseen."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from movielab.data.tokenizers.base import Tokenizer, register_tokenizer

UNKNOWN = "\ufffd"


@register_tokenizer
class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = [UNKNOWN, *sorted(set(chars) - {UNKNOWN})]
        codes = np.array([ord(c) for c in self.chars[1:]], dtype=np.uint32)
        self._sorted_codes = codes  # sorted because the characters are

    @classmethod
    def train(cls, texts: Sequence[str], **options: Any) -> CharTokenizer:
        if options:
            raise TypeError(f"CharTokenizer takes no options, got {sorted(options)}")
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def unknown_id(self) -> int:
        return 0

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        positions = np.searchsorted(self._sorted_codes, codes)
        clipped = np.minimum(positions, max(len(self._sorted_codes) - 1, 0))
        known = (
            (self._sorted_codes[clipped] == codes) if len(self._sorted_codes) else np.zeros(len(codes), bool)
        )
        return np.where(known, positions + 1, self.unknown_id).astype(np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        chars = self.chars
        return "".join(chars[i] if 0 <= i < len(chars) else UNKNOWN for i in np.asarray(ids).tolist())

    def state_dict(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars[1:])}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> CharTokenizer:
        return cls(list(state["chars"]))
