"""The rating-conditioned title transformer end to end: trained tiny on titles whose first word
follows the rating, it obeys the rating; generate and the conditioning evaluation need only the
checkpoint; the reference experiment composes and runs on the bundled sample."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from movielab.checkpoint import load_model
from movielab.cli.evaluate import evaluate
from movielab.cli.generate import generate_samples
from movielab.cli.train import train
from movielab.errors import MovielabError
from movielab.metrics import copy_rate
from movielab.optim import noam
from movielab.text_index import TextIndex
from tests.conftest import compose_config

FAST = [
    "experiment=title_transformer",
    "model.net.config.n_layer=2",
    "model.net.config.n_head=2",
    "model.net.config.n_embd=32",
    "model.scheduler.warmup_steps=20",
    "model.optimizer.lr=3e-3",
    "data.batching.batch_size=32",
    "data.tokenizer.options.vocab_size=120",
    "trainer.accelerator=cpu",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "~callbacks.throughput",
    "callbacks.text_samples.num_samples=2",
    "callbacks.text_samples.max_new_tokens=30",
    "callbacks.rating_conditioning.max_new_tokens=30",
    "callbacks.rating_conditioning.samples_per_rating=8",
    "callbacks.rating_conditioning.ratings=[1.5,9]",
    "logger=csv",
]
WORDS = ["Harbor", "Lantern", "Orchard", "Engine", "Comet", "Garden", "Mirror", "Canyon", "Violin", "Meadow"]


@pytest.fixture(scope="module")
def rated_titles(tmp_path_factory) -> Path:
    """IMDB 5000-format titles whose first word says the rating: Golden (8-9.5) or Rotten (1-2.5)."""
    path = tmp_path_factory.mktemp("data") / "movie_metadata.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["movie_title", "genres", "imdb_score"])
        for i in range(240):
            good = i % 2 == 0
            first, second = WORDS[i % 10], WORDS[(i // 10) % 10]
            rating = (8.0 + (i % 16) / 10) if good else (1.0 + (i % 16) / 10)
            title = f"{'Golden' if good else 'Rotten'} {first} of the {second} {i // 100}"
            writer.writerow([title + "\xa0", "Drama", f"{rating:.1f}"])
    return path


@pytest.fixture(scope="module")
def trained(rated_titles, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("title_run")
    cfg = compose_config(
        root,
        [*FAST, f"data.path={rated_titles}", "trainer.max_steps=150", "trainer.val_check_interval=50"],
    )
    assert math.isfinite(train(cfg))
    return root / "run"


def _column(run: Path, name: str) -> list[float]:
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


def test_loss_falls_and_the_titles_obey_the_rating(trained):
    val = _column(trained, "val/loss")
    section = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)["movielab"]
    vocab = section["data"]["vocab_size"]
    assert len(val) == 3 and val[-1] < val[0]
    assert val[-1] < math.log(vocab) - 2.5  # far below guessing uniformly among the pieces
    spearman = _column(trained, "conditioning/spearman")  # logged by the end-of-training evaluation
    assert len(spearman) == 1 and spearman[0] > 0.8
    last = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 150  # the final weights, the ones the evaluation above saw
    heldout = _column(trained, "conditioning/heldout_spearman")  # real validation titles' ratings
    assert len(heldout) == 1 and heldout[0] > 0.7


def test_generate_prints_titles_for_a_rating_each_cut_at_the_end_token(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    titles = {}
    for rating in (9.2, 10.0, 1.5, 0.0):
        cfg = compose_config(
            tmp_path,
            [
                f"ckpt={ckpt}",
                f"rating={rating}",
                "num_samples=12",
                "seed=1",
                "save=false",
                "max_new_tokens=40",
            ],
            config_name="generate",
        )
        titles[rating] = [r.text for r in generate_samples(cfg)]
        assert len(titles[rating]) == 12
        assert all(t and "<end>" not in t and len(t) < 60 for t in titles[rating])
    assert sum(t.startswith("Golden") for t in titles[9.2]) >= 10
    assert sum(t.startswith("Rotten") for t in titles[1.5]) >= 10


def test_bad_ratings_are_one_line_errors(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    for bad, message in [
        ("11", "rating=11 is outside this model's rating scale"),
        ("high", "is not a number"),
    ]:
        cfg = compose_config(
            tmp_path, [f"ckpt={ckpt}", f"rating={bad}", "save=false"], config_name="generate"
        )
        with pytest.raises(MovielabError, match=message):
            generate_samples(cfg)


def test_avoid_training_titles_redraws_copies(trained, rated_titles, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    index = load_model(ckpt).training_index
    with open(rated_titles, newline="", encoding="utf-8") as handle:
        every_title = [row["movie_title"].strip() for row in csv.DictReader(handle)]
    assert 200 <= len(index) <= 240 and sum(t in index for t in every_title) == len(index)
    overrides = [f"ckpt={ckpt}", "rating=9", "num_samples=16", "temperature=1.0", "seed=2", "save=false"]
    overrides.append("max_new_tokens=40")
    copied_results = generate_samples(compose_config(tmp_path, overrides, config_name="generate"))
    copied = [r.text for r in copied_results]
    assert [r.copies_training for r in copied_results] == [t in index for t in copied]
    kept_results = generate_samples(
        compose_config(tmp_path, [*overrides, "avoid_training_titles=true"], config_name="generate")
    )
    kept = [r.text for r in kept_results]
    assert sum(r.redraws for r in kept_results) > 0
    assert index.copy_rate(copied) > 0  # a model this small copies its training titles
    assert index.copy_rate(kept) < index.copy_rate(copied)
    assert index.copy_rate(copied) == copy_rate(copied, [t for t in every_title if t in index])


def test_evaluate_conditioning_command_reads_only_the_checkpoint(trained, tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            "mode=conditioning",
            f"ckpt={trained / 'checkpoints' / 'last.ckpt'}",
            "conditioning.ratings=[1.5,5,9]",
            "conditioning.samples_per_rating=6",
            "conditioning.max_new_tokens=40",
        ],
        config_name="evaluate",
    )
    result = evaluate(cfg)
    assert result.requested == [1.5] * 6 + [5.0] * 6 + [9.0] * 6
    assert result.spearman > 0.7 and result.heldout_spearman > 0.7
    assert 0.0 <= result.metrics()["copy_rate"] <= 1.0 and result.metrics()["distinct_1"] > 0
    [report] = list((trained / "evaluation").glob("*/conditioning.json"))
    assert (report.parent / "conditioning.md").read_text(encoding="utf-8").startswith("# Rating conditioning")


def test_the_reference_experiment_runs_on_the_bundled_sample(tmp_path):
    overrides = [*FAST, "data=imdb_titles", "trainer.max_steps=4", "trainer.val_check_interval=2"]
    cfg = compose_config(tmp_path, overrides)
    assert cfg.data.sample == "imdb_titles_sample.csv" and cfg.data.path is None
    assert cfg.data.rating_scale == [0, 10] and "scale" not in cfg.model.conditions.rating  # bound from data
    train(cfg)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["movielab"]["tokenizer"]["kind"] == "sentencepiece"
    low, high = checkpoint["state_dict"]["conditions.rating.seen_range"].tolist()
    assert 1.0 < low < high < 9.5  # the sample's ratings, recorded while training


def test_noam_warms_up_to_the_optimizer_lr_then_decays_with_the_inverse_square_root():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = noam(optimizer, total_steps=10, warmup_steps=100)
    rates = []
    for _ in range(400):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.01) and rates[99] == pytest.approx(1.0)
    assert rates[399] == pytest.approx(0.5)  # sqrt(100 / 400)


def test_text_index_matches_copy_rate():
    index = TextIndex.from_texts(["The Salt Orchard", "Paper  Lanterns"])
    samples = ["the salt orchard", "Paper Lanterns", "Kessler Station"]
    assert index.copy_rate(samples) == copy_rate(samples, ["The Salt Orchard", "Paper  Lanterns"]) == 2 / 3
    assert TextIndex.from_tensor(index.to_tensor()).fingerprints == index.fingerprints
