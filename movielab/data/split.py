"""Deterministic train/validation split by record, so one movie never lands in both."""

from __future__ import annotations

import numpy as np

from movielab.errors import MovielabError


def split_indices(n_records: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, val) record indices; the same seed always gives the same split."""
    if not 0.0 < val_fraction < 1.0:
        raise MovielabError(f"data.val_fraction={val_fraction} must be between 0 and 1 (exclusive)")
    if n_records < 2:
        raise MovielabError(
            f"need at least 2 records to make a train and a validation split, got {n_records}"
        )
    n_val = min(n_records - 1, max(1, round(n_records * val_fraction)))
    order = np.random.default_rng(seed).permutation(n_records)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
