"""Text metrics against hand-computed cases and against torchmetrics' BLEU."""

from __future__ import annotations

import math

import pytest
from torchmetrics.functional.text import bleu_score

from movielab.metrics import bleu, copy_rate, distinct_n, ngram_novelty, novelty, self_bleu


def test_distinct_n_by_hand():
    samples = ["a b a b", "a c"]
    # unigrams: a b a b a c -> {a, b, c} / 6 ; bigrams: ab ba ab ac -> {ab, ba, ac} / 4
    assert distinct_n(samples, 1) == pytest.approx(3 / 6)
    assert distinct_n(samples, 2) == pytest.approx(3 / 4)


def test_bleu_of_an_exact_reference_is_one():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat", "a dog"], n=4) == pytest.approx(1.0)


def test_bleu_by_hand_with_brevity_penalty():
    # sample "the cat" vs reference "the cat sat": p1 = 2/2, p2 = 1/1, BP = exp(1 - 3/2)
    assert bleu(["the cat"], ["the cat sat"], n=2) == pytest.approx(math.exp(1 - 3 / 2))


def test_bleu_clips_repeated_ngrams_and_smooths_zero_counts():
    # "the the the" vs "the cat": p1 = 1/3 (clipped); p2 = 0 matches of 2 -> epsilon 0.1/2
    expected = math.exp(0.5 * math.log(1 / 3) + 0.5 * math.log(0.1 / 2))
    assert bleu(["the the the"], ["the cat"], n=2) == pytest.approx(expected * 1.0)  # no brevity penalty


@pytest.mark.parametrize(
    "sample", ["the quick brown fox jumps over the dog", "a quick brown dog jumps over the lazy fox today"]
)
def test_sentence_bleu_matches_torchmetrics(sample):
    references = ["the quick brown fox jumps over the lazy dog", "a fast brown fox leaps over a lazy dog"]
    expected = float(bleu_score([sample], [references], n_gram=4))
    assert bleu([sample], references, n=4) == pytest.approx(expected, rel=1e-5)


def test_self_bleu_is_high_for_repeats_and_low_for_variety():
    repeated = ["the movie is about a dog"] * 4
    varied = ["a dog runs", "the sea glows at night", "two sisters mail a lantern", "kessler station hums"]
    assert self_bleu(repeated, n=4) == pytest.approx(1.0)
    assert self_bleu(varied, n=2) < 0.2


def test_copy_rate_novelty_and_ngram_novelty():
    training = ["The Salt Orchard", "Paper  Lanterns"]
    samples = ["the salt orchard", "Paper Lanterns", "Paper Boats", "Kessler Station"]
    assert copy_rate(samples, training) == pytest.approx(0.5)
    assert novelty(samples, training) == pytest.approx(0.5)
    # bigrams: salt-orchard(known) the-salt(known) paper-lanterns(known) paper-boats kessler-station
    assert ngram_novelty(samples, training, n=2) == pytest.approx(2 / 5)
