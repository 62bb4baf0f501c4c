"""Genre conditioning: the genres reach the model's next-token distribution, unknown genres get a
one-line error naming the known ones, and a tiny genre-conditioned run trains and generates."""

from __future__ import annotations

import sys

import pytest
import torch

from movielab.checkpoint import SECTION, read_checkpoint
from movielab.cli import generate as generate_module
from movielab.cli.evaluate import HELDOUT, evaluate
from movielab.cli.generate import generate_samples, save_samples
from movielab.cli.train import train
from movielab.data.templates import Template
from movielab.data.tokenizers import CharTokenizer
from movielab.errors import MovielabError
from movielab.generation import Request, generate_texts
from movielab.models.genre_prefix import GenrePrefix, GenrePrefixConfig
from movielab.models.language_model import CausalLanguageModel
from movielab.models.next_token import condition_prefix
from movielab.sampling import SamplingSettings
from tests.builders import tiny_language_model
from tests.conftest import compose_config

GENRES = ("comedy", "drama", "horror", "science fiction")


def _model() -> CausalLanguageModel:
    genres = {"genres": ("genre_prefix", {"genres": list(GENRES)})}
    return tiny_language_model(conditions=genres, vocab_size=30, block_size=32)


def test_changing_the_genres_changes_the_next_token_distribution():
    model = _model()
    inputs = torch.randint(0, 30, (1, 6), generator=torch.Generator().manual_seed(0))

    def next_token_probs(genres):
        hot = model.conditions["genres"].value(genres, "genres")[None]
        logits = model.net(inputs, prefix=condition_prefix(model.conditions, {"genres": hot}))
        return logits[0, -1].softmax(-1)

    horror, comedy = next_token_probs(["horror"]), next_token_probs(["comedy"])
    assert (horror - comedy).abs().sum() > 1e-3
    assert torch.allclose(next_token_probs(["Horror"]), horror)  # names are normalised
    both = next_token_probs(["horror", "comedy"])
    assert not torch.allclose(both, horror) and not torch.allclose(both, comedy)


def test_genre_prefix_is_the_mean_of_genre_embeddings_or_the_no_genre_embedding():
    prefix = GenrePrefix(GenrePrefixConfig(4, GENRES)).eval()
    values = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.uint8)
    out = prefix(values)
    assert out.shape == (2, 1, 4)
    expected = (prefix.genre_embeddings[0] + prefix.genre_embeddings[2]) / 2
    torch.testing.assert_close(out[0, 0], expected)
    torch.testing.assert_close(out[1, 0], prefix.no_genre)
    assert prefix.value(["comedy"]).tolist() == [1, 0, 0, 0]
    assert prefix.value(["sci-fi", "drama"]).tolist() == [0, 1, 0, 1]  # names are normalised
    assert prefix.value(None).tolist() == [0, 0, 0, 0]


def test_unknown_genre_is_a_one_line_error_listing_the_known_ones():
    tokenizer = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz \nEND"))
    sampler = _model().text_sampler(tokenizer, Template("{title}\n{description}\nEND\n", stop="END"))
    settings = SamplingSettings(max_new_tokens=5)

    def texts(genres: list[str]) -> list[str]:
        requests = [Request({"genres": genres, "title": "a"}, settings, i) for i in range(2)]
        return [r.text for r in generate_texts(sampler, requests)]

    with pytest.raises(MovielabError) as error:
        texts(["horror", "musical"])
    message = str(error.value)
    assert "\n" not in message
    assert "unknown genre(s) musical" in message and "comedy, drama, horror, science fiction" in message
    written = texts(["horror"])
    assert len(written) == 2 and all(t.startswith("a\n") for t in written)


@pytest.fixture(scope="module")
def genre_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("genre_plots")
    overrides = [
        "experiment=genre_plots",
        "model.net.config.n_layer=1",
        "model.net.config.n_head=2",
        "model.net.config.n_embd=32",
        "model.net.config.block_size=128",
        "data.batching.batch_size=8",
        "trainer.accelerator=cpu",
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        "++trainer.limit_val_batches=2",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        "~callbacks.progress_bar",
        "callbacks.text_samples.max_new_tokens=20",
        "logger=csv",
    ]
    train(compose_config(root, overrides))
    return root / "run"


def test_genre_run_keeps_its_vocabulary_and_generate_takes_known_genres_with_a_title(genre_run, tmp_path):
    ckpt = genre_run / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(ckpt)
    genres = checkpoint[SECTION]["model"]["conditions"]["genres"]["config"]["genres"]
    assert genres == checkpoint[SECTION]["data"]["genres"]
    assert "horror" in genres and "comedy" in genres
    assert checkpoint["state_dict"]["conditions.genres.genre_embeddings"].shape == (len(genres), 32)
    cfg = compose_config(
        tmp_path,
        [f"ckpt={ckpt}", "genres=[horror,comedy]", "title=The Last Lighthouse", "num_samples=2",
         "max_new_tokens=40", "seed=1", "save=false"],
        config_name="generate",
    )  # fmt: skip
    texts = [r.text for r in generate_samples(cfg)]
    assert len(texts) == 2 and all(t.startswith("The Last Lighthouse\n") for t in texts)


def test_generate_cli_unknown_genre_error(genre_run, monkeypatch, capsys):
    ckpt = genre_run / "checkpoints" / "last.ckpt"
    monkeypatch.setattr(sys, "argv", ["movielab", f"ckpt={ckpt}", "genres=[horror,opera]", "title=X"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        generate_module.main()
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "unknown genre(s) opera" in lines[0] and "horror" in lines[0]


def test_evaluate_samples_the_grid_and_writes_table_plot_and_tensorboard(genre_run, tmp_path):
    ckpt = genre_run / "checkpoints" / "last.ckpt"
    options = [f"ckpt={ckpt}", "num_samples=4", "max_new_tokens=30", f"out_dir={tmp_path / 'eval'}"]
    sets = evaluate(compose_config(tmp_path, options, config_name="evaluate"))
    labels = [s.label for s in sets]
    assert labels == [f"T={t} top-p={p}" for t in ("0.7", "1", "1.3") for p in ("off", "0.9")] + [HELDOUT]
    assert all(len(s.samples) == 4 and "bleu_4" in s.metrics for s in sets)
    assert all(len(s.requested) == 4 for s in sets)  # each sample asked for a held-out movie's genres
    (first,) = (tmp_path / "eval").iterdir()
    report = (first / "evaluation.md").read_text(encoding="utf-8")
    assert "| T=1.3 top-p=0.9 |" in report and "distinct_2" in report and "self_bleu_4" in report
    assert (first / "evaluation.png").stat().st_size > 0 and (first / "metrics.json").exists()
    assert list((first / "tensorboard").rglob("events.out.tfevents.*"))

    titles = [f"sample {i}" for i in range(1, 5)]
    saved = save_samples(genre_run, f"# ckpt={ckpt} genres=['horror']\n", sets[0].samples, titles)
    again = evaluate(
        compose_config(
            tmp_path, [f"samples={saved}", "num_samples=4", f"out_dir={tmp_path / 'eval'}"], "evaluate"
        )
    )
    assert [s.label for s in again] == [saved.name, HELDOUT]
    assert again[0].requested == [["horror"]] * 4 and again[0].metrics == sets[0].metrics
    assert len(list((tmp_path / "eval").iterdir())) == 2  # a new folder: the first report is kept
