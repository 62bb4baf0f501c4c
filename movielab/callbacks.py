"""Callbacks movielab adds to Lightning's: generated samples in TensorBoard, exact RNG on resume."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.loggers import TensorBoardLogger

from movielab.data.batching import batch_size_of, tokens_in
from movielab.generation import TrainsTextWriter, generate_texts, requests_for
from movielab.models.modes import evaluating
from movielab.sampling import SamplingSettings

log = logging.getLogger(__name__)


class TextSamples(L.Callback):
    """After each validation, sample a few texts and add them to TensorBoard's Text tab.

    Every sample has its own seed (seed, seed + 1, ...), so logging samples never changes the
    training run's randomness, and the samples of two validations differ only by the weights.
    """

    def __init__(
        self,
        num_samples: int = 3,
        max_new_tokens: int = 300,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = 0.95,
        seed: int = 0,
        prompt: dict[str, Any] | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.settings = SamplingSettings(
            temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens
        )
        self.seed = seed
        self.prompt = dict(prompt or {})

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or not isinstance(pl_module, TrainsTextWriter)
        ):
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        datamodule = trainer.datamodule
        sampler = pl_module.text_sampler(datamodule.tokenizer, datamodule.template)
        requests = requests_for(self.prompt, self.settings, self.seed, self.num_samples)
        with evaluating(pl_module):
            results = generate_texts(sampler, requests, device=pl_module.device)
        markdown = "\n\n---\n\n".join(f"```\n{result.text}\n```" for result in results)
        for logger in loggers:
            logger.experiment.add_text("samples", markdown, global_step=trainer.global_step)


class ResumableRandomState(L.Callback):
    """Saves the torch RNG states in checkpoints and restores them on resume, so dropout after
    resuming draws the same masks as an uninterrupted run would have."""

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["cpu"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class TokenThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor with tokens as its items: logs train/items_per_sec (tokens/s).

    The counting functions are given here rather than as Hydra `_partial_` targets in the config:
    Hydra 1.3.8 checks its target policy on every call of such a partial (about 0.2 ms), and these
    run twice every training step (experiments/bench_training.md).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(batch_size_fn=batch_size_of, length_fn=tokens_in, **kwargs)
