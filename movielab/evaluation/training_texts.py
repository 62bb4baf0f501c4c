"""A run's records as generation prints them, and the index of its training texts a checkpoint keeps."""

from __future__ import annotations

import logging

from movielab.data.templates import Template
from movielab.data.token_cache import TokenData, TokenSplit
from movielab.data.tokenizers import Tokenizer
from movielab.text_index import TextIndex

log = logging.getLogger(__name__)

# above this many training tokens the index is not built: decoding every record would take longer
# than a short run (about 15 s at this size on one core); copy flags are then unavailable
MAX_INDEXED_TOKENS = 50_000_000


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


def training_index(data: TokenData, template: Template) -> TextIndex | None:
    """The fingerprints of the training texts (None for a training split too large to index)."""
    if len(data.train.tokens) > MAX_INDEXED_TOKENS:
        log.info(
            "%d training tokens: no index of the training texts in the checkpoints (copy flags off)",
            len(data.train.tokens),
        )
        return None
    return TextIndex.from_texts(training_texts(data, template))
