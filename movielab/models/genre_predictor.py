"""A trained genre classifier as something that reads genres in a text: the encoder, the genre
vocabulary, the decision threshold chosen on validation, the tokenizer and the template."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from movielab.data.batching import pad_id_lists
from movielab.data.records import Record
from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.models.modes import evaluating


class GenrePredictor:
    def __init__(
        self,
        net: nn.Module,
        genres: Sequence[str],
        threshold: float,
        tokenizer: Tokenizer,
        template: Template,
    ) -> None:
        self.net = net
        self.genres = tuple(genres)
        self.threshold = float(threshold)
        self.tokenizer = tokenizer
        self.template = template

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.inference_mode()
    def probabilities(self, records: Sequence[Record], batch_size: int = 64) -> torch.Tensor:
        """(len(records), n_genres) probabilities for records rendered with the training template.

        Each row is cut as training cut it: without its last token (training inputs are a record's
        tokens but the last) and to the encoder's block size."""
        chunks = []
        with evaluating(self.net):
            for begin in range(0, len(records), batch_size):
                encoded = [
                    self.tokenizer.encode(self.template.render(r))
                    for r in records[begin : begin + batch_size]
                ]
                rows = [ids[: max(1, len(ids) - 1)][: self.net.config.block_size] for ids in encoded]
                ids, mask = pad_id_lists(rows, width=max(1, max(len(row) for row in rows)))
                chunks.append(torch.sigmoid(self.net(ids.to(self.device), mask.to(self.device)).float()))
        return torch.cat(chunks) if chunks else torch.zeros(0, len(self.genres))

    def ranked(self, record: Record) -> list[tuple[str, float]]:
        """Every genre with its probability for one record, most probable first."""
        probabilities = self.probabilities([record])[0].tolist()
        return sorted(zip(self.genres, probabilities, strict=True), key=lambda pair: -pair[1])
