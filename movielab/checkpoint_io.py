"""How training writes checkpoints: atomically, read back weights-only on resume, each one
describing itself (movielab.checkpoint reads what RunDescription writes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from movielab.checkpoint import FORMAT_VERSION, SECTION, digest, read_checkpoint
from movielab.files import atomic_output


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save, written whole or not at all (a crash never leaves half a checkpoint)."""
    with atomic_output(path) as stream:
        torch.save(obj, stream)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, with an atomic local write and weights-only loading on resume."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location=map_location or "cpu")


class RunDescription(L.Callback):
    """Puts the model's description, the tokenizer, the template, the data's summary and
    fingerprint, the training texts' fingerprints, the latest validation metrics and the run's
    resolved config into every checkpoint, with a digest over them and the weights."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.description = {"format_version": FORMAT_VERSION, **description}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith("val/") and value.numel() == 1 and math.isfinite(float(value))
        }
        section = {**self.description, "metrics": metrics}
        section["digest"] = digest(checkpoint["state_dict"], section)
        checkpoint[SECTION] = section
