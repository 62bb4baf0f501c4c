"""Every config composes, and the train CLI prints the composed config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from hydra.utils import instantiate

from movielab.data.batching import WindowBatching
from movielab.models.spec import data_needs, spec_from_config
from tests.builders import module_from_config
from tests.conftest import CONF_DIR, REPO, compose_config

HYDRA_LOGGING_DISABLED = Path(hydra.__file__).parent / "conf" / "hydra" / "hydra_logging" / "disabled.yaml"


def _options(group: str) -> list[str]:
    """A group's options; `_base` files are shared parts, not options."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("data", _options("data"))
@pytest.mark.parametrize("trainer", _options("trainer"))
def test_data_and_trainer_compose_instantiate_and_take_the_models_lengths(tmp_path, data, trainer):
    cfg = compose_config(tmp_path, [f"data={data}", f"trainer={trainer}"])
    datamodule = instantiate(cfg.data)
    assert datamodule.template.fields  # the template parsed
    datamodule.connect(data_needs(spec_from_config(cfg.model)))
    if isinstance(datamodule.batching, WindowBatching):  # windows as long as the model's context
        assert datamodule.batching.block_size == cfg.model.net.config.block_size
    else:  # rows cut to what the model takes
        assert datamodule.batching.max_length == cfg.model.net.config.block_size
    assert cfg.trainer.max_steps > 0


def test_no_data_config_reads_the_model_config():
    """Values flow model -> data only through connect(): no data config interpolates model.*."""
    for path in (CONF_DIR / "data").glob("*.yaml"):
        assert "${model." not in path.read_text(encoding="utf-8"), path.name


@pytest.mark.parametrize("group", ["experiment", "debug", "logger", "callbacks", "model"])
def test_every_option_of_group_composes(tmp_path, group):
    for option in _options(group):
        required = ["model.net.config.pretrained=some/folder"] if option == "hf_causal_lm" else []
        cfg = compose_config(tmp_path, [f"{group}={option}", *required])
        instantiate(cfg.callbacks.model_checkpoint)
        spec = spec_from_config(cfg.model)  # the model is a registry kind and plain fields
        assert spec.task in ("language_model", "text_gan", "genre_classifier")
        assert "_target_" not in cfg.model.net


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
    assert "kind: gpt" in result.stdout


def test_seinfeld_lstm_tied_is_the_reference_model_tied_on_40_word_windows(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=seinfeld_lstm_tied"])
    config = cfg.model.net.config
    assert (config.embedding_dim, config.hidden_dim, config.n_layer, config.block_size) == (400, 512, 2, 40)
    assert data_needs(spec_from_config(cfg.model)).window_length == 40
    assert cfg.data.batching.batch_size * config.block_size == 256 * 10  # the reference's words per step
    net = module_from_config(cfg.model, vocab_size=100).net
    assert net.head.weight is net.embedding.weight


def test_the_sampling_commands_log_show_movielab_warnings_and_nothing_else():
    """generate/evaluate/predict keep Hydra's job log off, yet a movielab warning (a prompt word
    the model never saw) must reach the terminal, after Hydra's own disabled logging ran."""
    script = f"""
import logging, logging.config, yaml
early = logging.getLogger("movielab.models.language_sampler")  # imported before Hydra sets up logging
hydra_logging = yaml.safe_load(open({str(HYDRA_LOGGING_DISABLED)!r}))
logging.config.dictConfig(hydra_logging)
logging.config.dictConfig(yaml.safe_load(open({str(CONF_DIR / "hydra" / "job_logging" / "warnings.yaml")!r})))
early.warning("an unseen word")
logging.getLogger("movielab.data").info("an info line")
logging.getLogger("lightning.pytorch").warning("a library's warning")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stderr == "WARNING: an unseen word\n"
    assert result.stdout == ""
