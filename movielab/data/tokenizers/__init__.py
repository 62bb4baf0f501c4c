"""Tokenizers share one interface so every model, the cache and checkpoints handle them alike."""

from movielab.data.tokenizers.base import (
    Tokenizer,
    TokenizerSpec,
    register_tokenizer,
    tokenizer_from_state,
)
from movielab.data.tokenizers.char import CharTokenizer
from movielab.data.tokenizers.hf import HFTokenizer
from movielab.data.tokenizers.sentencepiece import SentencePieceTokenizer
from movielab.data.tokenizers.word import WordTokenizer

__all__ = [
    "CharTokenizer",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TokenizerSpec",
    "WordTokenizer",
    "register_tokenizer",
    "tokenizer_from_state",
]
