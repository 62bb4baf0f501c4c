"""Character-level tokenizer: one id per character seen in training, id 0 for anything unseen."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from movielab.data.tokenizers.base import Tokenizer, register_tokenizer

UNKNOWN = "\ufffd"
CODE_POINTS = 0x110000


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class CharLearner:
    """Marks every code point of the training texts in a table, chunk by chunk (4.5 MB, whatever
    the data's size)."""

    def __init__(self) -> None:
        self.seen = np.zeros(CODE_POINTS, dtype=bool)

    def add(self, texts: Sequence[str]) -> None:
        self.seen[_code_points("".join(texts))] = True

    def finish(self) -> CharTokenizer:
        return CharTokenizer([chr(code) for code in np.flatnonzero(self.seen).tolist()])


@register_tokenizer
class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = [UNKNOWN, *sorted(set(chars) - {UNKNOWN})]

    @classmethod
    def learner(cls, n_texts: int, **options: Any) -> CharLearner:
        if options:
            raise TypeError(f"CharTokenizer takes no options, got {sorted(options)}")
        return CharLearner()

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def unknown_id(self) -> int:
        return 0

    @cached_property
    def _ids_by_code(self) -> np.ndarray:
        """Id of every code point up to the largest known one, plus a last entry (unknown) that
        larger code points are clipped to: encoding is one table lookup per character."""
        codes = [ord(c) for c in self.chars[1:]]
        table = np.zeros(max(codes, default=0) + 2, dtype=np.int64)
        table[codes] = np.arange(1, len(codes) + 1)
        return table

    def _ids(self, codes: np.ndarray) -> np.ndarray:
        table = self._ids_by_code
        return table[np.minimum(codes, len(table) - 1)]

    def encode(self, text: str) -> np.ndarray:
        return self._ids(_code_points(text))

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        return self._ids(_code_points("".join(texts))), lengths

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        chars = self.chars
        ids = ids if isinstance(ids, list) else np.asarray(ids).tolist()
        if ids and (min(ids) < 0 or max(ids) >= len(chars)):
            return "".join(chars[i] if 0 <= i < len(chars) else UNKNOWN for i in ids)
        return "".join(map(chars.__getitem__, ids))  # the common case, called every decoding step

    def state_dict(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars[1:])}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> CharTokenizer:
        return cls(list(state["chars"]))
