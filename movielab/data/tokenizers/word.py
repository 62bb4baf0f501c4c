"""Word-level tokenizer: punctuation marks become tokens of their own, words keep their frequency rank.

Encoding follows the reference TV-script project: each mark in the punctuation table is replaced by
a spaced-out token (`.` -> `||period||`, newline -> `||return||`, ...), the text is optionally
lower-cased and split on whitespace. Decoding puts the marks back where a reader expects them
(attached to the word before, `(` to the word after, quotes alternating), so a sampled script
reads as a script.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from movielab.data.tokenizers.base import Tokenizer, register_tokenizer
from movielab.errors import MovielabError

# the reference table; the order matters only in that no token may contain a later mark
PUNCTUATION = {
    ".": "||period||",
    ",": "||comma||",
    '"': "||quotation_mark||",
    ";": "||semicolon||",
    "!": "||exclamation_mark||",
    "?": "||question_mark||",
    "(": "||left_parentheses||",
    ")": "||right_parentheses||",
    "--": "||dash||",
    "\n": "||return||",
}
UNKNOWN = "<unknown>"
OPENING = {"(", "[", "{"}  # glued to the word after
BOTH_SIDES = {"--", "-", "/"}  # glued to the words on both sides
QUOTES = {'"'}  # opening and closing alternate within a line


class WordLearner:
    """Counts words chunk by chunk; memory grows with the number of distinct words, not the text.

    `tokenizer_options` are WordTokenizer's (unknown, specials, lowercase, punctuation).
    """

    def __init__(self, min_freq: int, max_size: int | None, **tokenizer_options: Any) -> None:
        self.min_freq, self.max_size, self.options = min_freq, max_size, tokenizer_options
        unknown = tokenizer_options["unknown"]
        self.reserved = list(dict.fromkeys([*tokenizer_options["specials"], unknown]))
        self.words = WordTokenizer([unknown], **{**tokenizer_options, "specials": ()}).words
        self.counts: Counter[str] = Counter()

    def add(self, texts: Sequence[str]) -> None:
        for text in texts:
            self.counts.update(self.words(text))

    def finish(self) -> WordTokenizer:
        """Ties keep the order of first appearance (Counter.most_common is stable)."""
        words = [w for w, n in self.counts.most_common() if n >= self.min_freq and w not in self.reserved]
        if self.max_size is not None:
            words = words[: self.max_size - len(self.reserved)]
        return WordTokenizer([*self.reserved, *words], **self.options)


@register_tokenizer
class WordTokenizer(Tokenizer):
    """Vocabulary = `specials` (in the order given, so e.g. <pad> can be id 0), the unknown token,
    then the words by descending frequency (ties in order of first appearance).

    Text equal to a special token (e.g. "<start>" in a template) encodes to that token's id; words
    outside the vocabulary encode to the unknown id; decode renders specials verbatim.
    """

    kind = "word"

    def __init__(
        self,
        vocab: Sequence[str],
        unknown: str = UNKNOWN,
        specials: Sequence[str] = (),
        lowercase: bool = True,
        punctuation: Mapping[str, str] | None = None,
    ) -> None:
        self.vocab = list(vocab)
        self.unknown = unknown
        self.specials = list(specials)
        self.lowercase = lowercase
        self.punctuation = dict(PUNCTUATION if punctuation is None else punctuation)
        self.ids = {token: i for i, token in enumerate(self.vocab)}
        if len(self.ids) != len(self.vocab):
            raise MovielabError("word tokenizer: the vocabulary has duplicate entries")
        if unknown not in self.ids:
            raise MovielabError(f"word tokenizer: the unknown token '{unknown}' is not in the vocabulary")
        self.unknown_id = self.ids[unknown]
        self.marks = {token: mark for mark, token in self.punctuation.items()}

    @classmethod
    def learner(
        cls,
        n_texts: int,
        min_freq: int = 1,
        max_size: int | None = None,
        unknown: str = UNKNOWN,
        specials: Sequence[str] = (),
        lowercase: bool = True,
        punctuation: Mapping[str, str] | None = None,
    ) -> WordLearner:
        """`min_freq`: words seen fewer times become unknown; `max_size`: cap on the whole vocabulary
        (specials and unknown included), keeping the most frequent words."""
        if min_freq < 1:
            raise MovielabError(f"data.tokenizer.options.min_freq={min_freq} must be at least 1")
        reserved = list(dict.fromkeys([*specials, unknown]))
        if max_size is not None and max_size <= len(reserved):
            raise MovielabError(
                f"data.tokenizer.options.max_size={max_size} leaves no room for words after the "
                f"{len(reserved)} special tokens"
            )
        options = {"unknown": unknown, "specials": list(specials), "lowercase": lowercase}
        return WordLearner(min_freq, max_size, **options, punctuation=punctuation)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def token_id(self, token: str) -> int:
        """The id of a vocabulary entry (a word, a punctuation token or a special such as <pad>)."""
        if token not in self.ids:
            raise MovielabError(f"'{token}' is not in the word tokenizer's vocabulary")
        return self.ids[token]

    def words(self, text: str) -> list[str]:
        """The text as tokens (strings): punctuation spaced out into its tokens, split on whitespace."""
        if self.lowercase:
            text = text.lower()
        for mark, token in self.punctuation.items():
            if mark in text:
                text = text.replace(mark, f" {token} ")
        return text.split()

    def encode(self, text: str) -> np.ndarray:
        ids, unknown = self.ids, self.unknown_id
        return np.array([ids.get(word, unknown) for word in self.words(text)], dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        vocab = self.vocab
        pieces: list[str] = []
        glue_next = True  # nothing before the first token, or the previous one glues to the next
        quote_open = False
        for i in np.asarray(ids).tolist():
            token = vocab[i] if 0 <= i < len(vocab) else self.unknown
            mark = self.marks.get(token)
            if mark is None:
                glue_before, glue_after, text = False, False, token
            elif mark.endswith("\n"):
                pieces.append(mark)
                glue_next, quote_open = True, False
                continue
            elif mark in QUOTES:
                glue_before, glue_after, text = quote_open, not quote_open, mark
                quote_open = not quote_open
            else:
                glue_before, glue_after, text = mark not in OPENING, mark in OPENING | BOTH_SIDES, mark
            if not (glue_next or glue_before):
                pieces.append(" ")
            pieces.append(text)
            glue_next = glue_after
        return "".join(pieces)

    def state_dict(self) -> dict[str, Any]:
        return {
            "vocab": self.vocab,
            "unknown": self.unknown,
            "specials": self.specials,
            "lowercase": self.lowercase,
            "punctuation": self.punctuation,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> WordTokenizer:
        return cls(
            state["vocab"], state["unknown"], state["specials"], state["lowercase"], state["punctuation"]
        )
