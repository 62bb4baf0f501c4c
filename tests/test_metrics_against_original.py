"""The counted-once self-BLEU and BLEU hold today's values: the original pure-Python implementation
(every sample scored against a ReferenceSet rebuilt from all the others) is kept here as the
oracle, and the two must agree to 1e-12 on hand-picked corner cases and on seeded random inputs.
experiments/bench_metrics.py times the two side by side."""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence

import pytest

from movielab.metrics import KnownNgrams, ReferenceSet, bleu, distinct_n, ngram_novelty, ngrams, self_bleu

EPSILON = 0.1
TOLERANCE = 1e-12


# --- the original implementation (movielab/metrics.py before the counted-once self-BLEU) -------


def original_ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


class OriginalReferenceSet:
    def __init__(self, references: Iterable[str], max_n: int = 4) -> None:
        self.max_n = max_n
        self.max_counts: list[Counter] = [Counter() for _ in range(max_n + 1)]
        lengths = set()
        for text in references:
            tokens = text.split()
            lengths.add(len(tokens))
            for n in range(1, max_n + 1):
                for gram, count in Counter(original_ngrams(tokens, n)).items():
                    if count > self.max_counts[n][gram]:
                        self.max_counts[n][gram] = count
        self.lengths = sorted(lengths)

    def closest_length(self, length: int) -> int:
        i = bisect.bisect_left(self.lengths, length)
        candidates = self.lengths[max(0, i - 1) : i + 1]
        return min(candidates, key=lambda r: (abs(r - length), r))

    def sentence_bleu(self, text: str, n: int) -> float:
        tokens = text.split()
        if not tokens or not self.lengths:
            return 0.0
        log_precision = 0.0
        for k in range(1, n + 1):
            counts = Counter(original_ngrams(tokens, k))
            total = sum(counts.values())
            if total == 0:
                return 0.0
            matched = sum(min(c, self.max_counts[k][g]) for g, c in counts.items())
            log_precision += math.log((matched or EPSILON) / total) / n
        reference_length = self.closest_length(len(tokens))
        brevity = 1.0 if len(tokens) > reference_length else math.exp(1 - reference_length / len(tokens))
        return brevity * math.exp(log_precision)


def original_bleu(samples: Sequence[str], references: Sequence[str], n: int = 4) -> float:
    reference_set = OriginalReferenceSet(references, max_n=n)
    return sum(reference_set.sentence_bleu(s, n) for s in samples) / max(1, len(samples))


def original_self_bleu(samples: Sequence[str], n: int = 4) -> float:
    if len(samples) < 2:
        return 0.0
    scores = []
    for i, sample in enumerate(samples):
        others = OriginalReferenceSet([s for j, s in enumerate(samples) if j != i], max_n=n)
        scores.append(others.sentence_bleu(sample, n))
    return sum(scores) / len(scores)


def original_distinct_n(samples: Sequence[str], n: int) -> float:
    grams = [g for s in samples for g in original_ngrams(s.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def original_ngram_novelty(samples: Sequence[str], training_texts: Iterable[str], n: int = 4) -> float:
    def normalize(text: str) -> str:
        return " ".join(text.lower().split())

    known = {g for t in training_texts for g in original_ngrams(normalize(t).split(), n)}
    grams = [g for s in samples for g in original_ngrams(normalize(s).split(), n)]
    return sum(g not in known for g in grams) / len(grams) if grams else 0.0


# --- corner cases -------------------------------------------------------------------------------

CASES = {
    "two_samples": ["the cat sat on the mat", "the cat sat on a mat"],
    "two_identical": ["a b c d e", "a b c d e"],
    "duplicates_among_others": ["a b c d", "a b c d", "a b c d", "x y z w q", "a b x y"],
    "duplicate_holds_the_max_twice": ["a a a b", "a a a c", "a b"],
    "unique_holder_of_the_max": ["a a a a b", "a a b", "a b", "b b a"],
    "repeated_ngrams_within_a_sample": ["go go go go go go", "go go", "go go go", "stop go go stop"],
    "empty_samples": ["", "the cat sat", "", "the cat", "   "],
    "only_empty_samples": ["", "", ""],
    "one_empty_one_not": ["", "the cat sat on the mat"],
    "single_words": ["cat", "dog", "cat", "bird"],
    "single_word_and_long": ["cat", "the cat sat on the mat with a cat"],
    "shorter_than_n_is_still_a_reference": ["a b", "a b c d", "c d e f", "a"],
    "ties_in_reference_length": ["a b c", "a b c d e", "b c d e", "a b", "x y z w v u"],
    "tie_to_the_shorter_length": ["a b c d", "a b c", "a b c d e f", "c d e"],
    "unique_length_between_two": ["a b", "a b c d", "b c d e f g"],
    "all_lengths_distinct": ["a", "a b", "a b c", "a b c d", "a b c d e", "a b c d e f"],
    "no_match_at_all": ["alpha beta gamma delta", "one two three four", "red green blue cyan"],
    "many_samples": [
        " ".join(("the", "a", "movie", "dog", "sea")[(i * j + i) % 5] for j in range(i % 9))
        for i in range(40)
    ],
}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("case", sorted(CASES))
def test_self_bleu_equals_the_original(case, n):
    samples = CASES[case]
    assert self_bleu(samples, n=n) == pytest.approx(original_self_bleu(samples, n=n), abs=TOLERANCE, rel=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bleu_equals_the_original(case, n):
    """Each case's first half scored against its second half, and every sample against all."""
    samples = CASES[case]
    half = len(samples) // 2
    for hypotheses, references in [(samples[:half], samples[half:]), (samples, samples)]:
        expected = original_bleu(hypotheses, references, n=n)
        assert bleu(hypotheses, references, n=n) == pytest.approx(expected, abs=TOLERANCE, rel=0)


def test_the_corner_cases_are_not_all_zero_or_one():
    """The equality tests above mean something only if the scores spread between 0 and 1."""
    scores = {case: original_self_bleu(samples, n=2) for case, samples in CASES.items()}
    assert scores["two_identical"] == pytest.approx(1.0)
    assert scores["only_empty_samples"] == 0.0
    assert sum(0.05 < s < 0.95 for s in scores.values()) >= 8


def test_fewer_than_two_samples_score_zero():
    assert self_bleu([], n=4) == original_self_bleu([], n=4) == 0.0
    assert self_bleu(["the cat sat on the mat"], n=4) == 0.0


def test_bleu_against_no_references_is_zero():
    assert bleu(["the cat sat"], [], n=2) == original_bleu(["the cat sat"], [], n=2) == 0.0
    assert bleu([], ["the cat sat"], n=2) == 0.0


@pytest.mark.parametrize("n", [0, -1])
def test_an_order_below_one_is_refused(n):
    for call in (lambda: self_bleu(["a b", "a c"], n=n), lambda: bleu(["a b"], ["a c"], n=n)):
        with pytest.raises(ValueError, match="order must be 1 or more"):
            call()


def test_reference_set_keeps_its_interface():
    references = ["the cat sat on the mat", "a dog sat", "the the cat"]
    new, old = ReferenceSet(references, max_n=3), OriginalReferenceSet(references, max_n=3)
    assert new.lengths == old.lengths
    assert new.max_counts == old.max_counts
    for length in range(0, 9):
        assert new.closest_length(length) == old.closest_length(length)
    for text in ["the cat sat", "a dog", "the the the cat sat on", ""]:
        assert new.sentence_bleu(text, 3) == pytest.approx(old.sentence_bleu(text, 3), abs=TOLERANCE, rel=0)


# --- seeded random inputs -------------------------------------------------------------------------


def random_texts(rng: random.Random, count: int, vocabulary: int, max_length: int) -> list[str]:
    """Small vocabularies, so n-grams recur across and within samples and counts tie."""
    words = [f"w{i}" for i in range(vocabulary)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, max_length))) for _ in range(count)]


