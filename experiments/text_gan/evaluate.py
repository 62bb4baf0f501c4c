"""Quality and diversity of sampled sentences, for text GANs and MLE models on the same data.

    python experiments/text_gan/evaluate.py \
        --run gan=outputs/text_gan/runs/<stamp>/checkpoints/last.ckpt \
        --run gpt=outputs/text_gan_mle/runs/<stamp>/checkpoints/best-step<N>.ckpt \
        --temperatures 0.5 0.7 1.0 1.3 --samples 500 --out experiments/text_gan/results

For every run and temperature: BLEU-2..4 of the samples against the held-out (validation)
sentences (quality), self-BLEU-4 and distinct-1/2 (diversity), novelty (share of samples not in
the training sentences), all from movielab.metrics on word tokens. The training sentences
themselves are scored the same way as a reference row ("data"). Writes results.json, a Markdown
table (results.md) and the quality-diversity plot (quality_diversity.png).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib
import numpy as np

from movielab import metrics
from movielab.checkpoint import load_model
from movielab.cli.evaluate import reference_data
from movielab.generation import generate_texts, requests_for
from movielab.sampling import SamplingSettings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)

SPECIALS = ("<start>", "<end>", "<pad>")


def split_sentences(tokenizer, split) -> list[str]:  # noqa: ANN001
    special_ids = {tokenizer.token_id(t) for t in SPECIALS}
    return [
        tokenizer.decode([i for i in split.record_tokens(r).tolist() if i not in special_ids])
        for r in range(split.n_records)
    ]


def as_words(tokenizer, text: str) -> str:  # noqa: ANN001
    """Score word tokens (punctuation split off, lower-cased), as the models see them."""
    words = tokenizer.words(text.replace("<start>", " ").replace("<end>", " "))
    return " ".join(words)


def scores(samples: list[str], references: list[str], training: list[str], self_bleu_max: int) -> dict:
    rng = np.random.default_rng(0)
    subset = samples
    if len(samples) > self_bleu_max:
        subset = [samples[i] for i in rng.choice(len(samples), self_bleu_max, replace=False)]
    return {
        "bleu2": metrics.bleu(samples, references, n=2),
        "bleu3": metrics.bleu(samples, references, n=3),
        "bleu4": metrics.bleu(samples, references, n=4),
        "self_bleu4": metrics.self_bleu(subset, n=4),
        "distinct1": metrics.distinct_n(samples, 1),
        "distinct2": metrics.distinct_n(samples, 2),
        "novelty": metrics.novelty(samples, training),
        "mean_words": float(np.mean([len(s.split()) for s in samples])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="name=path/to/checkpoint.ckpt")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.7, 1.0, 1.3])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--self-bleu-samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("experiments/text_gan/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    results, examples = [], {}
    references = training = None
    for spec in args.run:
        name, path = spec.split("=", 1)
        run = load_model(path)
        tokenizer = run.tokenizer
        data = reference_data(run, None)
        run_references = [as_words(tokenizer, t) for t in split_sentences(tokenizer, data.val)]
        run_training = [as_words(tokenizer, t) for t in split_sentences(tokenizer, data.train)]
        if references is None:
            references, training = run_references, run_training
            rng = np.random.default_rng(args.seed)
            real = [training[i] for i in rng.choice(len(training), args.samples, replace=False)]
            real_scores = scores(real, references, training, args.self_bleu_samples)
            real_scores["novelty"] = float("nan")  # training sentences are in the training data
            results.append({"model": "data (training sentences)", "temperature": None, **real_scores})
        elif run_references != references:
            raise SystemExit(f"{name}: other held-out sentences than the first run; use the same data config")
        for temperature in args.temperatures:
            settings = SamplingSettings(temperature=temperature, top_p=None, max_new_tokens=64)
            started = time.perf_counter()
            requests = requests_for({}, settings, args.seed, args.samples)  # sample i: seed + i
            texts = [r.text for r in generate_texts(run.sampler, requests)]
            seconds = time.perf_counter() - started
            samples = [as_words(tokenizer, t) for t in texts]
            row = {
                "model": name,
                "temperature": temperature,
                **scores(samples, references, training, args.self_bleu_samples),
            }
            row["sampling_seconds"] = seconds
            results.append(row)
            examples[f"{name} T={temperature}"] = [t.replace("<start>", "").strip() for t in texts[:10]]
            print(json.dumps(row))

    (args.out / "results.json").write_text(json.dumps({"results": results, "examples": examples}, indent=2))
    columns = ["bleu2", "bleu3", "bleu4", "self_bleu4", "distinct1", "distinct2", "novelty", "mean_words"]
    lines = [
        "| model | T | BLEU-2 | BLEU-3 | BLEU-4 | self-BLEU-4 | distinct-1 | distinct-2 | novelty | words |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        cells = ["-" if np.isnan(row[c]) else f"{row[c]:.3f}" for c in columns[:-1]] + [
            f"{row['mean_words']:.1f}"
        ]
        temperature = "-" if row["temperature"] is None else f"{row['temperature']:g}"
        lines.append(f"| {row['model']} | {temperature} | " + " | ".join(cells) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    figure, axis = plt.subplots(figsize=(6.4, 4.8))
    for name in dict.fromkeys(r["model"] for r in results):
        rows = [r for r in results if r["model"] == name]
        x, y = [r["self_bleu4"] for r in rows], [r["bleu4"] for r in rows]
        axis.plot(x, y, marker="o" if rows[0]["temperature"] is not None else "*", markersize=8, label=name)
        for r in rows:
            if r["temperature"] is not None:
                axis.annotate(f"T={r['temperature']:g}", (r["self_bleu4"], r["bleu4"]), fontsize=7)
    axis.set_xlabel("self-BLEU-4 (lower = more diverse)")
    axis.set_ylabel("BLEU-4 against held-out sentences (higher = closer to the data)")
    axis.set_title("Quality vs diversity across sampling temperatures")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out / "quality_diversity.png", dpi=120)
    print(f"wrote {args.out}/results.json, results.md, quality_diversity.png")


if __name__ == "__main__":
    main()
