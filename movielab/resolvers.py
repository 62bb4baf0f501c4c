"""OmegaConf resolvers for movielab's configs, registered when the training entry point loads.

`${steps_for_tokens:TOKENS,BATCH,LENGTH}` is the number of optimizer steps that trains on TOKENS
tokens with batches of BATCH windows of LENGTH tokens: a fixed token budget per run, so sweeps
over the batch size or the sequence length compare runs that saw the same amount of text.
"""

from __future__ import annotations

import math

from omegaconf import OmegaConf


def steps_for_tokens(tokens: float, batch_size: int, block_size: int) -> int:
    return max(1, math.ceil(float(tokens) / (int(batch_size) * int(block_size))))


OmegaConf.register_new_resolver("steps_for_tokens", steps_for_tokens, replace=True)
