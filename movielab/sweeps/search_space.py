"""Hydra's sweep syntax -> Optuna distributions, and trial params -> Hydra overrides.

Hydra's own override parser reads `params` and the command line, so the syntax is exactly the
official Optuna sweeper's: `choice(a, b)`, `range(start, stop, step)`, `interval(low, high)`,
`int(interval(low, high))`, `tag(log, interval(low, high))`. Anything that is not a sweep is a
fixed override passed to every trial unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from movielab.errors import MovielabError


@dataclass
class SearchSpace:
    """What a sweep varies (`distributions`, by override key) and what it passes as is (`fixed`)."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> the override as typed

    def describe(self) -> dict[str, Any]:
        """A JSON-able description, stored in the study to recognise the same sweep on resume."""
        return {name: json.loads(distribution_to_json(d)) for name, d in sorted(self.distributions.items())}

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every param, for Optuna's GridSampler (choices and ranges only)."""
        return {name: grid_values(name, d) for name, d in self.distributions.items()}

    def one_factor_cells(self) -> list[tuple[str, dict[str, Any]]]:
        """The baseline (each param's first value) and every other value of one param at a time."""
        grid = self.grid()
        baseline = {name: values[0] for name, values in grid.items()}
        cells = [("baseline", dict(baseline))]
        for name, values in grid.items():
            for value in values[1:]:
                cells.append((name, {**baseline, name: value}))
        return cells

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The Hydra overrides that run a trial with `params`, after the fixed ones."""
        swept = [f"{name}={Transformer.str(value)}" for name, value in params.items()]
        return [*self.fixed.values(), *swept]


def parse_search_space(arguments: list[str]) -> SearchSpace:
    """Read `key=value` overrides (params first, then the command line: later ones win)."""
    space = SearchSpace()
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if override.is_sweep_override():
            space.distributions[key] = distribution_of(override)
        else:
            space.fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return space


def distribution_of(override: Override) -> BaseDistribution:
    value = override.value()
    key = override.get_key_element()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        if not all(isinstance(c, str | int | float | bool | type(None)) for c in choices):
            raise MovielabError(f"sweep param {key}: choice(...) takes str, int, float, bool or null values")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if not values:
            raise MovielabError(f"sweep param {key}: {override.input_line} is an empty range")
        if all(isinstance(v, int) for v in values) and value.step > 0:
            return IntDistribution(values[0], values[-1], step=int(value.step))
        return CategoricalDistribution(values)  # float or descending ranges: the exact values
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise MovielabError(f"sweep param {key}: {override.input_line} is not a sweep the Optuna sweeper knows")


def grid_values(name: str, distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    raise MovielabError(f"sweep param {name}: a grid needs choice(...) or range(...) values, not an interval")
