"""Text metrics shared by every model: BLEU-n against references, self-BLEU, distinct-n, novelty.

BLEU here is the text-GAN literature's (Texygen; Caccia et al. 2020): the mean over samples of
sentence BLEU-n (uniform weights over 1..n-grams, brevity penalty against the closest reference
length, zero counts smoothed with epsilon 0.1 as NLTK's method1), each sample scored against the
whole reference set. The reference n-gram maxima are counted once, not once per sample:
torchmetrics' `bleu_score` recounts every reference for each sample (0.5 s per sample against
1,000 references here), which makes self-BLEU over hundreds of samples impractical.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence

EPSILON = 0.1


def words(text: str) -> list[str]:
    return text.split()


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


class ReferenceSet:
    """References tokenized once: per n, each n-gram's largest count in any one reference."""

    def __init__(self, references: Iterable[str], max_n: int = 4) -> None:
        self.max_n = max_n
        self.max_counts: list[Counter] = [Counter() for _ in range(max_n + 1)]
        lengths = set()
        for text in references:
            tokens = words(text)
            lengths.add(len(tokens))
            for n in range(1, max_n + 1):
                for gram, count in Counter(ngrams(tokens, n)).items():
                    if count > self.max_counts[n][gram]:
                        self.max_counts[n][gram] = count
        self.lengths = sorted(lengths)

    def closest_length(self, length: int) -> int:
        i = bisect.bisect_left(self.lengths, length)
        candidates = self.lengths[max(0, i - 1) : i + 1]
        return min(candidates, key=lambda r: (abs(r - length), r))

    def sentence_bleu(self, text: str, n: int, exclude: Counter | None = None) -> float:
        tokens = words(text)
        if not tokens or not self.lengths:
            return 0.0
        log_precision = 0.0
        for k in range(1, n + 1):
            counts = Counter(ngrams(tokens, k))
            total = sum(counts.values())
            if total == 0:
                return 0.0
            matched = sum(min(c, self.max_counts[k][g]) for g, c in counts.items())
            log_precision += math.log((matched or EPSILON) / total) / n
        reference_length = self.closest_length(len(tokens))
        brevity = 1.0 if len(tokens) > reference_length else math.exp(1 - reference_length / len(tokens))
        return brevity * math.exp(log_precision)


def bleu(samples: Sequence[str], references: Sequence[str], n: int = 4) -> float:
    """Quality: how much of each sample's n-grams appear in the (held-out) references."""
    reference_set = ReferenceSet(references, max_n=n)
    return sum(reference_set.sentence_bleu(s, n) for s in samples) / max(1, len(samples))


def self_bleu(samples: Sequence[str], n: int = 4) -> float:
    """Diversity (lower is more diverse): each sample scored against all the other samples."""
    if len(samples) < 2:
        return 0.0
    scores = []
    for i, sample in enumerate(samples):
        others = ReferenceSet([s for j, s in enumerate(samples) if j != i], max_n=n)
        scores.append(others.sentence_bleu(sample, n))
    return sum(scores) / len(scores)


def distinct_n(samples: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams in the samples (Li et al. 2016)."""
    grams = [g for s in samples for g in ngrams(words(s), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def copy_rate(samples: Sequence[str], training_texts: Iterable[str]) -> float:
    """Share of samples that are exact copies of a training text (case and spacing ignored)."""
    seen = {normalize(t) for t in training_texts}
    return sum(normalize(s) in seen for s in samples) / max(1, len(samples))


def novelty(samples: Sequence[str], training_texts: Iterable[str]) -> float:
    """Share of samples not found verbatim in the training data."""
    return 1.0 - copy_rate(samples, training_texts)


def ngram_novelty(samples: Sequence[str], training_texts: Iterable[str], n: int = 4) -> float:
    """Share of the samples' n-grams that never occur in the training data."""
    known = {g for t in training_texts for g in ngrams(words(normalize(t)), n)}
    grams = [g for s in samples for g in ngrams(words(normalize(s)), n)]
    return sum(g not in known for g in grams) / len(grams) if grams else 0.0
