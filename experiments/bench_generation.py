"""Generation speed with and without the KV cache, batch 1 and 32, on a ~10M-parameter GPT.

    python experiments/bench_generation.py [--repeats 5] [--threads N]

The workload is what `movielab.generate ckpt=... title="The Last Lighthouse"` runs: the description
template's prompt for that title (61 characters), then generate's default max_new_tokens (600, read
from conf/generate.yaml), at batch 1 (num_samples=1) and 32. The cache's gain grows with the length
of the context it saves re-reading, so batch 1 also runs at 240 and 60 new tokens, to show the
whole curve rather than one point of it; batch 32 runs 120 new tokens (its uncached path is the
slowest part of the bench).
Every setting runs once per repeat, interleaved (the machine is shared and noisy); the report gives
median tokens/s and the median of the per-repeat cached/uncached ratios.
Measured figures and why batch 1 gains less than batch 32: experiments/bench_generation.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from movielab import CONFIG_DIR
from movielab.data.templates import DESCRIPTION_TEMPLATE, Template
from movielab.data.tokenizers import CharTokenizer
from movielab.generation import generate_texts, requests_for
from movielab.models.gpt import GPT, GPTConfig
from movielab.models.language_sampler import LanguageModelSampler
from movielab.sampling import SamplingSettings

VOCAB_SIZE = 128
TITLE = "The Last Lighthouse"
DEFAULT_NEW_TOKENS = OmegaConf.load(Path(CONFIG_DIR) / "generate.yaml").max_new_tokens


def build_model() -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=VOCAB_SIZE, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0)
    return GPT(config).eval()


def sampler_for(model: GPT) -> LanguageModelSampler:
    """What `generate` runs: the description template's prompt for TITLE, through the one
    generation API. The weights are random, so there is no stop: every row writes all its tokens."""
    tokenizer = CharTokenizer([chr(c) for c in range(1, VOCAB_SIZE)])
    return LanguageModelSampler(model, {}, tokenizer, Template(DESCRIPTION_TEMPLATE, stop=None))


def prompt_length() -> int:
    return len(Template().prompt(title=TITLE))


def tokens_per_second(sampler: LanguageModelSampler, batch: int, use_cache: bool, new_tokens: int) -> float:
    settings = SamplingSettings(temperature=1.0, max_new_tokens=new_tokens)
    requests = requests_for({"title": TITLE}, settings, seed=2, count=batch)
    start = time.perf_counter()
    with torch.inference_mode():
        results = generate_texts(sampler, requests, use_cache=use_cache, max_batch=batch)
    elapsed = time.perf_counter() - start
    assert all(r.new_tokens == new_tokens for r in results)
    return batch * new_tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scenarios = [(1, DEFAULT_NEW_TOKENS), (1, 240), (1, 60), (32, 120)]  # (batch size, new tokens)
    model = build_model()
    sampler = sampler_for(model)
    settings = [(batch, new, cache) for batch, new in scenarios for cache in (True, False)]
    print(
        f"GPT with {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters "
        "(6 layers, 384 wide, context 256), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"prompt: the {prompt_length()}-character description prompt for {TITLE!r}"
    )
    for batch, _, cache in settings:  # warm-up
        tokens_per_second(sampler, batch, cache, 8)
    results: dict[tuple[int, int, bool], list[float]] = {s: [] for s in settings}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for batch, new, cache in settings:
            results[(batch, new, cache)].append(tokens_per_second(sampler, batch, cache, new))
        print(f"repeat {repeat + 1}/{args.repeats} done ({time.perf_counter() - started:.0f} s)", flush=True)
    print("\n| batch | new tokens | KV cache | tokens/s (median) | runs |")
    print("|---|---|---|---|---|")
    for (batch, new, cache), values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {batch} | {new} | {'yes' if cache else 'no'} | {statistics.median(values):.0f} | {runs} |")
    print()
    for batch, new in scenarios:
        ratios = [
            c / u for c, u in zip(results[(batch, new, True)], results[(batch, new, False)], strict=True)
        ]
        default = " (generate's default length)" if new == DEFAULT_NEW_TOKENS else ""
        print(
            f"batch {batch:>2}, {new:>3} new tokens{default}: cached / uncached = "
            f"{statistics.median(ratios):.1f}x (per repeat: {', '.join(f'{r:.1f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
