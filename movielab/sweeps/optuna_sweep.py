"""One sweep process: open (or resume) a persistent Optuna study, then ask, launch, tell.

Every process runs its own loop against the shared storage, so several processes, on one machine
or many, can work on one study: `ask()` creates or claims a trial in the storage atomically, so no
trial is run twice. Trials run one at a time through Hydra's launcher in this process; the active
trial is handed to the training code through `movielab.sweeps.active_trial`, where the
`TrialReporter` callback reports validation losses for pruning and records what the trial cost.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from movielab.errors import MovielabError
from movielab.files import atomic_write_text
from movielab.sweeps.active_trial import trial_running
from movielab.sweeps.search_space import SearchSpace, parse_search_space

log = logging.getLogger(__name__)

SEARCH_SPACE_ATTR = "movielab_search_space"
STUDY_FILE = "study.yaml"
DESIGNS = ("search", "one_factor")
STARTED = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class OptunaSweep:
    """The options are the sweeper config's fields (see hydra_plugins/movielab_optuna_sweeper/config.py)."""

    def __init__(
        self,
        config: DictConfig,
        launcher: Launcher,
        sampler: functools.partial,
        pruner: functools.partial | None,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int | None,
        max_trials: int | None,
        max_failure_rate: float,
        design: str,
        heartbeat_s: int | None,
        params: Any,
    ) -> None:
        if design not in DESIGNS:
            raise MovielabError(f"hydra.sweeper.design={design}: expected one of {', '.join(DESIGNS)}")
        if direction not in ("minimize", "maximize"):
            raise MovielabError(f"hydra.sweeper.direction={direction}: expected minimize or maximize")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise MovielabError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: expected 0..1")
        if type(launcher).__name__ != "BasicLauncher":
            raise MovielabError(
                f"hydra/launcher={type(launcher).__name__}: the Optuna sweeper runs each trial in its own "
                "process (hydra/launcher=basic), where the training code reports to the trial; to run "
                "trials in parallel, start more sweep processes on the same storage and study_name"
            )
        self.config = config
        self.launcher = launcher
        self.sampler_factory = sampler
        self.pruner_factory = pruner
        self.direction = direction
        self.study_name = study_name or _default_study_name(config)
        self.storage_url = storage or _default_storage(config, self.study_name)
        self.n_trials = n_trials
        self.max_trials = max_trials
        self.max_failure_rate = max_failure_rate
        self.design = design
        self.heartbeat_s = heartbeat_s
        self.params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else dict(params or {})
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    @property
    def is_grid(self) -> bool:
        return self.sampler_factory.func is optuna.samplers.GridSampler

    def run(self, arguments: list[str]) -> list[JobReturn]:
        space = parse_search_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        if not space.distributions:
            raise MovielabError(
                "the sweep has nothing to vary: give hydra.sweeper.params or choice(...) overrides"
            )
        if self.n_trials is None and self.design == "search" and not self.is_grid:
            raise MovielabError("hydra.sweeper.n_trials=null runs until the grid is done: use sampler=grid")
        study = self._open_study(space)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        atomic_write_text(
            self.sweep_dir / STUDY_FILE,
            OmegaConf.to_yaml({"storage": self.storage_url, "study_name": self.study_name}),
        )
        returns, too_many_failures = self._run_trials(study, space)
        self._write_summary(study)
        if too_many_failures:
            raise RuntimeError(too_many_failures)
        return returns

    # -- the study ------------------------------------------------------------------------------
    def _open_study(self, space: SearchSpace) -> optuna.Study:
        storage = _storage(self.storage_url, self.heartbeat_s)
        pruner = self.pruner_factory() if self.pruner_factory is not None else optuna.pruners.NopPruner()
        try:
            study = optuna.create_study(
                storage=storage, study_name=self.study_name, direction=self.direction, pruner=pruner
            )
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(storage=storage, study_name=self.study_name, pruner=pruner)
            created = False
        if study.direction.name.lower() != self.direction:
            raise MovielabError(
                f"study {self.study_name} in {self.storage_url} is to {study.direction.name.lower()}, "
                f"not {self.direction}: use another hydra.sweeper.study_name"
            )
        described = {"design": self.design, "params": space.describe()}
        stored = study.user_attrs.get(SEARCH_SPACE_ATTR)
        if stored is None:
            study.set_user_attr(SEARCH_SPACE_ATTR, described)
        elif stored != described:
            raise MovielabError(
                f"study {self.study_name} in {self.storage_url} was started with another search space "
                f"({stored}); resume it with the same params, or name a new study with "
                "hydra.sweeper.study_name=..."
            )
        if "objective" not in study.user_attrs:  # names the value column of the report
            study.set_user_attr("objective", str(self.config.get("optimized_metric", "value")))
        existing = len(study.get_trials(deepcopy=False, states=STARTED))
        study.sampler = self._sampler(space, existing)
        if self.design == "one_factor":
            self._enqueue_missing_cells(study, space)
        log.info(
            "%s study %s (%d trials so far) in %s; sampler %s, pruner %s, %s",
            "Created" if created else "Resuming",
            self.study_name,
            existing,
            self.storage_url,
            type(study.sampler).__name__,
            type(study.pruner).__name__,
            f"{self.n_trials} more trials" if self.n_trials is not None else "until every cell has run",
        )
        return study

    def _sampler(self, space: SearchSpace, existing_trials: int) -> optuna.samplers.BaseSampler:
        if self.is_grid:
            return self.sampler_factory(search_space=space.grid())
        seed = self.sampler_factory.keywords.get("seed")
        if seed is None:
            return self.sampler_factory()
        # a resumed study must not replay the random draws that started it
        return self.sampler_factory(seed=seed + existing_trials)

    def _enqueue_missing_cells(self, study: optuna.Study, space: SearchSpace) -> None:
        """Queue every one-factor cell no trial has claimed or finished (failed cells are retried)."""
        claimed = {
            trial.user_attrs.get("cell")
            for trial in study.get_trials(
                deepcopy=False,
                states=(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED),
            )
        }
        for factor, params in space.one_factor_cells():
            cell = factor if factor == "baseline" else f"{factor}={params[factor]}"
            if cell not in claimed:
                study.enqueue_trial(params, user_attrs={"cell": cell, "factor": factor})

    # -- the loop -------------------------------------------------------------------------------
    def _run_trials(self, study: optuna.Study, space: SearchSpace) -> tuple[list[JobReturn], str | None]:
        grid_size = math.prod(len(values) for values in space.grid().values()) if self.is_grid else None
        budget = self.n_trials
        if budget is None:
            budget = grid_size if self.is_grid else len(space.one_factor_cells())
        returns: list[JobReturn] = []
        failures = 0
        while self.n_trials is None or len(returns) < self.n_trials:
            if self._study_is_done(study, grid_size):
                break
            with warnings.catch_warnings():  # heartbeats outside Study.optimize: this loop sends them
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                trial = study.ask()
            if self.design == "one_factor" and "cell" not in trial.user_attrs:
                # another worker took the last cell between the check above and this ask
                trial.set_user_attr("error", "no one-factor cell left to run")
                tell(study, trial, state=TrialState.FAIL)
                break
            params = {name: _suggest(trial, name, d) for name, d in space.distributions.items()}
            ret, state = self._run_trial(study, trial, space.overrides(params))
            returns.append(ret)
            failures += state == TrialState.FAIL
            if failures > self.max_failure_rate * budget:
                return returns, (
                    f"{failures} of {len(returns)} trials failed, more than max_failure_rate="
                    f"{self.max_failure_rate} of {budget}: the sweep stopped (see the errors above)"
                )
        return returns, None

    def _study_is_done(self, study: optuna.Study, grid_size: int | None) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of killed workers stop counting as running
        started = len(study.get_trials(deepcopy=False, states=STARTED))
        if self.max_trials is not None and started >= self.max_trials:
            log.info("The study holds %d trials (max_trials=%d): done", started, self.max_trials)
            return True
        if grid_size is not None and started >= grid_size:
            log.info("Every cell of the %d-cell grid has been run or is running: done", grid_size)
            return True
        if self.design == "one_factor" and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            log.info("Every one-factor cell has been run or is running: done")
            return True
        return False

    def _run_trial(
        self, study: optuna.Study, trial: optuna.Trial, overrides: list[str]
    ) -> tuple[JobReturn, TrialState]:
        trial.set_user_attr("overrides", overrides)
        started = time.perf_counter()
        try:
            with trial_running(trial), self._heartbeat(study, trial):
                [ret] = self.launcher.launch([overrides], initial_job_idx=trial.number)
        except SystemExit as exit_:
            if exit_.code != 2:  # Ctrl-C (Lightning exits 1): stop the sweep
                _tell_failed(study, trial, f"interrupted (exit {exit_.code})")
                raise
            # a MovielabError in the task, already printed on one line: this trial's mistake
            _tell_failed(study, trial, "the task reported an error (printed above)")
            return JobReturn(
                overrides=overrides, status=JobStatus.FAILED, _return_value=exit_
            ), TrialState.FAIL
        except BaseException as error:  # a config that does not compose, Ctrl-C outside training
            _tell_failed(study, trial, f"{type(error).__name__}: {error}")
            raise
        trial.set_user_attr("trial_s", time.perf_counter() - started)
        if ret.hydra_cfg is not None:
            trial.set_user_attr("run_dir", str(ret.hydra_cfg.hydra.runtime.output_dir))
        return ret, self._tell(study, trial, ret)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> TrialState:
        outcome = ret._return_value  # read directly: the property re-raises a failed job's error
        if ret.status == JobStatus.COMPLETED:
            if isinstance(outcome, int | float) and math.isfinite(outcome):
                tell(study, trial, float(outcome))
                log.info(
                    "Trial %d: %s = %.4f", trial.number, self.config.get("optimized_metric", "value"), outcome
                )
                return TrialState.COMPLETE
            _tell_failed(study, trial, f"the task returned {outcome!r}, not a finite number")
            return TrialState.FAIL
        if isinstance(outcome, optuna.TrialPruned):
            tell(study, trial, state=TrialState.PRUNED)
            log.info("Trial %d %s", trial.number, outcome)
            return TrialState.PRUNED
        log.error(
            "Trial %d failed", trial.number, exc_info=outcome if isinstance(outcome, BaseException) else None
        )
        _tell_failed(study, trial, f"{type(outcome).__name__}: {outcome}")
        return TrialState.FAIL

    @contextlib.contextmanager
    def _heartbeat(self, study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
        from optuna.storages._heartbeat import get_heartbeat_thread  # what Study.optimize uses

        with get_heartbeat_thread(trial._trial_id, study._storage):
            yield

    def _write_summary(self, study: optuna.Study) -> None:
        from movielab.sweeps.report import write_sweep_summary

        paths = write_sweep_summary(study, self.sweep_dir, self.storage_url)
        log.info("Sweep summary: %s", ", ".join(str(p) for p in paths))


def tell(study: optuna.Study, trial: optuna.Trial, *args: Any, **kwargs: Any) -> None:
    """`study.tell`, except that the grid sampler's "grid done" signal is not an error here.

    GridSampler calls `study.stop()` after the last cell, which only works inside
    `Study.optimize`; the trial's state is stored before that, and the loop stops on its own.
    """
    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    return trial.suggest_float(
        name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
    )


def _tell_failed(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("error", reason[:2000])
    tell(study, trial, state=TrialState.FAIL, skip_if_finished=True)
    log.warning("Trial %d failed: %s", trial.number, reason.splitlines()[0] if reason else "")


def _default_study_name(config: DictConfig) -> str:
    search = OmegaConf.select(config, "hydra.runtime.choices.hparams_search")
    return str(search) if search not in (None, "null") else str(config.get("task_name", "sweep"))


def _default_storage(config: DictConfig, study_name: str) -> str:
    # paths.* read ${hydra:runtime.cwd}, which Hydra only sets for each job: set it from this sweep's
    # config, so a previous sweep in the same process (tests, notebooks) cannot leak its directory.
    HydraConfig.instance().set_config(config)
    log_dir = Path(str(OmegaConf.select(config, "paths.log_dir", default="outputs")))
    return f"sqlite:///{(log_dir / 'sweeps' / f'{study_name}.db').resolve()}"


def _storage(url: str, heartbeat_s: int | None) -> optuna.storages.RDBStorage:
    parsed = make_url(url)
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}  # wait for other workers' writes
    heartbeat = {"heartbeat_interval": heartbeat_s, "grace_period": 4 * heartbeat_s} if heartbeat_s else {}
    for attempt in range(10):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
            # workers starting together race to create the tables ("table ... already exists");
            # once one has, the others find them
            if attempt == 9:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")
