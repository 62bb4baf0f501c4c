"""Is a text the same whether it is decoded alone or in a batch? How far the logits move, and how
many texts change, for the same seeds with `max_batch=1` against `max_batch=32`.

    flock /tmp/movielab-cpu.lock python experiments/alone_vs_batched.py [--ckpt PATH] [--texts 640]

Without --ckpt it trains the serving benchmark's model (the default char GPT, 20 steps). Every
text has its own title and seed; sampling is movielab's default. A row's logits in a batch differ
from its logits alone by float rounding only (matrix products of other shapes add in another
order), so a draw can change only where two tokens tie to within that. Figures:
experiments/alone_vs_batched.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import train_model  # noqa: E402

from movielab.checkpoint import load_model  # noqa: E402
from movielab.generation import generate_texts, requests_for  # noqa: E402
from movielab.sampling import SamplingSettings  # noqa: E402


def logit_gap(sampler, prompts: list[dict], steps: int) -> float:  # noqa: ANN001
    """The largest difference between a row's logits alone and in one batch with the others, over
    its prompt and `steps` fed tokens (the same tokens in both)."""
    ids = [sampler.prepare(prompt).ids for prompt in prompts]
    fed = torch.randint(
        0, sampler.tokenizer.vocab_size, (steps, len(ids)), generator=torch.Generator().manual_seed(0)
    )
    together = sampler.decoder()
    batched = [together.add_rows([(row, None, None) for row in ids])]
    batched += [together.advance(fed[step]) for step in range(steps)]
    gap = 0.0
    for i, row in enumerate(ids):
        alone = sampler.decoder()
        logits = [alone.add(row)] + [alone.advance(fed[step, i : i + 1])[0] for step in range(steps)]
        gap = max(gap, max(float((a - b[i]).abs().max()) for a, b in zip(logits, batched, strict=True)))
    return gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="a checkpoint (default: train the benchmark's model)")
    parser.add_argument("--texts", type=int, default=640)
    parser.add_argument("--new-tokens", type=int, default=120)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        sampler = load_model(args.ckpt or train_model(Path(folder))).sampler
        prompts = [{"title": f"Movie {i}"} for i in range(args.texts)]
        with torch.inference_mode():
            gap = logit_gap(sampler, prompts[:32], steps=60)
            settings = SamplingSettings(max_new_tokens=args.new_tokens)
            requests = requests_for(prompts, settings, seed=1000)
            start = time.perf_counter()
            alone = [generate_texts(sampler, [request], max_batch=1)[0].text for request in requests]
            batched = [result.text for result in generate_texts(sampler, requests, max_batch=32)]
    differ = [i for i, (a, b) in enumerate(zip(alone, batched, strict=True)) if a != b]
    print(f"largest logit difference, a row alone vs in a batch of 32 (60 steps): {gap:.2e}")
    print(f"{args.texts} texts, {sum(map(len, alone))} characters, seeds 1000..: {len(differ)} differ "
          f"alone vs max_batch=32 {differ[:10]} ({time.perf_counter() - start:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
