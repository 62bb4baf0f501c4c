"""Text metrics shared by every model: BLEU-n against references, self-BLEU, distinct-n, novelty.

BLEU here is the text-GAN literature's (Texygen; Caccia et al. 2020): the mean over samples of
sentence BLEU-n (uniform weights over 1..n-grams, brevity penalty against the closest reference
length, zero counts smoothed with epsilon 0.1 as NLTK's method1), each sample scored against the
whole reference set. The reference n-gram maxima are counted once, not once per sample:
torchmetrics' `bleu_score` recounts every reference for each sample (0.5 s per sample against
1,000 references here), which makes self-BLEU over hundreds of samples impractical.

No library gives these values: a sample with no matching n-gram scores 0 in sacrebleu, NLTK and
fast-bleu (here its zero counts are smoothed), and NLTK and fast-bleu smooth a sample shorter than
n (here it scores 0). sacrebleu and NLTK also take references per sample, so their self-BLEU stays
quadratic. self_bleu below is linear instead: every sample's n-grams are counted once, and per
n-gram its two largest counts are kept (experiments/bench_metrics.md has the speed-up).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence

from movielab.text_index import TextIndex, normalize  # noqa: F401 (normalize: part of this API)

EPSILON = 0.1


def words(text: str) -> list[str]:
    return text.split()


def check_order(n: int) -> None:
    if n < 1:
        raise ValueError(f"n-gram order must be 1 or more, got {n}")


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    check_order(n)
    return list(zip(*(tokens[i:] for i in range(n)), strict=False))


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    return Counter(zip(*(tokens[i:] for i in range(n)), strict=False))


def closest(lengths: Sequence[int], length: int) -> int:
    """The reference length nearest to `length` in sorted `lengths`, the shorter one on a tie."""
    i = bisect.bisect_left(lengths, length)
    candidates = lengths[max(0, i - 1) : i + 1]
    return min(candidates, key=lambda r: (abs(r - length), r))


def bleu_from_matches(length: int, matched: Sequence[int], reference_length: int) -> float:
    """Sentence BLEU-n (n = len(matched)) of a sample of `length` words whose clipped k-gram
    matches are matched[k - 1]; 0 for a sample shorter than n."""
    n = len(matched)
    if length < n:
        return 0.0
    log_precision = 0.0
    for k, hits in enumerate(matched, start=1):
        log_precision += math.log((hits or EPSILON) / (length - k + 1)) / n
    brevity = 1.0 if length > reference_length else math.exp(1 - reference_length / length)
    return brevity * math.exp(log_precision)


class ReferenceSet:
    """References tokenized once: per n, each n-gram's largest count in any one reference."""

    def __init__(self, references: Iterable[str], max_n: int = 4) -> None:
        self.max_n = max_n
        self.max_counts: list[Counter] = [Counter() for _ in range(max_n + 1)]
        lengths = set()
        for text in references:
            tokens = words(text)
            lengths.add(len(tokens))
            for n in range(1, min(max_n, len(tokens)) + 1):
                best = self.max_counts[n]
                for gram, count in ngram_counts(tokens, n).items():
                    if count > best[gram]:
                        best[gram] = count
        self.lengths = sorted(lengths)

    def closest_length(self, length: int) -> int:
        return closest(self.lengths, length)

    def sentence_bleu(self, text: str, n: int, exclude: Counter | None = None) -> float:
        """`exclude` is accepted for callers of the old signature and ignored."""
        check_order(n)
        tokens = words(text)
        if len(tokens) < n or not self.lengths:
            return 0.0
        matched = []
        for k in range(1, n + 1):
            best = self.max_counts[k]
            matched.append(sum(min(c, best[g]) for g, c in ngram_counts(tokens, k).items()))
        return bleu_from_matches(len(tokens), matched, self.closest_length(len(tokens)))

    def bleu(self, samples: Sequence[str], n: int | None = None) -> float:
        """Mean sentence BLEU-n (n defaults to max_n); build the set once to score many sample sets."""
        n = self.max_n if n is None else n
        return sum(self.sentence_bleu(s, n) for s in samples) / max(1, len(samples))


