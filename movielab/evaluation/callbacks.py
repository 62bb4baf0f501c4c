"""Evaluations that run during training: reports and text metrics are callbacks, so the
LightningModules compute losses and metrics only."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from movielab.evaluation.generated_text import ReferenceTexts, text_metrics
from movielab.evaluation.genre_report import classification_report
from movielab.evaluation.rating_conditioning import evaluate_rating_conditioning
from movielab.evaluation.training_texts import training_index
from movielab.files import atomic_write_text
from movielab.generation import TrainsTextWriter, generate_texts, requests_for
from movielab.models.genre_classifier import GenreClassifier
from movielab.models.language_sampler import LanguageModelSampler
from movielab.models.modes import evaluating
from movielab.sampling import SamplingSettings

log = logging.getLogger(__name__)


class RatingConditioningReport(L.Callback):
    """When training ends, evaluates the final weights (movielab.evaluation.rating_conditioning):
    logs conditioning/spearman, /mean_abs_error, /copy_rate, /distinct_1, /distinct_2,
    /heldout_spearman (the same recovery on the real validation titles) and a markdown table of
    samples (Text tab), and writes the table to the log. The same report for any checkpoint:
    `python -m movielab.evaluate mode=conditioning ckpt=PATH`."""

    def __init__(
        self,
        ratings: Sequence[float] | None = None,
        samples_per_rating: int = 20,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        max_new_tokens: int = 64,
        seed: int = 0,
        condition: str = "rating",
    ) -> None:
        self.ratings = list(ratings) if ratings else None
        self.samples_per_rating = samples_per_rating
        self.settings = SamplingSettings(
            temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens
        )
        self.seed = seed
        self.condition = condition

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not isinstance(pl_module, TrainsTextWriter):
            return
        datamodule = trainer.datamodule
        sampler = pl_module.text_sampler(datamodule.tokenizer, datamodule.template)
        if not isinstance(sampler, LanguageModelSampler) or self.condition not in sampler.conditions:
            return
        data = datamodule.prepare()
        result = evaluate_rating_conditioning(
            sampler,
            self.settings,
            self.ratings,
            self.samples_per_rating,
            training_index(data, datamodule.template),
            self.seed,
            self.condition,
            heldout=data.val,
        )
        table = result.table()
        log.info("Rating conditioning at step %d (final weights):\n%s", trainer.global_step, table)
        metrics = {f"conditioning/{name}": value for name, value in result.metrics().items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("conditioning", table, global_step=trainer.global_step)


class GenreReport(L.Callback):
    """After each validation, the genre classifier's per-genre scores as <run>/genre_report.md."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or not isinstance(pl_module, GenreClassifier)
        ):
            return
        if pl_module.validation_scores is None or not trainer.default_root_dir:
            return
        report = classification_report(
            pl_module.validation_scores, pl_module.genres, pl_module.threshold_metric
        )
        atomic_write_text(Path(trainer.default_root_dir) / "genre_report.md", report)


class GeneratedTextMetrics(L.Callback):
    """After each validation (or only when training ends, `every_validation=false`), write a fixed
    set of samples (the same prompt and seeds each time) and log text metrics under `gen/`:
    distinct-1/2, self-BLEU, copy rate and n-gram novelty against the training texts, BLEU against
    the held-out ones (movielab.evaluation.generated_text, as `movielab.evaluate` measures them).
    They appear in TensorBoard and in trainer.callback_metrics, so a sweep can optimise them."""

    def __init__(
        self,
        num_samples: int = 64,
        max_new_tokens: int = 300,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        ngram: int = 3,
        prompt: dict[str, Any] | None = None,
        every_validation: bool = True,
        prefix: str = "gen/",
    ) -> None:
        self.num_samples = num_samples
        self.settings = SamplingSettings(
            temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens
        )
        self.seed = seed
        self.ngram = ngram
        self.prompt = dict(prompt or {})
        self.every_validation = every_validation
        self.prefix = prefix
        self._references: ReferenceTexts | None = None
        self.last: dict[str, float] = {}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_validation and not trainer.sanity_checking:
            self._measure(trainer, pl_module, log_now=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.every_validation:
            self._measure(trainer, pl_module, log_now=False)

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule, log_now: bool) -> None:
        if not isinstance(pl_module, TrainsTextWriter):
            return
        datamodule = trainer.datamodule
        if self._references is None:
            self._references = ReferenceTexts.from_data(datamodule.prepare(), datamodule.template)
        sampler = pl_module.text_sampler(datamodule.tokenizer, datamodule.template)
        requests = requests_for(self.prompt, self.settings, self.seed, self.num_samples)
        with evaluating(pl_module):
            samples = [r.text for r in generate_texts(sampler, requests, device=pl_module.device)]
        metrics = text_metrics(samples, self._references, self.ngram)
        metrics.pop("samples", None)
        self.last = {f"{self.prefix}{name}": float(value) for name, value in metrics.items()}
        if log_now:  # every rank computes the same samples, so the values agree without a sync
            for name, value in self.last.items():
                pl_module.log(name, value, sync_dist=False, rank_zero_only=True)
        else:
            for name, value in self.last.items():
                trainer.callback_metrics[name] = torch.tensor(value)
            for logger in trainer.loggers:
                logger.log_metrics(self.last, step=trainer.global_step)
