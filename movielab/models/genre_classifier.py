"""Multilabel genre classification: weighted BCE, a threshold chosen on validation, per-genre scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import CatMetric, MeanMetric
from torchmetrics.functional.classification import (
    multilabel_f1_score,
    multilabel_fbeta_score,
    multilabel_precision,
    multilabel_recall,
)

from movielab.data.records import Record
from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.errors import MovielabError
from movielab.files import atomic_write_text
from movielab.optim import optimizer_and_schedule
from movielab.reports import markdown_table

THRESHOLD_METRICS = ("f1_micro", "f2_micro", "f1_macro", "f2_macro")


def positive_weights(labels: np.ndarray, max_weight: float = 50.0) -> torch.Tensor:
    """BCE pos_weight per genre: negatives / positives among the labelled training records.

    A genre on 10% of the movies gets weight 9, so its few positives count as much as its many
    negatives (BCEWithLogitsLoss's recipe for imbalance); capped at `max_weight` so a genre seen once
    does not dominate, and 1 for a genre with no positives.
    """
    labels = np.asarray(labels, dtype=np.float64)
    labels = labels[labels.sum(axis=1) > 0]
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return torch.tensor(np.clip(weights, 0.0, max_weight), dtype=torch.float32)


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


class GenreClassifier(L.LightningModule):
    """Trains `net` (ids, padding mask -> one logit per genre) on the records' multi-hot "genres".

    `net` is a factory taking `n_outputs` (Hydra `_partial_`), so the head is sized by the genre
    vocabulary the run was trained with (`genres`, from the training split, kept in the checkpoint).
    Records with no known genre carry no label and are left out of the loss and the scores.
    """

    def __init__(
        self,
        net: Callable[..., nn.Module],
        genres: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        max_pos_weight: float = 50.0,
        threshold_metric: str = "f1_micro",
        threshold_candidates: Sequence[float] = tuple(round(0.05 * i, 2) for i in range(1, 20)),
    ) -> None:
        super().__init__()
        if not genres:
            raise MovielabError(
                "model=genre_classifier needs genres, and the training data has none: use a data config "
                "with a genres column (e.g. data=imdb1000_plots) or map one with data.reader.columns.genres"
            )
        if threshold_metric not in THRESHOLD_METRICS:
            raise MovielabError(
                f"model.threshold_metric='{threshold_metric}' must be one of {', '.join(THRESHOLD_METRICS)}"
            )
        self.genres = tuple(genres)
        self.net = net(n_outputs=len(self.genres))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.max_pos_weight = max_pos_weight
        self.threshold_metric = threshold_metric
        self.threshold_candidates = tuple(threshold_candidates)
        self.register_buffer("pos_weight", torch.ones(len(self.genres)))
        self.register_buffer("threshold", torch.tensor(0.5))
        self.register_buffer("val_loss_best", torch.tensor(float("inf")))
        self.val_loss = MeanMetric()
        self.val_probs = CatMetric()
        self.val_labels = CatMetric()

    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None)
        if stage != "fit" or datamodule is None:
            return
        data = datamodule.prepare()
        if tuple(data.stats.get("genres", ())) != self.genres:
            raise MovielabError("the model's genres differ from the data's genre vocabulary")
        self.pos_weight.copy_(positive_weights(data.train.values["genres"], self.max_pos_weight))

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
        self.val_loss_best = torch.minimum(self.val_loss_best, loss.detach())
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/loss_best", self.val_loss_best)
        self.log("val/threshold", threshold)
        for name in ("f1_micro", "f1_macro", "f2_micro", "f2_macro", "precision_micro", "recall_micro"):
            self.log(f"val/{name}", scores[name], prog_bar=name == "f1_micro")
        for kind in ("precision", "recall", "f1"):
            for genre, value in zip(self.genres, scores[kind], strict=True):
                self.log(f"val/{kind}/{metric_name(genre)}", value)
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            report = self.classification_report(scores, labels, threshold)
            atomic_write_text(Path(self.trainer.default_root_dir) / "genre_report.md", report)

    def classification_report(
        self, scores: dict[str, torch.Tensor], labels: torch.Tensor, threshold: float
    ) -> str:
        """Per-genre precision/recall/F1 on validation as a Markdown table, most frequent genre first."""
        support = labels.sum(dim=0).long().tolist()
        order = sorted(range(len(self.genres)), key=lambda i: (-support[i], self.genres[i]))
        rows = [
            [self.genres[i], support[i], *(float(scores[k][i]) for k in ("precision", "recall", "f1"))]
            for i in order
        ]
        rows.append(
            [
                "micro average",
                sum(support),
                *(float(scores[f"{k}_micro"]) for k in ("precision", "recall", "f1")),
            ]
        )
        rows.append(
            [
                "macro average",
                sum(support),
                *(float(scores[f"{k}_macro"]) for k in ("precision", "recall", "f1")),
            ]
        )
        header = (
            f"Validation at step {self.global_step}: {labels.size(0)} labelled records, threshold "
            f"{threshold:.2f} (chosen on validation for {self.threshold_metric}); "
            f"micro F2 {float(scores['f2_micro']):.3f}, macro F2 {float(scores['f2_macro']):.3f}\n\n"
        )
        return header + markdown_table(["genre", "support", "precision", "recall", "F1"], rows)

    def configure_optimizers(self):  # noqa: ANN201 (Lightning accepts several shapes)
        return optimizer_and_schedule(
            self.net, lambda: self.trainer.max_steps, self.optimizer_factory, self.scheduler_factory
        )

    @torch.inference_mode()
    def genre_probabilities(
        self, tokenizer: Tokenizer, template: Template, texts: Sequence[Record]
    ) -> torch.Tensor:
        """(len(texts), n_genres) probabilities for records rendered with the training template.

        Each row is cut as training cut it: without its last token (training inputs are a record's
        tokens but the last) and to the encoder's block size."""
        was_training = self.training
        self.eval()
        try:
            encoded = [tokenizer.encode(template.render(record)) for record in texts]
            rows = [ids[: max(1, len(ids) - 1)][: self.net.config.block_size] for ids in encoded]
            width = max(1, max(len(row) for row in rows))
            ids = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
            mask = torch.zeros(len(rows), width, dtype=torch.bool, device=self.device)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
                mask[i, : len(row)] = True
            return torch.sigmoid(self.net(ids, mask).float())
        finally:
            self.train(was_training)
