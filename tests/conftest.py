"""Shared fixtures: composing the real configs small, tiny data files, the real data beside the repo."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from movielab import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = Path(CONFIG_DIR)
SHARED_DATA = REPO.parent / "shared" / "data"

# a training run on the CPU that prints no progress bar or model summary
QUIET_CPU = [
    "trainer.accelerator=cpu",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
]
# a model and data small enough to train in seconds on a CPU
TINY = [
    "model.net.config.n_layer=2",
    "model.net.config.n_head=2",
    "model.net.config.n_embd=32",
    "model.net.config.block_size=32",
    "data.batching.batch_size=8",
    "data.batching.val_max_windows=32",
    *QUIET_CPU,
]


def compose_config(tmp_path: Path, overrides: list[str] = (), config_name: str = "train") -> DictConfig:
    """Compose conf/<config_name>.yaml as the CLI would, with every output under tmp_path."""
    paths = (
        [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'run'}"]
        if config_name == "train"
        else []
    )
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name=config_name, overrides=[*paths, *overrides])


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} (the shared data folder sits beside the repo)")
    return path


MOVIES = [
    # name, date, tagline, description, rating
    (
        "The Salt Orchard",
        "1987",
        "Grow where nothing grows.",
        "A widow plants apples on a salt flat, and the town laughs.",
        "3.5",
    ),
    ("Kessler Station", "2004", "", 'A night guard, "Moth", hears trains that stopped running in 1961.', ""),
    (
        "Paper Lanterns",
        "2019",
        "Light travels.",
        "Two sisters mail a lantern across the sea,\nand wait for an answer.",
        "4.1",
    ),
    ("No Description Here", "1999", "Silence.", "", "2.0"),
    (
        "Café Niño",
        "2011",
        "",
        "A cook in Seville bets his café on one dish, and loses, and bets again.",
        "3.0",
    ),
]


@pytest.fixture
def movies_csv(tmp_path: Path) -> Path:
    """A Letterboxd-format CSV with quoting, a multi-line field, an empty rating, an empty
    description and extra columns, written the way real exports are."""
    path = tmp_path / "movies.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["movie_id", "name", "date", "tagline", "description", "minute", "rating"])
        for i, (name, date, tagline, description, rating) in enumerate(MOVIES):
            writer.writerow([i, name, date, tagline, description, 90 + i, rating])
    return path


@pytest.fixture(autouse=True)
def _loggers_enabled_after_cli_runs():
    """An in-process CLI run applies Hydra's logging config, which disables existing loggers;
    re-enable movielab's so later tests can read its log lines."""
    yield
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("movielab") and isinstance(logger, logging.Logger):
            logger.disabled = False
    # its console handler writes to the test's captured stream, closed once the test ends: a later
    # test's log line through it would print a 'Logging error' traceback into that test's stderr
    for handler in list(logging.root.handlers):
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
            logging.root.removeHandler(handler)


@pytest.fixture
def one_torch_thread():
    """Tiny models on a busy 2-core machine train fastest on one thread (the sweep and gen/ tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
