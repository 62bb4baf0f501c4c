"""Multilabel genre classification: weighted BCE, a threshold chosen on validation, per-genre scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import CatMetric, MeanMetric
from torchmetrics.functional.classification import (
    multilabel_f1_score,
    multilabel_fbeta_score,
    multilabel_precision,
    multilabel_recall,
)

from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.models.build import build_net
from movielab.models.genre_predictor import GenrePredictor
from movielab.models.spec import ModelSpec
from movielab.models.trained_module import TrainedModule


def multilabel_scores(probs: torch.Tensor, labels: torch.Tensor, threshold: float) -> dict[str, torch.Tensor]:
    """Precision/recall/F1 per genre and micro/macro F1 and F2 at one threshold (torchmetrics)."""
    labels = labels.int()
    args = {"num_labels": labels.size(1), "threshold": threshold}
    scores = {
        "precision": multilabel_precision(probs, labels, average="none", **args),
        "recall": multilabel_recall(probs, labels, average="none", **args),
        "f1": multilabel_f1_score(probs, labels, average="none", **args),
    }
    for average in ("micro", "macro"):
        scores[f"precision_{average}"] = multilabel_precision(probs, labels, average=average, **args)
        scores[f"recall_{average}"] = multilabel_recall(probs, labels, average=average, **args)
        scores[f"f1_{average}"] = multilabel_f1_score(probs, labels, average=average, **args)
        scores[f"f2_{average}"] = multilabel_fbeta_score(probs, labels, beta=2.0, average=average, **args)
    return scores


def best_threshold(
    probs: torch.Tensor, labels: torch.Tensor, candidates: Sequence[float], metric: str = "f1_micro"
) -> float:
    """The candidate threshold with the highest `metric` (the first of equals)."""
    values = [float(multilabel_scores(probs, labels, t)[metric]) for t in candidates]
    return float(candidates[int(np.argmax(values))])


def metric_name(genre: str) -> str:
    return genre.replace(" ", "_")


@dataclass(frozen=True)
class ValidationScores:
    """The last validation's scores, for reports (movielab.evaluation.callbacks.GenreReport)."""

    scores: dict[str, torch.Tensor]
    support: list[int]
    records: int
    threshold: float
    step: int


class GenreClassifier(TrainedModule):
    """Trains the encoder a `spec` describes (ids, padding mask -> one logit per genre) on the
    records' multi-hot "genres", with BCE weighted per genre (the spec's pos_weight, from the
    training split). Records with no known genre carry no label and are left out of the loss and
    the scores. The decision threshold is chosen on validation and kept in the checkpoint.
    """

    def __init__(
        self,
        spec: ModelSpec,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.net, self.spec = build_net(spec)
        options = self.spec.task_options()
        self.genres = tuple(options.genres)
        self.threshold_metric = options.threshold_metric
        self.threshold_candidates = tuple(options.threshold_candidates)
        weights = options.pos_weight or (1.0,) * len(self.genres)
        self.register_buffer("pos_weight", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("threshold", torch.tensor(0.5))
        self.val_loss = MeanMetric()
        self.val_probs = CatMetric()
        self.val_labels = CatMetric()
        self.validation_scores: ValidationScores | None = None

    def forward(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(inputs, padding_mask)

    def _labelled(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
        labels = batch["genres"].float()
        keep = labels.sum(dim=1) > 0
        if not bool(keep.any()):
            return None
        logits = self.net(batch["inputs"][keep], batch["padding_mask"][keep])
        return logits, labels[keep]

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), labels, pos_weight=self.pos_weight)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        labelled = self._labelled(batch)
        if labelled is None:
            return None
        loss = self._loss(*labelled)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        labelled = self._labelled(batch)
        if labelled is None:
            return
        logits, labels = labelled
        self.val_loss.update(self._loss(logits, labels), weight=labels.size(0))
        self.val_probs.update(torch.sigmoid(logits.float()))
        self.val_labels.update(labels)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        probs, labels = self.val_probs.compute(), self.val_labels.compute()
        for metric in (self.val_loss, self.val_probs, self.val_labels):
            metric.reset()
        if self.trainer.sanity_checking:
            return
        threshold = best_threshold(probs, labels, self.threshold_candidates, self.threshold_metric)
        self.threshold.fill_(threshold)
        scores = multilabel_scores(probs, labels, threshold)
        self.log_validation_loss(loss)
        self.log("val/threshold", threshold)
        for name in ("f1_micro", "f1_macro", "f2_micro", "f2_macro", "precision_micro", "recall_micro"):
            self.log(f"val/{name}", scores[name], prog_bar=name == "f1_micro")
        for kind in ("precision", "recall", "f1"):
            for genre, value in zip(self.genres, scores[kind], strict=True):
                self.log(f"val/{kind}/{metric_name(genre)}", value)
        support = labels.sum(dim=0).long().tolist()
        self.validation_scores = ValidationScores(
            scores, support, labels.size(0), threshold, self.global_step
        )

    def predictor(self, tokenizer: Tokenizer, template: Template) -> GenrePredictor:
        return GenrePredictor(self.net, self.genres, float(self.threshold), tokenizer, template)