def bleu(samples: Sequence[str], references: Sequence[str], n: int = 4) -> float:
    """Quality: how much of each sample's n-grams appear in the (held-out) references."""
    return ReferenceSet(references, max_n=n).bleu(samples, n)


def self_bleu(samples: Sequence[str], n: int = 4) -> float:
    """Diversity (lower is more diverse): each sample scored against all the other samples.

    Linear in the samples: per k, each k-gram's largest and second-largest count over samples
    (equal when two samples share the largest); a sample holding the largest count is matched
    against the second, any other sample against the largest (which is >= its own count, so it
    keeps all of it). The closest other length is the sample's own when another sample shares it.
    """
    check_order(n)
    if len(samples) < 2:
        return 0.0
    tokens = [words(s) for s in samples]
    matched = [[0] * n for _ in samples]
    for k in range(1, n + 1):
        counts = [ngram_counts(t, k) for t in tokens]  # a sample shorter than n is still a reference
        first: dict[tuple[str, ...], int] = {}
        second: dict[tuple[str, ...], int] = {}
        for sample_counts in counts:
            for gram, count in sample_counts.items():
                top = first.get(gram, 0)
                if count > top:
                    second[gram] = top
                    first[gram] = count
                elif count > second.get(gram, 0):
                    second[gram] = count
        for sample_counts, hits in zip(counts, matched, strict=True):
            hits[k - 1] = sum(c if c < first[g] else second.get(g, 0) for g, c in sample_counts.items())
    length_holders = Counter(len(t) for t in tokens)
    lengths = sorted(length_holders)
    scores = []
    for sample_tokens, hits in zip(tokens, matched, strict=True):
        length = len(sample_tokens)
        if length_holders[length] > 1:
            reference_length = length
        else:  # the nearest distinct lengths on either side of this sample's own
            i = bisect.bisect_left(lengths, length)
            reference_length = closest(lengths[max(0, i - 1) : i] + lengths[i + 1 : i + 2], length)
        scores.append(bleu_from_matches(length, hits, reference_length))
    return sum(scores) / len(scores)


def distinct_n(samples: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams in the samples (Li et al. 2016)."""
    grams = [g for s in samples for g in ngrams(words(s), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def copy_rate(samples: Sequence[str], training_texts: Iterable[str]) -> float:
    """Share of samples that are exact copies of a training text (case and spacing ignored):
    movielab.text_index's one check, over an index of these texts."""
    return TextIndex.from_texts(training_texts).copy_rate(samples)


def novelty(samples: Sequence[str], training_texts: Iterable[str]) -> float:
    """Share of samples not found verbatim in the training data."""
    return 1.0 - copy_rate(samples, training_texts)


class KnownNgrams:
    """The training texts' n-grams (case and spacing ignored), collected once: collecting them is
    nearly all of ngram_novelty's time (0.32 of 0.34 s for 400 samples against 10,000 texts of
    60 words, experiments/bench_metrics.md), so an evaluation scoring many sample sets keeps one."""

    def __init__(self, training_texts: Iterable[str], n: int = 4) -> None:
        check_order(n)
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        for text in training_texts:
            tokens = text.lower().split()  # the words of normalize(text)
            self.grams.update(zip(*(tokens[i:] for i in range(n)), strict=False))

    def novelty(self, samples: Sequence[str]) -> float:
        """Share of the samples' n-grams that never occur in the training data."""
        grams = [g for s in samples for g in ngrams(s.lower().split(), self.n)]
        return sum(g not in self.grams for g in grams) / len(grams) if grams else 0.0


def ngram_novelty(samples: Sequence[str], training_texts: Iterable[str], n: int = 4) -> float:
    """Share of the samples' n-grams that never occur in the training data."""
    return KnownNgrams(training_texts, n).novelty(samples)
