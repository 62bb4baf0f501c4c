"""Every config composes, and the train CLI prints the composed config."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.utils import instantiate

from tests.conftest import CONF_DIR, REPO, compose_config


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("data", _options("data"))
@pytest.mark.parametrize("trainer", _options("trainer"))
def test_data_and_trainer_compose_and_instantiate(tmp_path, data, trainer):
    cfg = compose_config(tmp_path, [f"data={data}", f"trainer={trainer}"])
    if "block_size" in cfg.data.batching:  # window batching; record batching pads whole records
        assert cfg.data.batching.block_size == cfg.model.net.config.block_size
    datamodule = instantiate(cfg.data)
    assert datamodule.template.fields  # the template parsed
    assert cfg.trainer.max_steps > 0


@pytest.mark.parametrize("group", ["experiment", "debug", "logger", "callbacks", "model"])
def test_every_option_of_group_composes(tmp_path, group):
    for option in _options(group):
        cfg = compose_config(tmp_path, [f"{group}={option}"])
        instantiate(cfg.callbacks.model_checkpoint)
        assert "_target_" in cfg.model


def test_moviegpt_is_the_reference_configuration(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=moviegpt"])
    net = cfg.model.net.config
    assert (net.n_embd, net.n_head, net.n_layer, net.block_size, net.dropout) == (768, 8, 8, 256, 0.3)
    assert cfg.data.batching.batch_size == 128
    assert cfg.model.optimizer.lr == 2.5e-4


def test_cli_prints_composed_config():
    result = subprocess.run(
        [sys.executable, "-m", "movielab.train", "--cfg", "job", "model.net.config.n_layer=3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "n_layer: 3" in result.stdout
    assert "movielab.models.gpt.GPT" in result.stdout


def test_seinfeld_lstm_tied_is_the_reference_model_tied_on_40_word_windows(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=seinfeld_lstm_tied", "vocab_size=100"])
    config = cfg.model.net.config
    assert (config.embedding_dim, config.hidden_dim, config.n_layer, config.block_size) == (400, 512, 2, 40)
    assert cfg.data.batching.block_size == 40
    assert cfg.data.batching.batch_size * config.block_size == 256 * 10  # the reference's words per step
    net = instantiate(cfg.model.net)
    assert net.head.weight is net.embedding.weight
