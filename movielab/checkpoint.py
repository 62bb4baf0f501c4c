"""Self-describing checkpoints: written atomically, read with weights_only=True, enough to sample from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from movielab.data.tokenizers import Tokenizer, tokenizer_from_state
from movielab.errors import MovielabError
from movielab.files import atomic_output

SECTION = "movielab"
FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save, written whole or not at all (a crash never leaves half a checkpoint)."""
    with atomic_output(path) as stream:
        torch.save(obj, stream)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True, and a one-line error for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise MovielabError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not checkpoints
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MovielabError(f"{path} is not a movielab checkpoint (torch.load: {reason[:120]})") from exc
    if not isinstance(checkpoint, dict) or SECTION not in checkpoint:
        raise MovielabError(f"{path} is not a movielab checkpoint (it has no '{SECTION}' section)")
    return checkpoint


def require_same_data(checkpoint: dict[str, Any], option: str, fingerprint: str) -> None:
    """Token ids (hence embeddings, optimizer moments) mean nothing on other data or tokenization."""
    previous = checkpoint[SECTION]["data_fingerprint"]
    if previous != fingerprint:
        raise MovielabError(
            f"{option} was trained on other data or tokenization (fingerprint {previous}, now "
            f"{fingerprint}); use the same data.* options as its run"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, with an atomic local write and weights-only loading on resume."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location=map_location or "cpu")


class RunDescription(L.Callback):
    """Puts the resolved config, the tokenizer and the data fingerprint into every checkpoint."""

    def __init__(self, config: dict[str, Any], tokenizer: Tokenizer, data_fingerprint: str) -> None:
        self.description = {
            "format_version": FORMAT_VERSION,
            "config": config,
            "tokenizer": tokenizer.to_state(),
            "data_fingerprint": data_fingerprint,
        }

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[SECTION] = self.description


@dataclass
class LoadedRun:
    """A trained model with everything needed to sample from it."""

    path: Path
    config: DictConfig
    tokenizer: Tokenizer
    module: L.LightningModule

    @property
    def run_dir(self) -> Path:
        folder = self.path.resolve().parent
        return folder.parent if folder.name == "checkpoints" else folder


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    checkpoint = read_checkpoint(path)
    description = checkpoint[SECTION]
    config = OmegaConf.create(description["config"])
    module = instantiate(config.model)
    module.load_state_dict(checkpoint["state_dict"])
    module.to(device).eval()
    return LoadedRun(Path(path), config, tokenizer_from_state(description["tokenizer"]), module)
