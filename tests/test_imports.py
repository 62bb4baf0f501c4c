"""Entry points import what they use and no more: writing or evaluating text from a checkpoint never loads
Lightning (and through it torchmetrics, transformers, matplotlib and torch._dynamo, seconds of
start-up: experiments/bench_startup.md), and training does not load the sweeper. Each check
imports the module in a fresh interpreter, so nothing an earlier test loaded counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

TRAINING_LIBRARIES = ("lightning", "torchmetrics", "torch._dynamo", "tensorboard")
HEAVY_EXTRAS = ("matplotlib", "transformers", "optuna", "sqlalchemy")


def modules_loaded_by(module: str, candidates: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps([name for name in {list(candidates)!r} if name in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# all three load checkpoints; evaluate also prepares the run's held-out data, without Lightning
@pytest.mark.parametrize("module", ["movielab.cli.generate", "movielab.cli.predict", "movielab.cli.evaluate"])
def test_using_a_checkpoint_loads_no_training_library(module):
    assert modules_loaded_by(module, TRAINING_LIBRARIES + HEAVY_EXTRAS) == []


def test_training_does_not_load_the_sweeper():
    # Lightning itself loads torchmetrics, matplotlib and transformers (bench_startup.md); Optuna
    # and its database layer are for `-m hparams_search=...` only
    assert modules_loaded_by("movielab.cli.train", ("optuna", "sqlalchemy", "hydra_plugins")) == []
