"""The gen/ metrics callback (`+callbacks/gen_metrics=every_validation|at_end`) on tiny models: logged
to CSV, TensorBoard and trainer.callback_metrics (so a sweep can optimise them) at each validation or
once at the end, and equal to `movielab.evaluate`'s on the same samples (same prompts, seeds and
settings): text metrics, rating recovery Spearman and genre recognition by a classifier."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from movielab.cli.evaluate import evaluate
from movielab.cli.train import train
from movielab.errors import MovielabError
from tests.conftest import QUIET_CPU, TINY, compose_config

SAMPLING = {"num_samples": 6, "max_new_tokens": 60, "temperature": 1.0, "seed": 3}
GEN = [f"callbacks.gen_metrics.{name}={value}" for name, value in SAMPLING.items()]
QUIET = [*QUIET_CPU, "~callbacks.throughput", "callbacks.text_samples=null"]
TEXT_METRICS = {"words", "copy_rate", "novelty_4gram", "distinct_1", "distinct_2", "self_bleu_4", "bleu_4"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _logged(run: Path, prefix: str = "gen/") -> list[tuple[int, dict[str, float]]]:
    """(step, {name: value}) of each CSV row that holds metrics named prefix*."""
    found = []
    for row in _rows(run):
        values = {k.removeprefix(prefix): float(v) for k, v in row.items() if k.startswith(prefix) and v}
        if values:
            found.append((int(row["step"]), values))
    return found


def _evaluate_grid(tmp_path: Path, ckpt: Path, *extra: str, max_new_tokens: int = 60) -> dict[str, float]:
    """movielab.evaluate's one cell sampled as the callback samples: temperature 1, top-p off."""
    sampling = {**SAMPLING, "max_new_tokens": max_new_tokens}
    overrides = [
        f"ckpt={ckpt}",
        "temperatures=[1.0]",
        "top_ps=[null]",
        "top_k=null",
        "ngram=4",
        f"out_dir={tmp_path / 'evaluation'}",
        *(f"{k}={v}" for k, v in sampling.items() if k != "temperature"),
        *extra,
    ]
    return evaluate(compose_config(tmp_path, overrides, config_name="evaluate"))[0].metrics


def _same(logged: dict[str, float], evaluated: dict[str, float], names: set[str]) -> None:
    """The callback logged `names` and every text metric evaluate reports, with evaluate's values."""
    text = {name for name in evaluated if name != "samples"}
    assert names <= text and text <= set(logged), (names - text, text - set(logged))
    for name in text:  # the loggers hold float32
        assert logged[name] == pytest.approx(evaluated[name], rel=1e-6, abs=1e-7), name


def test_gen_metrics_are_logged_each_validation_and_equal_movielab_evaluates(tmp_path):
    overrides = [
        *TINY,
        "+callbacks/gen_metrics=every_validation",
        *GEN,
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        "logger=[csv,tensorboard]",
        "optimized_metric=gen/distinct_2",  # any gen/ metric is in trainer.callback_metrics
    ]
    returned = train(compose_config(tmp_path, overrides))
    run = tmp_path / "run"
    logged = _logged(run)
    assert [step for step, _ in logged] == [19, 39]  # after each validation (CSV steps count from 0)
    final = logged[-1][1]
    assert returned == pytest.approx(final["distinct_2"])
    assert logged[0][1] != final  # the weights changed between validations, and so did the samples
    _same(final, _evaluate_grid(tmp_path, run / "checkpoints" / "last.ckpt"), TEXT_METRICS)

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert {f"gen/{name}" for name in TEXT_METRICS} <= set(events.Tags()["scalars"])
    assert events.Scalars("gen/copy_rate")[-1].value == pytest.approx(final["copy_rate"])


@pytest.fixture(scope="module")
def rated_titles(tmp_path_factory) -> Path:
    """IMDB 5000-format titles whose first word says the rating (as tests/test_title_transformer.py)."""
    path = tmp_path_factory.mktemp("titles") / "movie_metadata.csv"
    words = ["Harbor", "Lantern", "Orchard", "Engine", "Comet", "Garden", "Mirror", "Canyon"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["movie_title", "genres", "imdb_score"])
        for i in range(200):
            good = i % 2 == 0
            rating = (8.0 + (i % 16) / 10) if good else (1.0 + (i % 16) / 10)
            title = f"{'Golden' if good else 'Rotten'} {words[i % 8]} of the {words[(i // 8) % 8]}"
            writer.writerow([title, "Drama", f"{rating:.1f}"])
    return path


