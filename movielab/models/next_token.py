"""Next-token prediction over a net and its condition prefixes: what training scores and what
evaluation asks of a trained language model (one place, so the two always agree)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


def condition_prefix(conditions: Mapping[str, nn.Module], values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The prefix embeddings (batch, positions, d_model) of every condition, in order."""
    return torch.cat([encoder(values[name]) for name, encoder in conditions.items()], dim=1)


def logits_and_targets(
    net: nn.Module, conditions: Mapping[str, nn.Module], batch: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (batch, time, vocab) and their targets (batch, time). With conditions the net sees the
    prefix first, and the prefix's last position predicts the first input token, scored too."""
    if not conditions:
        return net(batch["inputs"]), batch["targets"]
    logits = net(batch["inputs"], prefix=condition_prefix(conditions, batch))
    return logits, torch.cat([batch["inputs"][:, :1], batch["targets"]], dim=1)


def sequence_log_likelihood(
    net: nn.Module, conditions: Mapping[str, nn.Module], batch: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """log p(record | conditions) per row of a padded record batch (targets -100 at padding)."""
    logits, targets = logits_and_targets(net, conditions, batch)
    scores = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=-100, reduction="none")
    return -scores.sum(dim=1)
