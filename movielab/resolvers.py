"""OmegaConf resolvers for movielab's configs, registered when the training entry point loads.

`${steps_for_tokens:TOKENS,BATCH,LENGTH}` is the number of optimizer steps that trains on TOKENS
tokens with batches of BATCH windows of LENGTH tokens: a fixed token budget per run, so sweeps
over the batch size or the sequence length compare runs that saw the same amount of text (with
BATCH=1 it is the number of windows that hold TOKENS tokens). `${mul:A,B}` is A*B, e.g. the last
step of a run that validates N times, every K steps.
"""

from __future__ import annotations

import math

from omegaconf import OmegaConf


def steps_for_tokens(tokens: float, batch_size: int, block_size: int) -> int:
    return max(1, math.ceil(float(tokens) / (int(batch_size) * int(block_size))))


def mul(a: int, b: int) -> int:
    return int(a) * int(b)


OmegaConf.register_new_resolver("steps_for_tokens", steps_for_tokens, replace=True)
OmegaConf.register_new_resolver("mul", mul, replace=True)
