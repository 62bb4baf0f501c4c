"""The rating-conditioning evaluation at the end of training, logged to TensorBoard."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from movielab.evaluation.rating_conditioning import evaluate_rating_conditioning
from movielab.evaluation.training_texts import TextIndex, TrainingTextIndex, training_texts
from movielab.sampling import SamplingSettings

log = logging.getLogger(__name__)


class RatingConditioningReport(L.Callback):
    """When training ends, evaluates the final weights (movielab.evaluation.rating_conditioning):
    logs conditioning/spearman, /mean_abs_error, /copy_rate, /distinct_1, /distinct_2,
    /heldout_spearman (the same recovery on the real validation titles) and a
    markdown table of samples (Text tab), and writes the table to the log. The same report for
    any checkpoint: `python -m movielab.evaluate_conditioning ckpt=PATH`."""

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
        conditions = getattr(pl_module, "conditions", {})
        if not trainer.is_global_zero or self.condition not in conditions:
            return
        datamodule = trainer.datamodule
        index = next((cb.index for cb in trainer.callbacks if isinstance(cb, TrainingTextIndex)), None)
        if index is None:
            index = TextIndex.from_texts(training_texts(datamodule.prepare(), datamodule.template))
        result = evaluate_rating_conditioning(
            pl_module,
            datamodule.tokenizer,
            datamodule.template,
            self.settings,
            self.ratings,
            self.samples_per_rating,
            index,
            self.seed,
            self.condition,
            heldout=datamodule.prepare().val,
        )
        table = result.table()
        log.info("Rating conditioning at step %d (final weights):\n%s", trainer.global_step, table)
        metrics = {f"conditioning/{name}": value for name, value in result.metrics().items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("conditioning", table, global_step=trainer.global_step)