def test_rating_spearman_at_the_end_of_training_equals_evaluate_conditioning(tmp_path, rated_titles):
    overrides = [
        "experiment=title_transformer",
        f"data.path={rated_titles}",
        "data.tokenizer.options.vocab_size=80",
        "data.batching.batch_size=32",
        "model.net.config.n_layer=2",
        "model.net.config.n_head=2",
        "model.net.config.n_embd=32",
        "model.optimizer.lr=3e-3",
        "model.scheduler.warmup_steps=20",
        "trainer.max_steps=80",
        "trainer.val_check_interval=40",
        *QUIET,
        "~callbacks.rating_conditioning",
        "logger=csv",
        "+callbacks/gen_metrics=at_end",
        *GEN,
        "callbacks.gen_metrics.max_new_tokens=24",
        "callbacks.gen_metrics.rating_samples=6",
        "callbacks.gen_metrics.ratings=[1.5,9]",
        "optimized_metric=gen/rating_spearman",
    ]
    returned = train(compose_config(tmp_path, overrides))
    run, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    [(step, final)] = _logged(run)  # once, at the end: none after the validations
    assert step == 80 and math.isfinite(returned) and returned == pytest.approx(final["rating_spearman"])
    assert returned > 0.5  # the titles carry their rating (Golden / Rotten)
    conditioning = evaluate(
        compose_config(
            tmp_path,
            [
                "mode=conditioning",
                f"ckpt={ckpt}",
                "seed=3",
                "conditioning.ratings=[1.5,9]",
                "conditioning.samples_per_rating=6",
                "conditioning.temperature=1.0",
                "conditioning.top_p=null",
                "conditioning.max_new_tokens=24",
                "conditioning.heldout=false",
                f"out_dir={tmp_path / 'evaluation'}",
            ],
            config_name="evaluate",
        )
    )
    assert final["rating_spearman"] == pytest.approx(conditioning.spearman, rel=1e-6)
    assert final["rating_mean_abs_error"] == pytest.approx(conditioning.mean_abs_error, rel=1e-6)
    grid = _evaluate_grid(tmp_path, ckpt, max_new_tokens=24)  # "rating unknown" samples, as logged
    _same(final, grid, TEXT_METRICS)


GENRE_DATA = [
    "model.net.config.n_layer=1",
    "model.net.config.n_head=2",
    "model.net.config.n_embd=32",
    "model.net.config.block_size=128",
    "data.batching.batch_size=16",
    "trainer.max_steps=20",
    "trainer.val_check_interval=20",
    "++trainer.limit_val_batches=2",
    *QUIET,
    "logger=csv",
]


def test_genre_recognition_by_a_classifier_equals_evaluates_and_a_wrong_checkpoint_is_refused(tmp_path):
    classifier_root, writer_root = tmp_path / "classifier", tmp_path / "writer"
    train(compose_config(classifier_root, ["experiment=genre_classifier", *GENRE_DATA]))
    classifier = classifier_root / "run" / "checkpoints" / "last.ckpt"
    gen = ["+callbacks/gen_metrics=at_end", *GEN, f"callbacks.gen_metrics.classifier={classifier}"]
    train(compose_config(writer_root, ["experiment=genre_plots", *GENRE_DATA, *gen]))
    [(_, final)] = _logged(writer_root / "run")
    assert 0 <= final["genre_recall"] <= 1 and 0 <= final["genre_top1"] <= 1
    evaluated = _evaluate_grid(
        tmp_path, writer_root / "run" / "checkpoints" / "last.ckpt", f"classifier={classifier}"
    )
    _same(final, evaluated, TEXT_METRICS | {"genre_recall", "genre_top1"})

    # a language model where the classifier belongs fails before training, naming the option
    writer = writer_root / "run" / "checkpoints" / "last.ckpt"
    wrong = ["experiment=genre_plots", *GENRE_DATA, *gen, f"callbacks.gen_metrics.classifier={writer}"]
    with pytest.raises(MovielabError, match=f"gen_metrics classifier={writer} is not a genre classifier"):
        train(compose_config(tmp_path / "wrong", wrong))
    assert not (tmp_path / "wrong" / "run" / "checkpoints").exists()
