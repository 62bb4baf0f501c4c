"""Optimizer parameter groups and learning-rate schedules laid out over the run's steps."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from movielab.errors import MovielabError


def weight_decay_groups(module: nn.Module) -> list[dict]:
    """Decay matrices and embeddings; leave biases and LayerNorm gains alone (as GPT-2 does)."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def optimizer_and_schedule(
    module: nn.Module,
    max_steps: Callable[[], int | None],
    optimizer_factory: Callable[..., Optimizer],
    scheduler_factory: Callable[..., LambdaLR] | None,
) -> Optimizer | dict[str, Any]:
    """What a LightningModule's configure_optimizers returns: the optimizer over `module`'s weight
    decay groups and, if any, a schedule stepped every optimizer step over `max_steps()` (read only
    then: a module without a schedule needs no trainer)."""
    optimizer = optimizer_factory(weight_decay_groups(module))
    if scheduler_factory is None:
        return optimizer
    total_steps = max_steps()
    if total_steps is None or total_steps < 1:
        raise MovielabError("trainer.max_steps must be set: the learning-rate schedule is laid out over it")
    scheduler = scheduler_factory(optimizer, total_steps=total_steps)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
    }


def _warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.1
) -> LambdaLR:
    """Linear warmup to the optimizer's lr, then cosine decay to min_lr_ratio * lr at total_steps."""
    factor = partial(
        _warmup_cosine_factor, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio
    )
    return LambdaLR(optimizer, factor)


def _noam_factor(step: int, warmup_steps: int) -> float:
    step += 1
    return min(step / warmup_steps, math.sqrt(warmup_steps / step))


def noam(optimizer: Optimizer, total_steps: int, warmup_steps: int = 4000) -> LambdaLR:
    """The Transformer paper's schedule (Vaswani et al. 2017, "Noam"): linear warmup, then decay
    with the inverse square root of the step; it does not depend on the run's length (total_steps).

    Scaled so the peak, at warmup_steps, is the optimizer's lr: the paper's
    d_model**-0.5 * min(step**-0.5, step * warmup**-1.5) is lr = factor / sqrt(d_model * warmup).
    """
    del total_steps
    return LambdaLR(optimizer, partial(_noam_factor, warmup_steps=warmup_steps))
