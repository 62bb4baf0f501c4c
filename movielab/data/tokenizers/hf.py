"""A Hugging Face tokenizer (GPT-2's byte-level BPE, ...) as a movielab tokenizer, for fine-tuning
pretrained models (model=hf_causal_lm). Needs the optional extra: pip install -e ".[hf]".

"Training" loads the pretrained tokenizer (a local folder, or a hub name when downloads are allowed);
its state is the tokenizer's own JSON, so checkpoints and the token cache carry it and loading one
needs no files and no download.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from movielab.data.tokenizers.base import Tokenizer, register_tokenizer
from movielab.errors import MovielabError


def _backend(tokenizer_json: str) -> Any:
    try:
        from tokenizers import Tokenizer as Backend
    except ImportError:
        raise MovielabError(
            'data.tokenizer.kind=hf needs the Hugging Face extra: pip install -e ".[hf]"'
        ) from None
    return Backend.from_str(tokenizer_json)


class PretrainedLearner:
    """A pretrained vocabulary learns nothing from the texts: they are skipped."""

    def __init__(self, pretrained: str) -> None:
        self.pretrained = pretrained

    def add(self, texts: Sequence[str]) -> None:
        pass

    def finish(self) -> HFTokenizer:
        return HFTokenizer.load_pretrained(self.pretrained)


@register_tokenizer
class HFTokenizer(Tokenizer):
    kind = "hf"

    def __init__(self, tokenizer_json: str) -> None:
        self.tokenizer_json = tokenizer_json
        self.backend = _backend(tokenizer_json)

    @classmethod
    def learner(cls, n_texts: int, pretrained: str | None = None, **options: Any) -> PretrainedLearner:
        if options:
            raise TypeError(f"HFTokenizer takes only `pretrained`, got {sorted(options)}")
        if not pretrained:
            raise MovielabError("data.tokenizer.options.pretrained is required: a local folder or a hub name")
        return PretrainedLearner(str(pretrained))

    @classmethod
    def load_pretrained(cls, pretrained: str) -> HFTokenizer:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise MovielabError(
                'model=hf_causal_lm needs the Hugging Face extra: pip install -e ".[hf]"'
            ) from None
        try:
            pretrained_tokenizer = AutoTokenizer.from_pretrained(str(pretrained))
        except (OSError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MovielabError(
                f"cannot load the tokenizer of pretrained={pretrained}: {reason[:160]}"
            ) from None
        if not getattr(pretrained_tokenizer, "is_fast", False):
            raise MovielabError(f"pretrained={pretrained} has no fast (tokenizer.json) tokenizer")
        return cls(pretrained_tokenizer.backend_tokenizer.to_str())

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.backend.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        encoded = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encoded]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.backend.decode([int(i) for i in np.asarray(ids).tolist()], skip_special_tokens=False)

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer_json": self.tokenizer_json}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> HFTokenizer:
        return cls(state["tokenizer_json"])
