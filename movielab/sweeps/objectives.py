"""What a study optimises: one metric (`optimized_metric`, the value the train task returns) or
several (`hydra.sweeper.objectives: {val/loss: minimize, gen/distinct_2: maximize}`), and the
constraints a trial must meet to count (`hydra.sweeper.constraints: ["gen/copy_rate <= 0.05"]`).

Objectives and constraints are read from the metrics the run ended with, which the TrialReporter
callback records in the trial (`metrics` user attribute); a constraint's value goes to Optuna as
`trial.set_constraint(name, violation)`, where a violation <= 0 is feasible: the samplers (TPE,
NSGA-II) and `study.best_trials` read it from there, as they do what `constraints_func` returns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from movielab.errors import MovielabError

METRICS_ATTR = "metrics"
DIRECTIONS = ("minimize", "maximize")
_CONSTRAINT = re.compile(r"^\s*(?P<metric>[^\s<>=]+)\s*(?P<op><=|>=)\s*(?P<bound>[-+0-9.eE]+|[-+]?inf)\s*$")


class MetricUnavailable(ValueError):
    """An objective or constraint names a metric the run did not log, or that is not finite."""


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # "<=" or ">="
    bound: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"

    def violation(self, value: float) -> float:
        """How far `value` is past the bound: <= 0 when the constraint holds."""
        return value - self.bound if self.op == "<=" else self.bound - value


def parse_constraint(text: str) -> Constraint:
    match = _CONSTRAINT.match(str(text))
    if match is None:
        raise MovielabError(
            f"hydra.sweeper.constraints: {text!r} is not `METRIC <= NUMBER` or `METRIC >= NUMBER`"
        )
    try:
        bound = float(match["bound"])
    except ValueError:
        raise MovielabError(
            f"hydra.sweeper.constraints: {text!r}: {match['bound']} is not a number"
        ) from None
    return Constraint(match["metric"], match["op"], bound)


@dataclass(frozen=True)
class Objectives:
    names: list[str]
    directions: list[str]
    # True (hydra.sweeper.objectives given): the values come from the run's recorded metrics;
    # False: the value is what the task returns (cfg.optimized_metric). Constraints: always metrics.
    from_metrics: bool
    constraints: list[Constraint] = field(default_factory=list)

    @classmethod
    def from_config(
        cls,
        objectives: Mapping[str, str] | None,
        optimized_metric: str,
        direction: str,
        constraints: list[str] | None,
    ) -> Objectives:
        parsed = [parse_constraint(c) for c in constraints or []]
        if not objectives:
            if direction not in DIRECTIONS:
                raise MovielabError(f"hydra.sweeper.direction={direction}: expected minimize or maximize")
            return cls([optimized_metric], [direction], from_metrics=False, constraints=parsed)
        for name, goal in objectives.items():
            if goal not in DIRECTIONS:
                raise MovielabError(f"hydra.sweeper.objectives.{name}={goal}: expected minimize or maximize")
        return cls(list(objectives), list(objectives.values()), from_metrics=True, constraints=parsed)

    @property
    def is_multi(self) -> bool:
        return len(self.names) > 1

    def describe(self) -> str:
        return ", ".join(f"{d} {n}" for n, d in zip(self.names, self.directions, strict=True))

    def values(self, metrics: Mapping[str, Any]) -> list[float]:
        """Each objective's value in `metrics` (a missing one: MetricUnavailable, naming what exists)."""
        return [_metric(metrics, name, "objective") for name in self.names]

    def violations(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Each constraint (by its text) and how far the run is past it (<= 0: met)."""
        return {str(c): c.violation(_metric(metrics, c.metric, "constraint")) for c in self.constraints}


def _metric(metrics: Mapping[str, Any], name: str, role: str) -> float:
    if name not in metrics:
        logged = ", ".join(sorted(metrics)) or "none"
        raise MetricUnavailable(f"the {role} {name} is not among the run's final metrics ({logged})")
    value = float(metrics[name])
    if not math.isfinite(value):
        raise MetricUnavailable(f"the {role} {name} is {value}")
    return value


def scalar_metrics(callback_metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's `trainer.callback_metrics` as plain floats (scalars only)."""
    out = {}
    for name, value in callback_metrics.items():
        try:
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                continue
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return out
