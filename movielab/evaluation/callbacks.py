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

from movielab.checkpoint import load_model
from movielab.errors import MovielabError
from movielab.evaluation.generated_text import GenreJudge, ReferenceTexts, text_metrics
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
    set of samples (the same prompts and seeds each time) and log text metrics under `gen/`:
    distinct-1/2, self-BLEU, copy rate and n-gram novelty against the training texts, BLEU against
    the held-out ones (movielab.evaluation.generated_text, as `movielab.evaluate` measures them).
    They appear in the loggers and in trainer.callback_metrics, so a sweep can optimise them.

    Conditioning fidelity, for models that take the condition: `rating_samples` titles at each of
    `ratings` (default 9 across the training range) give gen/rating_spearman and
    gen/rating_mean_abs_error (movielab.evaluation.rating_conditioning, as `movielab.evaluate
    mode=conditioning`); a genre-conditioned model's samples ask for the held-out movies' genres in
    turn, and with a `classifier` checkpoint (a genre classifier) give gen/genre_recall and
    gen/genre_top1. Rank 0 measures and the values are broadcast, so every rank logs the same.
    Option `prompt` gives every sample the same prompt fields instead.
    """

    def __init__(
        self,
        num_samples: int = 64,
        max_new_tokens: int = 300,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        ngram: int = 4,
        prompt: dict[str, Any] | None = None,
        every_validation: bool = True,
        prefix: str = "gen/",
        rating_samples: int = 8,
        ratings: Sequence[float] | None = None,
        classifier: str | None = None,
    ) -> None:
        if num_samples < 2:
            raise MovielabError(f"gen_metrics num_samples={num_samples} must be at least 2 (self-BLEU)")
        self.num_samples = num_samples
        self.settings = SamplingSettings(
            temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens
        )
        self.seed = seed
        self.ngram = ngram
        self.prompt = dict(prompt or {})
        self.every_validation = every_validation
        self.prefix = prefix
        self.rating_samples = rating_samples
        self.ratings = [float(r) for r in ratings] if ratings else None
        self.classifier = classifier
        self._judge: GenreJudge | None = None
        self._references: ReferenceTexts | None = None
        self.last: dict[str, float] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """A classifier that is not one fails before training, not at the first validation."""
        if self.classifier and self._judge is None and trainer.is_global_zero:
            predictor = load_model(self.classifier, device=pl_module.device).predictor
            if predictor is None:
                raise MovielabError(f"gen_metrics classifier={self.classifier} is not a genre classifier")
            self._judge = GenreJudge(predictor)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_validation and not trainer.sanity_checking:
            self._measure(trainer, pl_module, log_now=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.every_validation:
            self._measure(trainer, pl_module, log_now=False)

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule, log_now: bool) -> None:
        if not isinstance(pl_module, TrainsTextWriter):
            return
        with evaluating(pl_module):
            measured = self.measure(trainer.datamodule, pl_module) if trainer.is_global_zero else None
        self.last = trainer.strategy.broadcast(measured, src=0)
        if log_now:
            for name, value in self.last.items():
                pl_module.log(name, value, sync_dist=False)
        else:  # on_train_end: Lightning's self.log no longer applies
            for name, value in self.last.items():
                trainer.callback_metrics[name] = torch.tensor(value)
            for logger in trainer.loggers:
                logger.log_metrics(self.last, step=trainer.global_step)

    def measure(self, datamodule: Any, model: TrainsTextWriter) -> dict[str, float]:
        """The metrics of the model's samples now (the module in eval mode), named with the prefix."""
        if self._references is None:
            self._references = ReferenceTexts.from_data(datamodule.prepare(), datamodule.template)
        references = self._references
        sampler = model.text_sampler(datamodule.tokenizer, datamodule.template)
        conditions = sampler.conditions if isinstance(sampler, LanguageModelSampler) else {}
        genre_model = "genres" in conditions and not self.prompt
        asked = references.requested_genres(self.num_samples) if genre_model else []
        prompts = [{"genres": genres} for genres in asked] if asked else self.prompt
        requests = requests_for(prompts, self.settings, self.seed, self.num_samples)
        samples = [r.text for r in generate_texts(sampler, requests, device=model.device)]
        metrics = text_metrics(samples, references, self.ngram)
        metrics.pop("samples", None)
        if self._judge is not None and asked:
            records = [references.reader.record(s) for s in samples]
            metrics.update(self._judge.recognition(records, asked))
        if self.rating_samples and "rating" in conditions:
            result = evaluate_rating_conditioning(
                sampler, self.settings, self.ratings, self.rating_samples, seed=self.seed
            )
            metrics["rating_spearman"] = result.spearman
            metrics["rating_mean_abs_error"] = result.mean_abs_error
        return {f"{self.prefix}{name}": float(value) for name, value in metrics.items()}
