"""Does a rating-conditioned model obey the rating? Sample titles at ratings across the range,
recover each title's rating from the model's own likelihood, and correlate the two.

Each title t sampled at a requested rating is scored under every requested rating c, log p(t | c);
the recovered rating is the c under which t is most likely. Were the rating ignored, recovered and
requested ratings would be unrelated (Spearman near 0); the more a title carries its rating, the
nearer Spearman comes to 1. The judge is the model itself: this measures whether its titles at
different ratings differ in the way it learned ratings differ, not whether people would agree.
The same recovery applied to real held-out titles and their real ratings (heldout_spearman) shows
how much of its rating a real title reveals to the model: the yardstick for the generated titles.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from movielab.data.batching import pad_id_lists
from movielab.data.token_cache import TokenSplit
from movielab.evaluation.training_texts import record_texts
from movielab.generation import Request, generate_texts
from movielab.metrics import distinct_n
from movielab.models.conditioning import RATING_STEPS, RatingPrefix
from movielab.models.language_sampler import LanguageModelSampler
from movielab.models.modes import evaluating
from movielab.sampling import SamplingSettings
from movielab.text_index import TextIndex


def spearman(recovered: list[float], requested: list[float]) -> float:
    if len(set(recovered)) < 2 or len(set(requested)) < 2:
        return math.nan  # one side is constant: no ranking to correlate
    from torchmetrics.functional import spearman_corrcoef  # here: importing torchmetrics takes ~2 s

    return float(spearman_corrcoef(torch.tensor(recovered), torch.tensor(requested, dtype=torch.float32)))


@dataclass
class RatingEvaluation:
    requested: list[float]
    recovered: list[float]
    titles: list[str]
    copy_rate: float | None  # None when no index of the training texts was at hand
    heldout_spearman: float | None = None  # the yardstick: real held-out titles, see heldout_spearman()

    @property
    def spearman(self) -> float:
        return spearman(self.recovered, self.requested)

    @property
    def mean_abs_error(self) -> float:
        return float(np.mean(np.abs(np.array(self.recovered) - np.array(self.requested))))

    def metrics(self) -> dict[str, float]:
        metrics = {
            "spearman": self.spearman,
            "mean_abs_error": self.mean_abs_error,
            "distinct_1": distinct_n(self.titles, 1),
            "distinct_2": distinct_n(self.titles, 2),
            "samples": float(len(self.titles)),
        }
        if self.copy_rate is not None:
            metrics["copy_rate"] = self.copy_rate
        if self.heldout_spearman is not None:
            metrics["heldout_spearman"] = self.heldout_spearman
        return metrics

    def by_rating(self) -> dict[float, list[tuple[str, float]]]:
        """Requested rating -> [(title, recovered rating)], in the order sampled."""
        rows: dict[float, list[tuple[str, float]]] = defaultdict(list)
        for rating, title, recovered in zip(self.requested, self.titles, self.recovered, strict=True):
            rows[rating].append((title, recovered))
        return dict(rows)

    def table(self, examples: int = 3) -> str:
        """Markdown: the summary metrics, then per requested rating the mean recovered rating and,
        with `examples`, that many sample titles."""
        lines = ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in self.metrics().items()]
        lines += ["", "| requested | mean recovered |" + (" sample titles |" if examples else "")]
        lines.append("|---|---|" + ("---|" if examples else ""))
        for rating, rows in self.by_rating().items():
            line = f"| {rating:g} | {np.mean([recovered for _, recovered in rows]):.2f} |"
            if examples:
                titles = " / ".join(title or "(empty)" for title, _ in rows[:examples])
                line += f" {titles.replace('|', chr(92) + '|')} |"
            lines.append(line)
        return "\n".join(lines)


def default_ratings(encoder: RatingPrefix, count: int = 9) -> list[float]:
    """`count` ratings evenly across those seen in training (the whole scale if none were seen),
    on the encoder's 0.1-of-10 grid."""
    low, high = encoder.seen_range.tolist()
    if not low <= high:
        low, high = encoder.scale
    step = (encoder.high - encoder.low) / RATING_STEPS
    grid = {
        round(encoder.low + round((v - encoder.low) / step) * step, 6) for v in np.linspace(low, high, count)
    }
    return sorted(grid)


