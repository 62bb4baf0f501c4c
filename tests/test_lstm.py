"""The word LSTM: carried-state decoding, training on the script sample, the reference loss mode,
and generation primed with a speaker."""

from __future__ import annotations

import csv
import json
import logging
import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from movielab.cli.generate import generate_samples
from movielab.cli.train import train
from movielab.data.templates import Template
from movielab.data.text_data import bundled_sample
from movielab.data.tokenizers import CharTokenizer, tokenizer_from_state
from movielab.errors import MovielabError
from movielab.generation import Request, generate_texts
from movielab.models.language_model import CausalLanguageModel
from movielab.models.lstm import LSTM, LSTMConfig, LSTMDecoder
from movielab.models.spec import ModelSpec, Part
from movielab.sampling import SamplingSettings
from tests.builders import module_from_config, tiny_language_model
from tests.conftest import compose_config

TINY_LSTM = [
    "model=lstm",
    "data=seinfeld",
    "model.net.config.embedding_dim=32",
    "model.net.config.hidden_dim=64",
    "model.net.config.dropout=0.1",
    "model.optimizer.lr=0.01",  # a tiny model learns the script's layout within a few dozen steps
    "data.batching.batch_size=32",
    "trainer.accelerator=cpu",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "~callbacks.throughput",
    "~callbacks.text_samples",
    "logger=csv",
]
SCRIPT_TEMPLATE = Template("{text}\n\n", stop=None)


def tiny_lstm(vocab_size: int = 50, n_layer: int = 2, tie_weights: bool = False) -> LSTM:
    torch.manual_seed(0)
    config = LSTMConfig(
        vocab_size, embedding_dim=16, hidden_dim=24, n_layer=n_layer, dropout=0.3, tie_weights=tie_weights
    )
    return LSTM(config).eval()


@pytest.mark.parametrize(("n_layer", "tie_weights"), [(1, False), (3, False), (2, True)])
def test_carried_state_decoding_gives_the_logits_of_a_full_forward(n_layer, tie_weights):
    net = tiny_lstm(n_layer=n_layer, tie_weights=tie_weights)
    idx = torch.randint(0, 50, (3, 17), generator=torch.Generator().manual_seed(1))
    full = net(idx)
    decoder = LSTMDecoder(net)
    prompt_lengths = [5, 2, 9]  # rows with prompts of their own lengths, then one token a step
    first = [decoder.add(idx[i, :n]) for i, n in enumerate(prompt_lengths)]
    for i, n in enumerate(prompt_lengths):
        torch.testing.assert_close(first[i], full[i, n - 1], rtol=1e-5, atol=1e-5)
    for step in range(7):
        logits = decoder.advance(torch.stack([idx[i, n + step] for i, n in enumerate(prompt_lengths)]))
        for i, n in enumerate(prompt_lengths):
            torch.testing.assert_close(logits[i], full[i, n + step], rtol=1e-5, atol=1e-5)


def test_sampling_with_the_carried_state_matches_re_running_the_sequence():
    module = tiny_language_model("lstm", vocab_size=30)
    sampler = module.text_sampler(CharTokenizer(list("abcdefghijklmnopqrstuvwxyz: ")), SCRIPT_TEMPLATE)
    settings = SamplingSettings(temperature=1.0, top_k=5, max_new_tokens=25)
    requests = [Request({"prime": p}, settings, 7 + i) for i, p in enumerate(("ab", "marla: so"))]
    cached = generate_texts(sampler, requests, use_cache=True)
    uncached = generate_texts(sampler, requests, use_cache=False)
    assert [r.text for r in cached] == [r.text for r in uncached]
    assert all(r.new_tokens == 25 for r in cached)


