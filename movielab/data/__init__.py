"""The shared data layer: file -> records -> token ids (cached) -> batches."""