def padded_rows(rows: list[np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Token rows as a batch whose inputs hold every token (one padding column more than the
    longest row), so a one-token row still has its first token as input."""
    tokens, real = pad_id_lists(rows, width=max(len(r) for r in rows) + 1)
    targets = tokens[:, 1:].masked_fill(~real[:, 1:], -100)
    return {"inputs": tokens[:, :-1].to(device), "targets": targets.to(device)}


@torch.inference_mode()
def recover_ratings(
    model: LanguageModelSampler,
    titles: list[str],
    candidates: list[float],
    name: str = "rating",
    batch_rows: int = 4096,
) -> list[float]:
    """For each title, the candidate rating under which the model finds it most likely (each
    title scored as written followed by the template's stop)."""
    # a title longer than the context is scored by its beginning (the same for every candidate)
    room = model.net.max_context - sum(encoder.n_positions for encoder in model.conditions.values())
    stop = model.template.stop or ""
    encoded = [model.tokenizer.encode(title + stop)[:room] for title in titles]
    pairs = [(i, c) for i in range(len(titles)) for c in range(len(candidates))]
    scores = torch.empty(len(titles), len(candidates))
    with evaluating(model.net, *model.conditions.values()):
        for begin in range(0, len(pairs), batch_rows):
            chunk = pairs[begin : begin + batch_rows]
            batch = padded_rows([encoded[i] for i, _ in chunk], model.device)
            batch[name] = torch.tensor([candidates[c] for _, c in chunk], device=model.device)
            likelihood = model.sequence_log_likelihood(batch).cpu()
            for (i, c), value in zip(chunk, likelihood.tolist(), strict=True):
                scores[i, c] = value
    return [candidates[j] for j in scores.argmax(dim=1).tolist()]


def heldout_spearman(
    model: LanguageModelSampler,
    split: TokenSplit,
    candidates: list[float],
    name: str = "rating",
    limit: int = 2000,
) -> float:
    """The same recovery on real held-out titles (up to `limit`) against their real ratings: how much
    of its rating a real title reveals to this model, the yardstick for the generated titles'."""
    ratings = np.asarray(split.values[name], dtype=np.float64)
    rows = np.flatnonzero(~np.isnan(ratings))[:limit]
    texts = record_texts(model.tokenizer, split, model.template)
    titles = [texts[i] for i in rows]
    recovered = recover_ratings(model, titles, candidates, name)
    return spearman(recovered, ratings[rows].tolist())


def evaluate_rating_conditioning(
    model: LanguageModelSampler,
    settings: SamplingSettings,
    ratings: list[float] | None = None,
    samples_per_rating: int = 20,
    index: TextIndex | None = None,
    seed: int = 0,
    name: str = "rating",
    heldout: TokenSplit | None = None,
) -> RatingEvaluation:
    """Sample `samples_per_rating` titles at each rating (default: 9 across those seen in training),
    recover their ratings, and measure copies of training titles and diversity; with a `heldout`
    split (validation), also the yardstick Spearman on its real titles. Sample i has seed seed + i."""
    encoder = model.conditions[name]
    ratings = sorted(float(r) for r in ratings) if ratings else default_ratings(encoder)
    requested = [r for r in ratings for _ in range(samples_per_rating)]
    requests = [Request({name: r}, settings, seed + i) for i, r in enumerate(requested)]
    with evaluating(model.net, *model.conditions.values()):
        titles = [result.text for result in generate_texts(model, requests, device=model.device)]
    recovered = recover_ratings(model, titles, ratings, name)
    copy_rate = index.copy_rate(titles) if index is not None else None
    yardstick = None
    if heldout is not None:
        yardstick = heldout_spearman(model, heldout, ratings, name)
    return RatingEvaluation(requested, recovered, titles, copy_rate, yardstick)
