"""The Sweeper Hydra instantiates for `hydra/sweeper=movielab_optuna`; movielab.sweeps does the work."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class MovielabOptunaSweeper(Sweeper):
    """Runs an Optuna study through Hydra's launcher, one ask/tell trial at a time."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        from movielab.errors import user_errors_reported
        from movielab.sweeps.optuna_sweep import OptunaSweep

        assert self.config is not None and self.hydra_context is not None and self.launcher is not None
        with user_errors_reported():  # a sweep's own errors as one line too, not Hydra's traceback
            return OptunaSweep(config=self.config, launcher=self.launcher, **self.options).run(arguments)
