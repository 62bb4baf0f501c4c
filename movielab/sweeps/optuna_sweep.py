"""One sweep process: open (or resume) a persistent Optuna study, then ask, launch, tell.

Every process runs its own loop against the shared storage, so several processes, on one machine
or many, can work on one study: `ask()` creates or claims a trial in the storage atomically, so no
trial is run twice. Trials run one at a time through Hydra's launcher in this process; the active
trial is handed to the training code through `movielab.sweeps.active_trial`, where the
`TrialReporter` callback reports validation losses for pruning and records what the trial cost
and the metrics it ended with (a multi-objective study's objectives are read from those).

Before each trial, the trials of workers that are gone (killed, crashed) are failed
(`abandoned_trials`), so a sweep killed and started again, or one of many workers lost, does not
leave trials running for ever.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from movielab.errors import MovielabError, ReportedExit
from movielab.files import atomic_write_text
from movielab.sweeps.abandoned_trials import WORKER_ATTR, fail_abandoned_trials, this_worker
from movielab.sweeps.active_trial import trial_running
from movielab.sweeps.cell_claims import CELL_ATTR, DUPLICATE_ATTR, earlier_claim
from movielab.sweeps.objectives import METRICS_ATTR, MetricUnavailable, Objectives
from movielab.sweeps.search_space import SearchSpace, parse_search_space
from movielab.sweeps.storage import GRACE_HEARTBEATS, display, is_sqlite, normalise, open_storage
from movielab.sweeps.trial_reporter import multi_process_refusal

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
        objectives: Any,
        constraints: Any,
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
        self.objectives = Objectives.from_config(
            OmegaConf.to_container(objectives) if isinstance(objectives, DictConfig) else objectives,
            str(config.get("optimized_metric", "value")),
            direction,
            list(constraints) if constraints is not None else None,
        )
        if self.objectives.is_multi and pruner is not None and pruner.func is not optuna.pruners.NopPruner:
            raise MovielabError(
                f"hydra/sweeper/pruner ({pruner.func.__name__}): Optuna prunes single-objective "
                f"studies only, and this one has {len(self.objectives.names)} objectives; "
                "add hydra/sweeper/pruner=none"
            )
        if self.objectives.is_multi and sampler.func is optuna.samplers.CmaEsSampler:
            raise MovielabError(
                "hydra/sweeper/sampler=cmaes optimises one objective: use tpe, nsgaii, random or grid"
            )
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
        self.study_name = study_name or _default_study_name(config)
        self.storage_url = normalise(storage or _default_storage(config, self.study_name))
        self.n_trials = n_trials
        self.max_trials = max_trials
        self.max_failure_rate = max_failure_rate
        self.design = design
        self.heartbeat_s = heartbeat_s
        self.params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else dict(params or {})
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.warned_about_sqlite = False

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
        self._refuse_multi_process_trials(list(space.fixed.values()))
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
            raise MovielabError(too_many_failures)
        return returns

    # -- the study ------------------------------------------------------------------------------
    def _open_study(self, space: SearchSpace) -> optuna.Study:
        storage = open_storage(self.storage_url, self.heartbeat_s)
        pruner = self.pruner_factory() if self.pruner_factory is not None else optuna.pruners.NopPruner()
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=self.study_name,
                directions=self.objectives.directions,
                pruner=pruner,
            )
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(storage=storage, study_name=self.study_name, pruner=pruner)
            created = False
        where = f"study {self.study_name} in {display(self.storage_url)}"
        stored_goals = [d.name.lower() for d in study.directions]
        stored_names = study.user_attrs.get("objectives") or (
            [study.user_attrs["objective"]] if "objective" in study.user_attrs else self.objectives.names
        )
        if stored_goals != self.objectives.directions or stored_names != self.objectives.names:
            stored = ", ".join(f"{d} {n}" for n, d in zip(stored_names, stored_goals, strict=False))
            raise MovielabError(
                f"{where} is to {stored}, not {self.objectives.describe()}: "
                "use another hydra.sweeper.study_name"
            )
        for attr, value in {
            SEARCH_SPACE_ATTR: {"design": self.design, "params": space.describe()},
            "constraints": [str(c) for c in self.objectives.constraints],
        }.items():
            stored = study.user_attrs.get(attr)
            if stored is None:
                study.set_user_attr(attr, value)
            elif stored != value:
                raise MovielabError(
                    f"{where} was started with other {attr.removeprefix('movielab_').replace('_', ' ')} "
                    f"({stored}); resume it with the same, or name a new study with "
                    "hydra.sweeper.study_name=..."
                )
        if "objectives" not in study.user_attrs:  # name the value columns of the report
            study.set_user_attr("objectives", self.objectives.names)
            study.set_user_attr("objective", self.objectives.names[0])
        existing = len(study.get_trials(deepcopy=False, states=STARTED))
        study.sampler = self._sampler(space, existing)
        if self.design == "one_factor":
            self._enqueue_missing_cells(study, space)
        log.info(
            "%s study %s (%d trials so far) in %s; sampler %s, pruner %s, %s",
            "Created" if created else "Resuming",
            self.study_name,
            existing,
            display(self.storage_url),
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
            trial.user_attrs.get(CELL_ATTR)
            for trial in study.get_trials(
                deepcopy=False,
                states=(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED),
            )
        }
        for factor, params in space.one_factor_cells():
            cell = factor if factor == "baseline" else f"{factor}={params[factor]}"
            if cell not in claimed:
                study.enqueue_trial(params, user_attrs={CELL_ATTR: cell, "factor": factor})

    # -- the loop -------------------------------------------------------------------------------
    def _run_trials(self, study: optuna.Study, space: SearchSpace) -> tuple[list[JobReturn], str | None]:
        grid_size = math.prod(len(values) for values in space.grid().values()) if self.is_grid else None
        budget = self.n_trials
        if budget is None:
            budget = grid_size if self.is_grid else len(space.one_factor_cells())
        # counted against the trials planned, rounded up: one NaN in 3 trials does not stop a sweep
        # at the default 0.25, a second does; max_failure_rate=0 stops at the first failure
        allowed_failures = math.ceil(round(self.max_failure_rate * budget, 9))
        returns: list[JobReturn] = []
        failures: list[str] = []
        while self.n_trials is None or len(returns) < self.n_trials:
            if self._study_is_done(study, grid_size):
                break
            with warnings.catch_warnings():  # heartbeats outside Study.optimize: this loop sends them
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                trial = study.ask()
            if self.design == "one_factor" and CELL_ATTR not in trial.user_attrs:
                # another worker took the last cell between the check above and this ask
                trial.set_user_attr("error", "no one-factor cell left to run")
                tell(study, trial, state=TrialState.FAIL)
                break
            if self.design == "one_factor" and (earlier := earlier_claim(study, trial)) is not None:
                # two workers that started together both queued this cell: it is the earlier one's
                trial.set_user_attr(DUPLICATE_ATTR, earlier)
                trial.set_user_attr("error", f"cell {trial.user_attrs[CELL_ATTR]} is trial {earlier}'s")
                tell(study, trial, state=TrialState.FAIL)
                continue
            params = {name: _suggest(trial, name, d) for name, d in space.distributions.items()}
            ret, state = self._run_trial(study, trial, space.overrides(params))
            returns.append(ret)
            if state == TrialState.FAIL:
                failures.append(f"trial {trial.number}: {_first_line(trial.user_attrs.get('error', '?'))}")
            if len(failures) > allowed_failures:
                return returns, (
                    f"the sweep stopped: {len(failures)} of its {len(returns)} trials failed, more than "
                    f"max_failure_rate={self.max_failure_rate} of the {budget} planned allows "
                    f"({allowed_failures}); the first: {failures[0]}"
                )
        return returns, None

    def _study_is_done(self, study: optuna.Study, grid_size: int | None) -> bool:
        grace_s = GRACE_HEARTBEATS * self.heartbeat_s if self.heartbeat_s else None
        fail_abandoned_trials(study, grace_s)  # trials of killed workers stop counting as running
        self._warn_if_sqlite_is_shared(study)
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

    def _warn_if_sqlite_is_shared(self, study: optuna.Study) -> None:
        """Between two trials this worker runs none, so a running trial is another worker's."""
        if self.warned_about_sqlite or not is_sqlite(self.storage_url):
            return
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running:
            self.warned_about_sqlite = True
            log.warning(
                "Trial %d of this SQLite study runs in another worker: SQLite locks up under several "
                "writers; for many workers use PostgreSQL (hydra.sweeper.storage=postgresql+psycopg://"
                "USER:PASSWORD@HOST/DB) or a journal file on a shared disk (hydra.sweeper.storage="
                "/shared/sweeps/%s.log)",
                running[0].number,
                self.study_name,
            )

    def _refuse_multi_process_trials(self, overrides: list[str]) -> None:
        """Refuse a sweep whose trials would train on several processes, before any trial starts:
        Lightning's DDP launcher starts each extra rank as a copy of this command (`-m` included),
        which would run sweeps of its own. The TrialReporter refuses too, as a backstop."""
        world_size = _world_size(self.launcher, self.config, overrides)
        if world_size is not None and world_size > 1:
            raise MovielabError(multi_process_refusal(world_size))

    def _run_trial(
        self, study: optuna.Study, trial: optuna.Trial, overrides: list[str]
    ) -> tuple[JobReturn, TrialState]:
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr(WORKER_ATTR, this_worker())
        started = time.perf_counter()
        try:
            with trial_running(trial), self._heartbeat(study, trial):
                [ret] = self.launcher.launch([overrides], initial_job_idx=trial.number)
        except SystemExit as exit_:
            if exit_.code != 2:  # Ctrl-C (Lightning exits 1): stop the sweep
                _tell_failed(study, trial, f"interrupted (exit {exit_.code})")
                raise
            # a MovielabError in the task, already printed on one line: this trial's mistake
            reason = exit_.reason if isinstance(exit_, ReportedExit) else None
            _tell_failed(study, trial, reason or "the task reported an error (printed above)")
            return JobReturn(
                overrides=overrides, status=JobStatus.FAILED, _return_value=exit_
            ), TrialState.FAIL
        except BaseException as error:  # a config that does not compose, Ctrl-C outside training
            _tell_failed(study, trial, f"{type(error).__name__}: {error}")
            raise
        try:
            trial.set_user_attr("trial_s", time.perf_counter() - started)
            if ret.hydra_cfg is not None:
                trial.set_user_attr("run_dir", str(ret.hydra_cfg.hydra.runtime.output_dir))
            return ret, self._tell(study, trial, ret)
        except optuna.exceptions.UpdateFinishedTrialError:
            # its heartbeats came later than the grace period (a starved machine), so another worker
            # declared it lost and failed it; the study keeps that verdict and the sweep goes on
            log.warning(
                "Trial %d was failed by another worker while it ran (its heartbeat was late); "
                "its result is not recorded",
                trial.number,
            )
            return ret, TrialState.FAIL

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> TrialState:
        outcome = ret._return_value  # read directly: the property re-raises a failed job's error
        if ret.status == JobStatus.COMPLETED:
            try:
                values = self._objective_values(trial, outcome)
                violations = (
                    self.objectives.violations(self._metrics(trial)) if self.objectives.constraints else {}
                )
            except MetricUnavailable as error:
                _tell_failed(study, trial, str(error))
                return TrialState.FAIL
            for name, violation in violations.items():
                trial.set_constraint(name, violation)
            tell(study, trial, values if self.objectives.is_multi else values[0])
            log.info(
                "Trial %d: %s%s",
                trial.number,
                ", ".join(f"{n} = {v:.4f}" for n, v in zip(self.objectives.names, values, strict=True)),
                " (infeasible: " + ", ".join(n for n, v in violations.items() if v > 0) + ")"
                if any(v > 0 for v in violations.values())
                else "",
            )
            return TrialState.COMPLETE
        if isinstance(outcome, optuna.TrialPruned):
            tell(study, trial, state=TrialState.PRUNED)
            log.info("Trial %d %s", trial.number, outcome)
            return TrialState.PRUNED
        # a crash's traceback helps; a non-finite loss says all in its one line
        crash = isinstance(outcome, BaseException) and not isinstance(outcome, FloatingPointError)
        log.error("Trial %d failed", trial.number, exc_info=outcome if crash else None)
        _tell_failed(study, trial, f"{type(outcome).__name__}: {outcome}")
        return TrialState.FAIL

    def _objective_values(self, trial: optuna.Trial, outcome: Any) -> list[float]:
        if self.objectives.from_metrics:
            return self.objectives.values(self._metrics(trial))
        if isinstance(outcome, int | float) and math.isfinite(outcome):
            return [float(outcome)]
        raise MetricUnavailable(f"the task returned {outcome!r}, not a finite number")

    def _metrics(self, trial: optuna.Trial) -> dict[str, float]:
        metrics = trial.user_attrs.get(METRICS_ATTR)
        if not isinstance(metrics, dict):
            raise MetricUnavailable(
                "the run recorded no final metrics: keep callbacks.sweep_trial "
                "(movielab.sweeps.trial_reporter.TrialReporter) in the callbacks"
            )
        return metrics

    @contextlib.contextmanager
    def _heartbeat(self, study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
        from optuna.storages._heartbeat import get_heartbeat_thread  # what Study.optimize uses

        with get_heartbeat_thread(trial._trial_id, study._storage):
            yield

    def _write_summary(self, study: optuna.Study) -> None:
        from movielab.sweeps.report import write_sweep_summary

        paths = write_sweep_summary(study, self.sweep_dir, display(self.storage_url))
        log.info("Sweep summary: %s", ", ".join(str(p) for p in paths))
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running:
            log.info(
                "%d trials of other workers are still running; `python -m movielab.sweep_report %s` "
                "reports them once they finish",
                len(running),
                self.sweep_dir,
            )


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


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _world_size(launcher: Launcher, config: DictConfig, overrides: list[str]) -> int | None:
    """How many processes Lightning would train a trial with these overrides on: a Trainer is built
    from the trial config's device options alone (cheap; nothing is launched). None where that
    config cannot be read this way (the trial then reports its own error)."""
    import lightning as L
    from hydra.utils import instantiate

    keys = ("accelerator", "devices", "num_nodes", "strategy")
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    try:
        trial_config = launcher.hydra_context.config_loader.load_sweep_config(config, overrides)
        HydraConfig.instance().set_config(trial_config)
        trainer = trial_config.get("trainer") or {}
        options = {k: trainer[k] for k in keys if k in trainer}
        lightning_log.setLevel(logging.WARNING)  # "GPU available: ..." belongs to the trial's own log
        built = instantiate(
            {"_target_": "lightning.pytorch.Trainer", **OmegaConf.to_container(OmegaConf.create(options))},
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        assert isinstance(built, L.Trainer)
        return built.world_size
    except Exception as error:  # noqa: BLE001 - the trial itself will say what is wrong
        log.debug("could not tell the trials' world size: %s", error)
        return None
    finally:
        lightning_log.setLevel(level)
        HydraConfig.instance().set_config(config)