def _train_on_a_cycle_of_40_words(module: CausalLanguageModel) -> tuple[list[float], torch.Tensor]:
    """30 steps on random 10-word windows of 0, 1, ..., 39, 0, 1, ... (every next word predictable):
    the loss of each step, and how many targets the last one scored."""
    tokens = torch.arange(400) % 40
    optimizer = module.configure_optimizers()
    losses = []
    for step in range(30):
        starts = torch.randint(0, 389, (16, 1), generator=torch.Generator().manual_seed(step))
        windows = tokens[starts + torch.arange(11)]
        loss, scored = module._loss({"inputs": windows[:, :-1], "targets": windows[:, 1:]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, scored


def test_tied_weights_share_the_embedding_through_training_and_a_checkpoint(tmp_path):
    net, untied = tiny_lstm(tie_weights=True), tiny_lstm()
    assert net.head.weight is net.embedding.weight
    assert net.projection.weight.shape == (16, 24)  # LSTM output (24) down to the embedding size (16)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == sum(p.numel() for p in untied.parameters()) - 50 * 24 + (24 * 16 + 16)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    idx = torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(0))
    before = net.embedding.weight.detach().clone()
    for _ in range(3):
        loss = F.cross_entropy(net(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(before, net.embedding.weight)
    assert net.head.weight is net.embedding.weight
    torch.save(net.state_dict(), tmp_path / "net.pt")
    loaded = tiny_lstm(tie_weights=True)
    loaded.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    assert loaded.head.weight is loaded.embedding.weight
    torch.testing.assert_close(loaded.eval()(idx), net.eval()(idx))


def test_a_tied_lstm_composed_from_the_config_learns(tmp_path):
    cfg = compose_config(tmp_path, [*TINY_LSTM, "model.net.config.tie_weights=true"])
    module = module_from_config(cfg.model, vocab_size=40)
    assert module.net.head.weight is module.net.embedding.weight
    losses, _ = _train_on_a_cycle_of_40_words(module)
    assert losses[0] > math.log(40) - 0.5  # the uniform embedding init starts near uniform guessing
    assert losses[-1] < losses[0] - 1.0


def _module(loss_on: str) -> CausalLanguageModel:
    config = {"vocab_size": 50, "embedding_dim": 16, "hidden_dim": 24, "dropout": 0.3}
    spec = ModelSpec("language_model", Part("lstm", config), options={"loss_on": loss_on})
    torch.manual_seed(0)
    return CausalLanguageModel(spec, partial(torch.optim.Adam, lr=1e-3)).eval()


def test_reference_mode_scores_only_the_word_after_each_window():
    batch = {"inputs": torch.randint(0, 50, (4, 10)), "targets": torch.randint(0, 50, (4, 10))}
    last, all_positions = _module("last"), _module("all")
    logits = last.net(batch["inputs"])
    loss, scored = last._loss(batch)
    torch.testing.assert_close(loss, F.cross_entropy(logits[:, -1], batch["targets"][:, -1]))
    assert scored == 4
    loss_all, scored_all = all_positions._loss(batch)
    torch.testing.assert_close(loss_all, F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten()))
    assert scored_all == 40
    with pytest.raises(MovielabError, match="loss_on"):
        _module("first")


def _metric(run: Path, name: str) -> list[float]:
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


@pytest.fixture(scope="module")
def script_run(tmp_path_factory) -> Path:
    """A tiny LSTM trained on the bundled (invented) script sample."""
    root = tmp_path_factory.mktemp("lstm")
    best = train(
        compose_config(
            root,
            [
                *TINY_LSTM,
                "data.tokenizer.options.min_freq=2",  # singletons -> <unknown>, a frequent token here
                "trainer.max_steps=90",
                "trainer.val_check_interval=30",
                "trainer.log_every_n_steps=1",
            ],
        )
    )
    assert best is not None and math.isfinite(best)
    return root / "run"


def test_tiny_lstm_loss_falls_on_the_script_sample(script_run):
    vocab = tokenizer_from_state(json.loads((script_run / "tokenizer.json").read_text())).vocab_size
    train_loss, val_loss = _metric(script_run, "train/loss"), _metric(script_run, "val/loss")
    assert len(val_loss) == 3
    assert train_loss[0] > math.log(vocab) - 0.5  # starts near uniform guessing over the words
    assert val_loss[-1] < val_loss[0] < math.log(vocab)
    assert val_loss[-1] < math.log(vocab) - 1.5


def test_reference_mode_is_a_config_option_and_learns(tmp_path):
    cfg = compose_config(tmp_path, [*TINY_LSTM, "model.loss_on=last"])
    module = module_from_config(cfg.model, vocab_size=40)
    assert module.loss_on == "last"
    losses, scored = _train_on_a_cycle_of_40_words(module)
    assert scored == 16
    assert losses[0] > math.log(40) - 0.5 and losses[-1] < losses[0] - 1.0


def test_generate_primed_with_a_speaker_prints_a_script(script_run, tmp_path):
    ckpt = script_run / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        tmp_path,
        [f"ckpt={ckpt}", "prime=marla:", "max_new_tokens=200", "top_k=5", "num_samples=2", "seed=0"],
        config_name="generate",
    )
    texts = [r.text for r in generate_samples(cfg)]
    assert len(texts) == 2
    for text in texts:
        assert text.startswith("marla:") and len(text) > len("marla:")
        assert "||" not in text  # punctuation tokens turned back into marks
        assert "<unknown>" not in text  # never sampled
        assert "\n\n" in text  # utterances on their own lines, a blank line between
        lines = [line for line in text.split("\n") if line]
        assert sum(line.split(" ")[0].endswith(":") for line in lines) >= len(lines) // 2  # "speaker: ..."


def test_prime_words_the_model_never_saw_are_named_once_for_all_samples(script_run, tmp_path, caplog):
    ckpt = script_run / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        tmp_path,
        [f"ckpt={ckpt}", "prime='zorblax: marla:'", "max_new_tokens=5", "num_samples=3", "seed=0"],
        config_name="generate",
    )
    with caplog.at_level(logging.WARNING, logger="movielab"):
        generate_samples(cfg)
    notes = [r.getMessage() for r in caplog.records if "never saw" in r.getMessage()]
    assert notes == [
        "the prompt has words this model never saw in training, read as its unknown token: 'zorblax:'"
    ]


def _char_gpt_on_the_script_sample():  # noqa: ANN202
    sample = bundled_sample("tv_script_sample.txt").read_text(encoding="utf-8")
    tokenizer = CharTokenizer.train([sample])
    module = tiny_language_model(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1)
    return module.text_sampler(tokenizer, SCRIPT_TEMPLATE)


def _texts(sampler, prompt: dict, seed: int = 3) -> list[str]:  # noqa: ANN001
    settings = SamplingSettings(max_new_tokens=40)
    return [r.text for r in generate_texts(sampler, [Request(prompt, settings, seed + i) for i in range(2)])]


def test_prime_starts_the_text_of_a_char_gpt_too():
    sampler = _char_gpt_on_the_script_sample()
    texts = _texts(sampler, {"prime": "dev: so"})
    assert all(text.startswith("dev: so") and len(text) > len("dev: so") for text in texts)
    with pytest.raises(MovielabError, match="does not take title"):
        _texts(sampler, {"title": "Up"})
    with pytest.raises(MovielabError, match="this model writes the text: start it with prime="):
        _texts(sampler, {"text": "Up"})


def test_without_a_prompt_sampling_starts_after_the_template_ending():
    """A "{text}\\n\\n" model given nothing continues from a blank line, i.e. starts a new record."""
    sampler = _char_gpt_on_the_script_sample()
    unprompted = _texts(sampler, {})
    after_blank_line = _texts(sampler, {"prime": "\n\n"})
    assert unprompted == [text.removeprefix("\n\n") for text in after_blank_line]
    assert all(text.startswith("\n\n") for text in after_blank_line)
