"""One LightningDataModule for every model: the run's TextData, with the loaders a Trainer asks for."""

from __future__ import annotations

from typing import Any

import lightning as L

from movielab.data.text_data import TextData


class TextDataModule(TextData, L.LightningDataModule):
    """TextData (`path`, or the bundled `sample`; see there) for a Trainer: `setup()` prepares the
    token data, and each rank's loaders draw its share of the batches."""

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> Any:
        rank, world_size = self._rank()
        return self.batching.train_loader(
            self.prepare().train, seed=self.seed, rank=rank, world_size=world_size
        )

    def val_dataloader(self) -> Any:
        rank, world_size = self._rank()
        return self.batching.val_loader(self.prepare().val, rank=rank, world_size=world_size)
