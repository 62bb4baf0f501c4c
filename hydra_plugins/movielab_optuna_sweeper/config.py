"""The sweeper's config nodes, registered in Hydra's ConfigStore: `hydra/sweeper=movielab_optuna`,
`hydra/sweeper/sampler=tpe|nsgaii|random|grid|cmaes`, `hydra/sweeper/pruner=none|median|hyperband`.

Samplers and pruners are `_partial_` so the sweeper finishes them: it gives a sampler its seed
(shifted on resume, so a resumed study does not replay its first random draws) and the grid
sampler its grid, built from `params`.
"""

# no `from __future__ import annotations`: Hydra's plugin scanner runs this module before it is in
# sys.modules, where dataclasses look string annotations up
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    _partial_: bool = True
    seed: int | None = None
    n_startup_trials: int = 10
    multivariate: bool = False
    # with several workers on one study, running trials count as "bad" so workers spread out
    constant_liar: bool = True


@dataclass
class NSGAIISamplerConf:
    """NSGA-II, the genetic algorithm of multi-objective search: each generation of
    `population_size` trials is bred from the best of the previous ones (the first is random)."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    _partial_: bool = True
    seed: int | None = None
    # Optuna's default is 50; movielab's sweeps run tens of trials, not hundreds
    population_size: int = 10
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    _partial_: bool = True
    seed: int | None = None


@dataclass
class GridSamplerConf:
    """Every combination of the `choice(...)`/`range(...)` params (the sweeper passes the grid).
    Trial n runs cell n of the grid shuffled by `seed`, so keep one seed for all workers."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: int | None = 0


@dataclass
class CmaEsSamplerConf:
    """CMA-ES over the numeric params (needs the `cmaes` package); choices are sampled at random."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    _partial_: bool = True
    seed: int | None = None
    n_startup_trials: int = 1
    sigma0: float | None = None
    with_margin: bool = False


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"
    _partial_: bool = True


@dataclass
class MedianPrunerConf:
    """Stop a trial whose validation loss is worse than the median of earlier trials at the same
    validation (steps are validations: 1, 2, ...)."""

    _target_: str = "optuna.pruners.MedianPruner"
    _partial_: bool = True
    n_startup_trials: int = 3
    n_warmup_steps: int = 1
    interval_steps: int = 1


@dataclass
class HyperbandPrunerConf:
    """Successive halving in brackets; the resource is the number of validations done."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    _partial_: bool = True
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class MovielabOptunaSweeperConf:
    _target_: str = "hydra_plugins.movielab_optuna_sweeper.sweeper.MovielabOptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    # MISSING, not None: this node is merged after its defaults and must not erase their choice
    sampler: Any = MISSING
    pruner: Any = MISSING
    # "minimize" or "maximize" the value the task returns (movielab.train: cfg.optimized_metric)
    direction: str = "minimize"
    # several objectives instead, read from the metrics each run ends with (then `direction` and
    # the returned value are not used; no pruner): {val/loss: minimize, gen/distinct_2: maximize};
    # on the command line: 'hydra.sweeper.objectives={val/loss:minimize,val/ppl:maximize}'
    objectives: Any = None  # Any, not dict | None: a None dict cannot be set on the command line
    # a trial is feasible when each holds at its end, e.g. ["gen/copy_rate <= 0.05"]; the samplers
    # steer away from infeasible trials and reports leave them off the front;
    # on the command line: "hydra.sweeper.constraints=['gen/copy_rate <= 0.05']"
    constraints: Any = None
    # where the study lives; null: sqlite:///<paths.log_dir>/sweeps/<study_name>.db
    #   sqlite:///path/NAME.db                      one worker on one machine
    #   postgresql+psycopg://USER:PASSWORD@HOST/DB  many workers, many machines (movielab[postgres])
    #   /shared/disk/NAME.log                       journal file: many workers on a shared disk
    storage: str | None = None
    # the same study name and storage resume the study; null: the hparams_search choice
    study_name: str | None = None
    # trials this command runs (a re-run adds as many more); null: until a grid or design is done
    n_trials: int | None = 20
    # stop once the study holds this many trials, counting every worker's (null: no cap)
    max_trials: int | None = None
    # stop with an error once more failures than this fraction of the trials this command plans
    # (n_trials, or the grid's or design's cells), rounded up: 0.25 of 3 stops at the second
    max_failure_rate: float = 0.25
    # search: the sampler proposes every trial. one_factor: the first value of each choice(...) is
    # the baseline; run it and every other value alone (the reference's one-factor-at-a-time tables)
    design: str = "search"
    # seconds between a running trial's heartbeats; a trial silent for 4x this is failed (null: off)
    heartbeat_s: int | None = 60
    # the search space, in Hydra's override syntax: choice(...), range(...), interval(...),
    # int(interval(...)), tag(log, interval(...)); a plain value is passed to every trial
    params: dict[str, str] | None = None


_STORE = ConfigStore.instance()
_STORE.store(
    group="hydra/sweeper", name="movielab_optuna", node=MovielabOptunaSweeperConf, provider="movielab"
)
for _name, _node in {
    "tpe": TPESamplerConf,
    "nsgaii": NSGAIISamplerConf,
    "random": RandomSamplerConf,
    "grid": GridSamplerConf,
    "cmaes": CmaEsSamplerConf,
}.items():
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="movielab")
for _name, _node in {
    "none": NopPrunerConf,
    "median": MedianPrunerConf,
    "hyperband": HyperbandPrunerConf,
}.items():
    _STORE.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="movielab")
