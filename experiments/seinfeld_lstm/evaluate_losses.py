"""Validation loss of a trained word LSTM under each definition the write-up compares.

    python experiments/seinfeld_lstm/evaluate_losses.py outputs/seinfeld_lstm/runs/<stamp>/checkpoints/<ckpt>

Run it from the directory the training ran in (the run's data.path may be relative). It rebuilds
the run's validation split (or, with --split train, the training split) from the token cache (the
same split and tokens training used) and reports, as per-word cross-entropy in nats, in eval mode:

- all positions: every next word of consecutive non-overlapping windows of block_size words,
  each window starting from a zero state (= the val/loss logged during training);
- last word: only the word after each whole window (the reference's training loss, here on
  held-out text), over the same windows, or with --last-word-stride S over windows starting
  every S words (more targets, so less noise, when block_size is long);
- by context length: the all-positions loss split by how many words the model had seen;
- carried state: the validation text read as long streams, the state carried from word to word
  (what generation does; no window limit on the context);
- by kind of target: line ends (||return||), other punctuation tokens, speakers ("jerry:"),
  <unknown>, and the remaining words: their share of the targets and their mean loss.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from movielab.checkpoint import load_model, read_checkpoint, require_same_data
from movielab.cli.evaluate import reference_data
from movielab.errors import user_errors_reported


def window_losses(
    net: torch.nn.Module, tokens: torch.Tensor, block: int, batch_size: int, stride: int | None = None
) -> torch.Tensor:
    """Cross-entropy of every position of windows of `block` words starting every `stride` words
    (default: non-overlapping): (n_windows, block)."""
    stride = stride or block
    starts = torch.arange(0, len(tokens) - block, stride)
    n_windows = len(starts)
    rows = []
    for begin in range(0, n_windows, batch_size):
        windows = tokens[starts[begin : begin + batch_size, None] + torch.arange(block + 1)]
        logits = net(windows[:, :-1])
        rows.append(F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none"))
    return torch.cat(rows)


def target_kinds(tokenizer: Any, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """A boolean mask over the targets for each kind of token."""
    vocab = tokenizer.vocab
    marks = set(tokenizer.punctuation.values())
    kind_of = {
        "line end": [token == tokenizer.punctuation["\n"] for token in vocab],
        "punctuation": [token in marks and token != tokenizer.punctuation["\n"] for token in vocab],
        "speaker": [token.endswith(":") for token in vocab],
        "<unknown>": [i == tokenizer.unknown_id for i in range(len(vocab))],
    }
    masks = {name: torch.tensor(flags)[targets] for name, flags in kind_of.items()}
    masks["other word"] = ~torch.stack(list(masks.values())).any(dim=0)
    return masks


def carried_state_loss(net: torch.nn.Module, tokens: torch.Tensor, streams: int, segment: int) -> float:
    """Mean cross-entropy over `streams` contiguous parts of the text, each read start to end
    with the state carried across segments."""
    length = (len(tokens) - 1) // streams
    rows = torch.stack([tokens[i * length : (i + 1) * length + 1] for i in range(streams)])
    total, count, state = 0.0, 0, None
    for begin in range(0, length, segment):
        chunk = rows[:, begin : min(begin + segment, length) + 1]
        logits, state = net.run(chunk[:, :-1], state)
        total += F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="sum").item()
        count += chunk[:, 1:].numel()
    return total / count


@torch.inference_mode()
def evaluate(
    ckpt: Path,
    batch_size: int,
    streams: int,
    segment: int,
    split: str = "val",
    max_tokens: int | None = None,
    last_word_stride: int | None = None,
) -> dict:
    run = load_model(ckpt)
    data = reference_data(run, None)
    require_same_data(read_checkpoint(ckpt), str(ckpt), data.fingerprint)
    net = run.sampler.net.eval()
    block = int(run.spec.net.config["block_size"])
    tokens = torch.from_numpy(getattr(data, split).tokens[:max_tokens].astype("int64"))
    losses = window_losses(net, tokens, block, batch_size)
    targets = tokens[1 : losses.numel() + 1]
    tokenizer = run.tokenizer
    kinds = target_kinds(tokenizer, targets.view_as(losses))
    last_word = (
        losses[:, -1]
        if last_word_stride in (None, block)  # the windows above already
        else window_losses(net, tokens, block, batch_size, last_word_stride)[:, -1]
    )
    return {
        "checkpoint": str(ckpt),
        "split": split,
        "tokens": len(tokens),
        "vocab_size": tokenizer.vocab_size,
        "unknown_share_of_targets": float((targets == tokenizer.unknown_id).float().mean()),
        "block_size": block,
        "all_positions": float(losses.mean()),
        "last_word": float(last_word.mean()),
        "last_word_targets": last_word.numel(),
        "by_context_length": {i + 1: float(v) for i, v in enumerate(losses.mean(dim=0))},
        "carried_state": carried_state_loss(net, tokens, streams, segment),
        "by_kind": {
            name: {"share": float(mask.float().mean()), "loss": float(losses[mask].mean())}
            for name, mask in kinds.items()
        },
        "windows": losses.size(0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--streams", type=int, default=32, help="contiguous parts read in parallel")
    parser.add_argument("--segment", type=int, default=200, help="words fed per carried-state step")
    parser.add_argument("--split", choices=("val", "train"), default="val")
    parser.add_argument("--max-tokens", type=int, help="only the split's first N tokens")
    parser.add_argument("--last-word-stride", type=int, help="last word of windows starting every N words")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    with user_errors_reported():
        result = evaluate(
            args.ckpt,
            args.batch_size,
            args.streams,
            args.segment,
            args.split,
            args.max_tokens,
            args.last_word_stride,
        )
    print(f"| loss definition ({args.split}, {result['tokens']} words) | loss | perplexity |\n|---|---|---|")
    for name in ("all_positions", "last_word", "carried_state"):
        print(f"| {name.replace('_', ' ')} | {result[name]:.3f} | {math.exp(result[name]):.1f} |")
    print("by context length:", ", ".join(f"{k}: {v:.2f}" for k, v in result["by_context_length"].items()))
    print(f"last word: {result['last_word_targets']} targets")
    print(f"<unknown> share of targets: {result['unknown_share_of_targets']:.2%}")
    print("| kind of target | share | loss |\n|---|---|---|")
    for name, values in result["by_kind"].items():
        print(f"| {name} | {values['share']:.1%} | {values['loss']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
