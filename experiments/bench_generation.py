"""Generation speed with and without the KV cache, batch 1 and 32, on a ~10M-parameter GPT.

    python experiments/bench_generation.py [--repeats 3] [--threads N]

Scenarios (prompt of 16 tokens, context window 256):
  - batch 1 and batch 32, 240 new tokens: exactly one context window;
  - batch 1, 512 new tokens: past the window, as `movielab.generate` runs by default
    (max_new_tokens=600): the uncached path then re-reads a full 256-token window every step.
Every setting runs once per repeat, interleaved (the machine is shared and noisy); the report
gives median tokens/s and the median of the per-repeat cached/uncached ratios.
Measured figures and why batch 1 gains less than batch 32: experiments/bench_generation.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from movielab.models.gpt import GPT, GPTConfig
from movielab.sampling import SamplingSettings, generate_tokens

SCENARIOS = [(1, 240), (32, 240), (1, 512)]  # (batch size, new tokens)


def build_model() -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=128, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0)
    return GPT(config).eval()


def tokens_per_second(model: GPT, batch: int, use_cache: bool, prompt_len: int, new_tokens: int) -> float:
    prompt = torch.randint(0, 128, (batch, prompt_len), generator=torch.Generator().manual_seed(1))
    settings = SamplingSettings(temperature=1.0, max_new_tokens=new_tokens, use_cache=use_cache)
    start = time.perf_counter()
    out = generate_tokens(model, prompt, settings, generator=torch.Generator().manual_seed(2))
    elapsed = time.perf_counter() - start
    assert out.shape == (batch, new_tokens)
    return batch * new_tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model()
    settings = [(batch, new, cache) for batch, new in SCENARIOS for cache in (True, False)]
    print(
        f"GPT with {model.num_parameters() / 1e6:.1f}M parameters (6 layers, 384 wide, context 256), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.prompt_len}-token prompt"
    )
    for batch, _, cache in settings:  # warm-up
        tokens_per_second(model, batch, cache, args.prompt_len, 8)
    results: dict[tuple[int, int, bool], list[float]] = {s: [] for s in settings}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for batch, new, cache in settings:
            results[(batch, new, cache)].append(tokens_per_second(model, batch, cache, args.prompt_len, new))
        print(f"repeat {repeat + 1}/{args.repeats} done ({time.perf_counter() - started:.0f} s)", flush=True)
    print("\n| batch | new tokens | KV cache | tokens/s (median) | runs |")
    print("|---|---|---|---|---|")
    for (batch, new, cache), values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {batch} | {new} | {'yes' if cache else 'no'} | {statistics.median(values):.0f} | {runs} |")
    print()
    for batch, new in SCENARIOS:
        ratios = [
            c / u for c, u in zip(results[(batch, new, True)], results[(batch, new, False)], strict=True)
        ]
        print(
            f"batch {batch:>2}, {new} new tokens: cached / uncached = {statistics.median(ratios):.1f}x "
            f"(per repeat: {', '.join(f'{r:.1f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
