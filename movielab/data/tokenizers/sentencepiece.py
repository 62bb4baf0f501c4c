"""SentencePiece subwords (BPE by default, or unigram), trained in memory on the training split.

The trained model is a protobuf; its bytes (base64) are the tokenizer's JSON state, so it travels
inside checkpoints loaded with weights_only=True and in the token cache (which makes a second
preparation of the same data reuse it instead of training again).

sentencepiece holds its whole input in memory, so it learns from a bounded sample of the training
texts: at most `input_sentence_size` of them (SAMPLE_SENTENCES by default), chosen at random with a
fixed seed, as sentencepiece's own option of that name does. Smaller training sets are used whole.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import sentencepiece as spm

from movielab.data.tokenizers.base import Tokenizer, register_tokenizer
from movielab.errors import MovielabError

MODEL_TYPES = ("bpe", "unigram")
SAMPLE_SENTENCES = 1_000_000
SAMPLE_SEED = 0


class SampleLearner:
    """Keeps a fixed random sample of `size` of the `n_texts` texts it is fed (all of them, in order,
    when there are no more than `size`), then trains on them."""

    def __init__(self, n_texts: int, size: int, train: Callable[[list[str]], Tokenizer]) -> None:
        if n_texts > size:
            chosen = np.random.default_rng(SAMPLE_SEED).choice(n_texts, size, replace=False)
        else:
            chosen = np.arange(n_texts)
        self.wanted = np.zeros(n_texts, dtype=bool)
        self.wanted[chosen] = True
        self.seen = 0
        self.texts: list[str] = []
        self.train = train

    def add(self, texts: Sequence[str]) -> None:
        wanted = self.wanted[self.seen : self.seen + len(texts)]
        self.texts.extend(text for text, keep in zip(texts, wanted, strict=False) if keep)
        self.seen += len(texts)

    def finish(self) -> Tokenizer:
        return self.train(self.texts)


@register_tokenizer
class SentencePieceTokenizer(Tokenizer):
    """`user_defined_symbols` are always one piece each: give a template's stop marker (e.g. "<end>")
    so a record's end is a single token that generation stops at."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, user_defined_symbols: Sequence[str] = ()) -> None:
        self.model_proto = model_proto
        self.user_defined_symbols = tuple(user_defined_symbols)
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        self._space_id = self.processor.piece_to_id("\u2581")
        self._symbol_ids = {self.processor.piece_to_id(s) for s in self.user_defined_symbols}

    @classmethod
    def learner(
        cls,
        n_texts: int,
        vocab_size: int = 1024,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        user_defined_symbols: Sequence[str] = (),
        **options: Any,
    ) -> SampleLearner:
        """`vocab_size` is an upper limit: a small training set yields fewer pieces. Other options go
        to sentencepiece's trainer (e.g. normalization_rule_name="identity" keeps text as written)."""
        if model_type not in MODEL_TYPES:
            raise MovielabError(
                f"data.tokenizer.options.model_type='{model_type}' is not one of {', '.join(MODEL_TYPES)}"
            )
        size = int(options.get("input_sentence_size") or SAMPLE_SENTENCES)
        symbols = [s for s in user_defined_symbols if s]
        settings = dict(
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            user_defined_symbols=symbols,
            **options,
        )
        return SampleLearner(n_texts, size, lambda texts: cls._train_model(texts, symbols, settings))

    @classmethod
    def _train_model(
        cls, texts: list[str], symbols: list[str], settings: dict[str, Any]
    ) -> SentencePieceTokenizer:
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts),
                model_writer=model,
                hard_vocab_limit=False,
                minloglevel=2,
                **settings,
            )
        except (RuntimeError, ValueError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise MovielabError(f"sentencepiece training failed (data.tokenizer.options): {reason}") from None
        return cls(model.getvalue(), symbols)

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def _without_leading_space(self, text: str, ids: list[int]) -> list[int]:
        # "<end>" alone encodes as ["▁", "<end>"] (the dummy-prefix space): drop that space, so a
        # stop marker encodes to exactly the one token it is inside a record
        if (
            len(ids) >= 2
            and ids[0] == self._space_id
            and ids[1] in self._symbol_ids
            and not text[:1].isspace()
        ):
            return ids[1:]
        return ids

    def encode(self, text: str) -> np.ndarray:
        return np.array(self._without_leading_space(text, self.processor.encode(text)), dtype=np.int64)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        encoded = self.processor.encode(list(texts))
        return [
            np.array(self._without_leading_space(t, ids), dtype=np.int64)
            for t, ids in zip(texts, encoded, strict=True)
        ]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        size = self.vocab_size
        return self.processor.decode([i for i in np.asarray(ids).tolist() if 0 <= i < size])

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": base64.b64encode(self.model_proto).decode("ascii"),
            "user_defined_symbols": list(self.user_defined_symbols),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> SentencePieceTokenizer:
        return cls(base64.b64decode(state["model"]), state.get("user_defined_symbols", ()))
