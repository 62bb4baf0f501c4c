"""Generation speed with and without the KV cache, batch 1 and 32, on a ~10M-parameter GPT.

    python experiments/bench_generation.py [--new-tokens 128] [--repeats 3] [--threads N]

The four settings run interleaved in each repeat (the machine is shared and noisy), and the
report gives the median tokens/s of each and the cached/uncached ratio per batch size.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from movielab.models.gpt import GPT, GPTConfig
from movielab.sampling import SamplingSettings, generate_tokens


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
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model()
    settings = [(batch, cache) for batch in (1, 32) for cache in (True, False)]
    print(
        f"GPT with {model.num_parameters() / 1e6:.1f}M parameters, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.prompt_len}-token prompt, {args.new_tokens} new tokens"
    )
    for batch, cache in settings:  # warm-up
        tokens_per_second(model, batch, cache, args.prompt_len, 8)
    results: dict[tuple[int, bool], list[float]] = {s: [] for s in settings}
    for repeat in range(args.repeats):
        for batch, cache in settings:
            results[(batch, cache)].append(
                tokens_per_second(model, batch, cache, args.prompt_len, args.new_tokens)
            )
        print(f"repeat {repeat + 1}/{args.repeats} done")
    print("\n| batch | KV cache | tokens/s (median) | runs |")
    print("|---|---|---|---|")
    for (batch, cache), values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {batch} | {'yes' if cache else 'no'} | {statistics.median(values):.0f} | {runs} |")
    for batch in (1, 32):
        ratios = [c / u for c, u in zip(results[(batch, True)], results[(batch, False)], strict=True)]
        print(
            f"batch {batch}: cached / uncached = {statistics.median(ratios):.1f}x "
            f"(median of per-repeat ratios {', '.join(f'{r:.1f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
