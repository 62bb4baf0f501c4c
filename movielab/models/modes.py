"""Evaluation mode for a while: sampling and scoring switch dropout off and restore what was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Every module in eval mode inside the block, back in its own mode after it."""
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, training in zip(modules, modes, strict=True):
            module.train(training)
