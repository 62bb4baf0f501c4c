"""self-BLEU, BLEU, distinct-n and n-gram novelty: movielab.metrics against the original
pure-Python implementation (kept as the oracle in tests/test_metrics_against_original.py).

    flock /tmp/movielab-cpu.lock python experiments/bench_metrics.py [--repeats 3] [--sizes 50 100 200 400]

Texts are real sentences: fortune entries from ../shared/data/fortunes/fortunes.txt, as they are
(about 24 words, the text GAN's kind of sample) and joined into 60-word passages (a plot body's
length); without the data, deterministic Zipf-distributed synthetic words of the same lengths.
self-BLEU-4 runs at each size, old and new one after the other in alternating order, every
repeat; the report gives median seconds and the median of the per-repeat old/new ratios, and
checks that both give the same value. Then BLEU-4 of 400 passages against 1,000 held-out ones,
and distinct-2 and 4-gram novelty of 400 passages against 10,000 training passages, each also
with the references / training n-grams collected once beforehand (an evaluation grid scores many
sample sets against the same texts; "new" then times only the scoring).
Figures: experiments/bench_metrics.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from movielab import metrics  # noqa: E402
from tests.test_metrics_against_original import (  # noqa: E402
    original_bleu,
    original_distinct_n,
    original_ngram_novelty,
    original_self_bleu,
)

FORTUNES = ROOT.parent / "shared" / "data" / "fortunes" / "fortunes.txt"
PASSAGE_WORDS = 60


def fortune_entries() -> list[str] | None:
    if not FORTUNES.exists():
        return None
    entries = FORTUNES.read_text(encoding="utf-8", errors="replace").split("\n%\n")
    return [" ".join(e.split()) for e in entries if e.split()]


def synthetic_entries(count: int, rng: random.Random) -> list[str]:
    """Zipf-like word frequencies over a 5,000-word vocabulary, 5 to 45 words an entry."""
    vocabulary = [f"w{i}" for i in range(5000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    return [" ".join(rng.choices(vocabulary, weights, k=rng.randint(5, 45))) for _ in range(count)]


def passages(entries: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` texts of PASSAGE_WORDS words, each from randomly chosen entries joined end to end."""
    out = []
    for _ in range(count):
        words: list[str] = []
        while len(words) < PASSAGE_WORDS:
            words += rng.choice(entries).split()
        out.append(" ".join(words[:PASSAGE_WORDS]))
    return out


def timed(function: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def compare(name: str, old: Callable[[], float], new: Callable[[], float], repeats: int) -> None:
    """Old and new in alternating order each repeat; one report line with the median ratio."""
    old_times, new_times, ratios = [], [], []
    for repeat in range(repeats):
        order = [("old", old), ("new", new)] if repeat % 2 == 0 else [("new", new), ("old", old)]
        results = {label: timed(function) for label, function in order}
        (old_s, old_value), (new_s, new_value) = results["old"], results["new"]
        if abs(old_value - new_value) > 1e-12:
            raise SystemExit(f"{name}: values differ, old {old_value!r} new {new_value!r}")
        old_times.append(old_s)
        new_times.append(new_s)
        ratios.append(old_s / new_s)
    print(
        f"{name:<44} old {statistics.median(old_times):8.3f} s  new {statistics.median(new_times):7.4f} s"
        f"  old/new {statistics.median(ratios):7.1f}x  (repeats {' '.join(f'{r:.1f}' for r in ratios)})"
        f"  value {old_value:.6f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    args = parser.parse_args()

    rng = random.Random(0)
    entries = fortune_entries()
    source = f"fortune entries from {FORTUNES}" if entries else "synthetic Zipf words (no fortunes data)"
    if entries is None:
        entries = synthetic_entries(5000, rng)
    rng.shuffle(entries)
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; {source}")
    print(f"{len(entries)} entries, {statistics.mean(len(e.split()) for e in entries):.1f} words on average")

    texts = {"entries": entries, f"{PASSAGE_WORDS}-word passages": passages(entries, max(args.sizes), rng)}
    for shape, samples in texts.items():
        for size in args.sizes:
            subset = samples[:size]
            compare(
                f"self-BLEU-4, {size} {shape}",
                lambda s=subset: original_self_bleu(s, n=4),
                lambda s=subset: metrics.self_bleu(s, n=4),
                args.repeats,
            )

    rng = random.Random(1)  # the same texts whatever --sizes is
    samples = passages(entries, 400, rng)
    heldout = passages(entries, 1000, rng)
    training = passages(entries, 10_000, rng)
    compare(
        "BLEU-4, 400 passages vs 1,000 references",
        lambda: original_bleu(samples, heldout, n=4),
        lambda: metrics.bleu(samples, heldout, n=4),
        args.repeats,
    )
    reference_set = metrics.ReferenceSet(heldout, max_n=4)
    compare(
        "  the same, ReferenceSet built once",
        lambda: original_bleu(samples, heldout, n=4),
        lambda: reference_set.bleu(samples, 4),
        args.repeats,
    )
    compare(
        "distinct-2, 400 passages",
        lambda: original_distinct_n(samples, 2),
        lambda: metrics.distinct_n(samples, 2),
        args.repeats,
    )
    compare(
        "4-gram novelty, 400 vs 10,000 passages",
        lambda: original_ngram_novelty(samples, training, n=4),
        lambda: metrics.ngram_novelty(samples, training, n=4),
        args.repeats,
    )
    known = metrics.KnownNgrams(training, n=4)
    compare(
        "  the same, KnownNgrams built once",
        lambda: original_ngram_novelty(samples, training, n=4),
        lambda: known.novelty(samples),
        args.repeats,
    )


if __name__ == "__main__":
    main()