@pytest.mark.parametrize("seed", range(6))
def test_self_bleu_equals_the_original_on_random_inputs(seed):
    rng = random.Random(seed)
    for _ in range(40):
        samples = random_texts(rng, rng.randint(2, 25), rng.randint(1, 8), rng.randint(1, 14))
        if rng.random() < 0.3:  # copies of earlier samples
            samples += rng.sample(samples, k=min(3, len(samples)))
        n = rng.randint(1, 4)
        expected = original_self_bleu(samples, n=n)
        assert self_bleu(samples, n=n) == pytest.approx(expected, abs=TOLERANCE, rel=0), (samples, n)


@pytest.mark.parametrize("seed", range(3))
def test_bleu_equals_the_original_on_random_inputs(seed):
    rng = random.Random(100 + seed)
    for _ in range(40):
        vocabulary = rng.randint(1, 10)
        samples = random_texts(rng, rng.randint(1, 20), vocabulary, rng.randint(1, 12))
        references = random_texts(rng, rng.randint(0, 30), vocabulary, rng.randint(1, 12))
        n = rng.randint(1, 4)
        expected = original_bleu(samples, references, n=n)
        assert bleu(samples, references, n=n) == pytest.approx(expected, abs=TOLERANCE, rel=0)


def test_ngrams_distinct_n_and_ngram_novelty_equal_the_original():
    rng = random.Random(7)
    samples = random_texts(rng, 30, 6, 12)
    # the training texts in mixed case and spacing, which novelty ignores
    training = random_texts(rng, 50, 8, 12)
    training = [t.upper().replace(" ", "  \t") if i % 3 else t for i, t in enumerate(training)]
    novelties = set()
    for n in [1, 2, 3, 4]:
        for text in samples[:5]:
            assert ngrams(text.split(), n) == original_ngrams(text.split(), n)
        assert distinct_n(samples, n) == original_distinct_n(samples, n)
        expected = original_ngram_novelty(samples, training, n=n)
        assert ngram_novelty(samples, training, n=n) == expected
        novelties.add(expected)
    assert len(novelties) == 3 and max(novelties) < 1  # 0 for unigrams (all words are known)


def test_prebuilt_reference_and_training_sets_score_many_sample_sets_as_the_originals():
    rng = random.Random(11)
    references, training = random_texts(rng, 40, 7, 12), random_texts(rng, 60, 7, 12)
    reference_set, known = ReferenceSet(references, max_n=3), KnownNgrams(training, n=3)
    for _ in range(5):
        samples = random_texts(rng, rng.randint(0, 15), 9, 12)
        assert reference_set.bleu(samples) == pytest.approx(
            original_bleu(samples, references, n=3), abs=TOLERANCE, rel=0
        )
        assert reference_set.bleu(samples, 2) == pytest.approx(
            original_bleu(samples, references, n=2), abs=TOLERANCE, rel=0
        )
        assert known.novelty(samples) == original_ngram_novelty(samples, training, n=3)
