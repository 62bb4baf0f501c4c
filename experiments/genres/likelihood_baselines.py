"""How much of a genre-conditioned model's validation loss is context, and how much is the genres?

    python experiments/genres/likelihood_baselines.py outputs/genre_plots/runs/<stamp>/checkpoints/last.ckpt

Run it from the directory the training ran in (the run's data.path may be relative). It rebuilds the
run's own split from the token cache and reports, in nats per token over every token of the
validation records (what val/loss averages):

- the model with each record's true genres (= val/loss, in eval mode), with the "no genre"
  embedding for every record, and with the genres of another validation record (a fixed
  permutation): if the genre prefix carries information, the last two are higher;
- n-gram models counted on the training records (the context starts at each record's start),
  add-k smoothed, k the best of a few values ON THE VALIDATION SPLIT (so slightly optimistic):
  a model that reaches only the bigram's loss uses one token of context.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter

import numpy as np
import torch

from movielab.checkpoint import load_model
from movielab.cli.evaluate import reference_data
from movielab.data.batching import padded_records
from movielab.data.token_cache import TokenSplit
from movielab.models.language_sampler import LanguageModelSampler

SMOOTHING = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def records(split: TokenSplit) -> list[tuple[int, ...]]:
    return [tuple(int(t) for t in split.record_tokens(i)) for i in range(split.n_records)]


def ngram_loss(
    train: list[tuple[int, ...]], val: list[tuple[int, ...]], n: int, vocab: int
) -> tuple[float, float]:
    """(nats per token, k) of the best add-k n-gram model; -1 pads the context before a record."""
    grams: Counter = Counter()
    contexts: Counter = Counter()
    for record in train:
        padded = (-1,) * (n - 1) + record
        for i in range(n - 1, len(padded)):
            grams[padded[i - n + 1 : i + 1]] += 1
            contexts[padded[i - n + 1 : i]] += 1
    best = (math.inf, 0.0)
    for k in SMOOTHING:
        total, count = 0.0, 0
        for record in val:
            padded = (-1,) * (n - 1) + record
            for i in range(n - 1, len(padded)):
                p = (grams[padded[i - n + 1 : i + 1]] + k) / (contexts[padded[i - n + 1 : i]] + k * vocab)
                total -= math.log(p)
                count += 1
        best = min(best, (total / count, k))
    return best


@torch.inference_mode()
def model_loss(
    model: LanguageModelSampler, split: TokenSplit, max_length: int | None, genres: np.ndarray
) -> float:
    """Token-weighted mean cross-entropy of the validation records with the given multi-hot genres."""
    total, count = 0.0, 0
    for begin in range(0, split.n_records, 25):
        rows = np.arange(begin, min(begin + 25, split.n_records))
        batch = padded_records(split, rows, max_length)
        batch["genres"] = torch.as_tensor(genres[rows])
        total -= float(model.sequence_log_likelihood(batch).sum())  # sum of -log p over the scored tokens
        count += int((torch.cat([batch["inputs"][:, :1], batch["targets"]], dim=1) != -100).sum())
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt")
    parser.add_argument("--max-n", type=int, default=4, help="longest n-gram model")
    args = parser.parse_args()
    run = load_model(args.ckpt)
    data = reference_data(run, None)
    max_length = run.spec.net.config["block_size"] - len(run.spec.conditions)  # as training cut the rows
    true = np.asarray(data.val.values["genres"])
    permuted = true[np.random.default_rng(0).permutation(len(true))]
    print(f"{data.train.n_records} training / {data.val.n_records} validation records, {run.path}\n")
    print("| model | val nats/token |\n|---|---|")
    for label, genres in (
        ("this model, true genres", true),
        ("this model, no genre", np.zeros_like(true)),
        ("this model, another record's genres", permuted),
    ):
        print(f"| {label} | {model_loss(run.sampler, data.val, max_length, genres):.3f} |")
    train, val = records(data.train), records(data.val)
    for n in range(1, args.max_n + 1):
        loss, k = ngram_loss(train, val, n, run.tokenizer.vocab_size)
        print(f"| {n}-gram counts (add-{k:g}) | {loss:.3f} |")


if __name__ == "__main__":
    main()
