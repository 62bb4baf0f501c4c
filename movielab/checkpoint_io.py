"""How training writes checkpoints: atomically, read back weights-only on resume, each one
describing itself (movielab.checkpoint reads what RunDescription writes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from movielab.checkpoint import FORMAT_VERSION, SECTION, digest, read_checkpoint, training_digest
from movielab.errors import TrainingDiverged
from movielab.files import atomic_output


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save, written whole or not at all (a crash never leaves half a checkpoint)."""
    with atomic_output(path) as stream:
        torch.save(obj, stream)


def nan_tensors(state_dict: dict[str, Any]) -> list[str]:
    """The names of floating-point tensors holding a NaN (an inf may be a metric's start value:
    StopOnNonFinite checks the parameters for both before any checkpoint is assembled)."""
    return [
        name
        for name, tensor in state_dict.items()
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and bool(tensor.isnan().any())
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, with an atomic local write and weights-only loading on resume.
    A NaN is never written (a NaN "best" score included): the checkpoint already there stays."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        broken = nan_tensors(checkpoint.get("state_dict") or {})
        if broken:
            step = checkpoint.get("global_step", "?")
            raise TrainingDiverged(
                f"training diverged by step {step}: {broken[0]} holds a NaN; {path} was "
                "not written and the checkpoints from before are kept (try a smaller model.optimizer.lr)",
                step=step if isinstance(step, int) else -1,
                metric=broken[0],
            )
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location=map_location or "cpu")


class RunDescription(L.Callback):
    """Puts the model's description, the tokenizer, the template, the data's summary and
    fingerprint, the training texts' fingerprints, the latest validation metrics and the run's
    resolved config into every checkpoint, with a digest over them and the weights and one over the
    training state a resume restores (optimizer moments, schedules, loop and callback states)."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.description = {"format_version": FORMAT_VERSION, **description}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith("val/") and value.numel() == 1 and math.isfinite(float(value))
        }
        section = {**self.description, "metrics": metrics, "training_digest": training_digest(checkpoint)}
        section["digest"] = digest(checkpoint["state_dict"], section)
        checkpoint[SECTION] = section
