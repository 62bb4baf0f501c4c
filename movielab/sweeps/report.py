"""A study as the reference's tables: one per factor (value, val loss, wall-clock, tokens/s, peak
memory, CPU or GPU utilisation), a table of every trial, and a plot of val loss against each factor.

Two shapes of sweep are told apart from the trials themselves. A one-factor sweep (every trial is
the baseline or differs from it in one param, as `design=one_factor` runs) gets the reference's
tables: the baseline and each variation of that factor. Any other sweep gets, per factor, one row
per value (values of a continuous param are rounded to two significant digits): how many trials
finished there, the best and the median loss, and the best trial's figures.

A multi-objective study gets its Pareto front instead (`pareto_report`). Trials that miss a
constraint (`hydra.sweeper.constraints`) are marked infeasible and are never the best.
"""

from __future__ import annotations

import io
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from movielab.files import atomic_write_bytes, atomic_write_text
from movielab.sweeps.cell_claims import is_duplicate

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
REPORT_FILE = "summary.md"
PLOT_FILE = "val_loss_by_factor.png"
BEST_FILE = "best_trial.yaml"


@dataclass
class FactorRow:
    """One row of a factor's table."""

    value: Any
    trials: list[FrozenTrial] = field(default_factory=list)
    is_baseline: bool = False


@dataclass
class SweepReport:
    study: optuna.Study
    trials: list[FrozenTrial]
    factors: list[str]
    baseline: dict[str, Any] | None  # set when the sweep is one-factor-at-a-time
    tables: dict[str, list[FactorRow]]

    @property
    def objective(self) -> str:
        return str(self.study.user_attrs.get("objective", "value"))

    @property
    def best(self) -> FrozenTrial | None:
        done = [t for t in self.trials if t.state == TrialState.COMPLETE and not is_infeasible(t)]
        if not done:
            return None
        pick = min if self.study.direction == optuna.study.StudyDirection.MINIMIZE else max
        return pick(done, key=lambda t: t.value)


def build_report(study: optuna.Study) -> Any:
    """A SweepReport, or for a multi-objective study a ParetoReport."""
    if len(study.directions) > 1:
        from movielab.sweeps.pareto_report import build_pareto_report

        return build_pareto_report(study)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED and not is_duplicate(t)]
    factors = varying_params(trials)
    scored = [t for t in trials if _score(t) is not None]
    baseline = _one_factor_baseline(scored, factors)
    if baseline is not None:
        tables = {f: _one_factor_rows(scored, factors, f, baseline) for f in factors}
    else:
        tables = {f: _grouped_rows(scored, f, study.direction) for f in factors}
    return SweepReport(study, trials, factors, baseline, tables)


def varying_params(trials: list[FrozenTrial]) -> list[str]:
    """The params that take more than one value across the trials (all of them if none does)."""
    names = sorted({name for t in trials for name in t.params})
    return [n for n in names if len({_key(t.params.get(n)) for t in trials if n in t.params}) > 1] or names


def is_infeasible(trial: FrozenTrial) -> bool:
    """A trial that breaks one of the study's constraints (Optuna stores violations as > 0)."""
    return any(value > 0 for value in trial.constraints.values())


def _score(trial: FrozenTrial) -> float | None:
    """A completed trial's value, or a pruned one's last reported validation loss."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def _key(value: Any) -> Any:
    return repr(value)


def _one_factor_baseline(trials: list[FrozenTrial], factors: list[str]) -> dict[str, Any] | None:
    marked = [t for t in trials if t.user_attrs.get("factor") == "baseline"]
    if marked:
        baseline = {f: marked[0].params.get(f) for f in factors}
    else:
        if not trials:
            return None
        baseline = {}
        for f in factors:
            counts = Counter(_key(t.params.get(f)) for t in trials)
            top = counts.most_common(1)[0][0]
            baseline[f] = next(t.params.get(f) for t in trials if _key(t.params.get(f)) == top)
    for t in trials:
        differing = [f for f in factors if _key(t.params.get(f)) != _key(baseline[f])]
        if len(differing) > 1:
            return None
    if not any(all(_key(t.params.get(f)) == _key(baseline[f]) for f in factors) for t in trials):
        return None  # no baseline trial: nothing to compare the variations with
    return baseline


def _one_factor_rows(trials, factors, factor, baseline) -> list[FactorRow]:
    rows: dict[Any, FactorRow] = {}
    for t in trials:
        others_at_baseline = all(_key(t.params.get(f)) == _key(baseline[f]) for f in factors if f != factor)
        if not others_at_baseline:
            continue
        value = t.params.get(factor)
        row = rows.setdefault(
            _key(value), FactorRow(value, is_baseline=_key(value) == _key(baseline[factor]))
        )
        row.trials.append(t)
    # the baseline first, then the variations in the order they ran
    return sorted(rows.values(), key=lambda r: (not r.is_baseline, min(t.number for t in r.trials)))


def _grouped_rows(trials, factor, direction) -> list[FactorRow]:
    values = [t.params[factor] for t in trials if factor in t.params]
    continuous = len({_key(v) for v in values}) > 8 and all(_is_number(v) for v in values)
    rows: dict[Any, FactorRow] = {}
    for t in trials:
        if factor not in t.params:
            continue
        value = _round_sig(t.params[factor], 2) if continuous else t.params[factor]
        rows.setdefault(_key(value), FactorRow(value)).trials.append(t)
    ordered = list(rows.values())
    if all(_is_number(r.value) for r in ordered):
        ordered.sort(key=lambda r: float(r.value))
    return ordered


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _round_sig(value: float, digits: int) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


# -- Markdown ---------------------------------------------------------------------------------------
def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _utilisation_column(trials: list[FrozenTrial]) -> tuple[str, str] | None:
    if any("gpu_util_pct" in t.user_attrs for t in trials):
        return "GPU util", "gpu_util_pct"
    if any("cpu_util_pct" in t.user_attrs for t in trials):
        return "CPU util (100% = 1 core)", "cpu_util_pct"
    return None


def _figures(trial: FrozenTrial | None, util: tuple[str, str] | None) -> list[str]:
    attrs = trial.user_attrs if trial is not None else {}
    cells = [
        _fmt_seconds(attrs.get("trial_s")),
        _fmt(attrs.get("tokens_per_s"), ",.0f"),
        _fmt(attrs.get("peak_memory_mb"), ",.0f", " MB"),
    ]
    if util is not None:
        cells.append(_fmt(attrs.get(util[1]), ".0f", "%"))
    return cells


def _state_note(trial: FrozenTrial) -> str:
    if is_infeasible(trial):
        missed = [name for name, value in trial.constraints.items() if value > 0]
        return " (infeasible: misses " + ", ".join(f"`{m}`" for m in missed) + ")"
    if trial.state == TrialState.PRUNED:
        return (
            f" (pruned at validation {max(trial.intermediate_values)})"
            if trial.intermediate_values
            else " (pruned)"
        )
    return ""


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: Any, storage: str | None = None) -> str:
    if not isinstance(report, SweepReport):
        from movielab.sweeps.pareto_report import pareto_markdown

        return pareto_markdown(report, storage)
    study = report.study
    util = _utilisation_column(report.trials)
    figure_header = ["wall-clock", "tokens/s", "peak memory", *([util[0]] if util else [])]
    counts = Counter(t.state.name.lower() for t in report.trials)
    out = [
        f"# Sweep `{study.study_name}`",
        "",
        f"- objective: {study.direction.name.lower()} `{report.objective}`",
        f"- trials: {len(report.trials)} finished ("
        + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        + ")",
    ]
    constraints = study.user_attrs.get("constraints") or []
    if constraints:
        listed = ", ".join(f"`{c}`" for c in constraints)
        out.append(f"- constraints: {listed} (a trial that misses one is infeasible)")
    if storage:
        out.append(f"- storage: `{storage}`")
    best = report.best
    if best is not None:
        out.append(f"- best: trial {best.number}, {report.objective} = {best.value:.4f}")
        out.append(f"  - `python -m movielab.train {' '.join(best.user_attrs.get('overrides', []))}`")
    out.append("")
    loss = report.objective
    if report.baseline is not None:
        out.append(
            "One factor at a time from the baseline "
            + ", ".join(f"`{f}={_fmt_value(v)}`" for f, v in report.baseline.items())
            + "."
        )
        out.append("")
        for factor in report.factors:
            rows = []
            for row in report.tables[factor]:
                trial = min(row.trials, key=lambda t: t.number)
                label = _fmt_value(row.value) + (" (baseline)" if row.is_baseline else "")
                rows.append([label, f"{_score(trial):.4f}{_state_note(trial)}", *_figures(trial, util)])
            out += [f"## {factor}", "", _table(["value", loss, *figure_header], rows), ""]
    else:
        out.append(
            "Per factor, the trials grouped by value: the best and median loss, and the best trial's figures."
        )
        out.append("")
        for factor in report.factors:
            rows = []
            for row in report.tables[factor]:
                scores = [_score(t) for t in row.trials]
                done = [t for t in row.trials if t.state == TrialState.COMPLETE]
                pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
                top = pick(done, key=lambda t: t.value) if done else None
                rows.append(
                    [
                        _fmt_value(row.value),
                        f"{len(done)}"
                        + (
                            f" (+{len(row.trials) - len(done)} pruned)" if len(done) < len(row.trials) else ""
                        ),
                        _fmt(top.value if top else None, ".4f"),
                        _fmt(statistics.median(scores) if scores else None, ".4f"),
                        *_figures(top, util),
                    ]
                )
            header = ["value", "completed", f"best {loss}", f"median {loss}", *figure_header]
            out += [f"## {factor}", "", _table(header, rows), ""]
    rows = []
    for t in sorted(report.trials, key=lambda t: t.number):
        score = _score(t)
        rows.append(
            [
                str(t.number),
                t.state.name.lower() + (_state_note(t) if is_infeasible(t) else ""),
                _fmt(score, ".4f"),
                *(_fmt_value(t.params.get(f, "-")) for f in report.factors),
                *_figures(t, util),
            ]
        )
    out += ["## All trials", "", _table(["trial", "state", loss, *report.factors, *figure_header], rows), ""]
    return "\n".join(out + failed_trial_lines(report.trials))


def failed_trial_lines(trials: list[FrozenTrial]) -> list[str]:
    """'Failed trials:' and the first line of each failed trial's recorded error; none if none."""
    errors = [t for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs]
    if not errors:
        return []
    lines = [f"- trial {t.number}: {str(t.user_attrs['error']).splitlines()[0]}" for t in errors]
    return ["Failed trials:", "", *lines, ""]


# -- the plot ---------------------------------------------------------------------------------------
def _log_axis(values: list[Any], distribution: BaseDistribution | None) -> bool:
    if isinstance(distribution, FloatDistribution | IntDistribution) and distribution.log:
        return True
    numbers = [float(v) for v in values if _is_number(v)]
    return (
        len(numbers) == len(values)
        and bool(numbers)
        and min(numbers) > 0
        and max(numbers) / min(numbers) >= 20
    )


def plot_png(report: SweepReport) -> bytes:
    """Val loss against each factor: every finished trial as a grey dot (x: pruned, at its last
    validation), and the table's rows as a line where the factor takes a few values."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = max(len(report.factors), 1)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 7.0), 3.4 * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, factor in zip(axes.flat, report.factors, strict=False):
        _plot_factor(ax, report, factor)
    handles, labels = [], []
    for ax in axes.flat[:n]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    legend_rows = math.ceil(len(handles) / 2)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(f"{report.study.study_name}: {report.objective} by factor")
    fig.tight_layout(rect=(0, (0.1 + 0.28 * legend_rows) / fig.get_figheight(), 1, 0.96))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _plot_factor(ax: Any, report: SweepReport, factor: str) -> None:
    table = report.tables.get(factor, [])
    values = [row.value for row in table]
    numeric = all(_is_number(v) for v in values)
    keys = [_key(v) for v in values]

    def position(value: Any) -> float:
        return float(value) if numeric else float(keys.index(_key(value)))

    for trial in report.trials:
        score = _score(trial)
        if (
            score is None
            or factor not in trial.params
            or (not numeric and _key(trial.params[factor]) not in keys)
        ):
            continue
        pruned = trial.state == TrialState.PRUNED
        label = "pruned trial (last validation)" if pruned else "trial"
        marker = "x" if pruned else "o"
        ax.scatter(
            position(trial.params[factor]), score, s=20, alpha=0.5, color="grey", marker=marker, label=label
        )
    distribution = _distribution(report, factor)
    continuous = isinstance(distribution, FloatDistribution) and distribution.step is None
    if table and (report.baseline is not None or (len(table) <= 8 and not continuous)):
        xs = [position(row.value) for row in table]
        if report.baseline is not None:
            ys = [_score(min(row.trials, key=lambda t: t.number)) for row in table]
            label = "one factor changed from the baseline"
        else:
            ys = [min(_score(t) for t in row.trials) for row in table]
            label = "best at each value"
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        ax.plot([xs[i] for i in order], [ys[i] for i in order], "o-", color="tab:blue", label=label, zorder=2)
        for row, x, y in zip(table, xs, ys, strict=True):
            if row.is_baseline:
                ax.scatter(x, y, s=90, facecolors="none", edgecolors="tab:red", zorder=3, label="baseline")
    if not numeric:
        ax.set_xticks(range(len(values)), [_fmt_value(v) for v in values])
    elif _log_axis(values, distribution):
        ax.set_xscale("log")
    ax.set_xlabel(factor)
    ax.set_ylabel(report.objective)
    ax.grid(alpha=0.3)


def _distribution(report: SweepReport, factor: str) -> BaseDistribution | None:
    for trial in report.trials:
        if factor in trial.distributions:
            return trial.distributions[factor]
    return None


# -- files ------------------------------------------------------------------------------------------
def write_report(report: Any, out_dir: Path, storage: str | None = None) -> list[Path]:
    """summary.md and val_loss_by_factor.png (a multi-objective study: pareto_front.png) in
    out_dir, each written atomically."""
    paths = [out_dir / REPORT_FILE]
    atomic_write_text(paths[0], to_markdown(report, storage))
    if not isinstance(report, SweepReport):
        from movielab.sweeps.pareto_report import PLOT_FILE as PARETO_PLOT
        from movielab.sweeps.pareto_report import pareto_plot_png

        if any(t.state == TrialState.COMPLETE for t in report.trials):
            paths.append(out_dir / PARETO_PLOT)
            atomic_write_bytes(paths[-1], pareto_plot_png(report))
        return paths
    if report.trials and report.factors:
        paths.append(out_dir / PLOT_FILE)
        atomic_write_bytes(paths[-1], plot_png(report))
    return paths


def write_sweep_summary(study: optuna.Study, sweep_dir: Path, storage: str) -> list[Path]:
    """At the end of a sweep: the report, and the best trial (a multi-objective study: the trials of
    its Pareto front) with the command that reruns it."""
    report = build_report(study)
    paths = write_report(report, sweep_dir, storage)
    if not isinstance(report, SweepReport):
        from movielab.sweeps.pareto_report import FRONT_FILE, front_summary

        paths.append(sweep_dir / FRONT_FILE)
        atomic_write_text(paths[-1], OmegaConf.to_yaml(front_summary(report, storage)))
        return paths
    best = report.best
    if best is not None:
        overrides = list(best.user_attrs.get("overrides", []))
        summary = {
            "study_name": study.study_name,
            "storage": storage,
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "run_dir": best.user_attrs.get("run_dir"),
            "command": "python -m movielab.train " + " ".join(overrides),
            "figures": {k: v for k, v in best.user_attrs.items() if k not in ("overrides", "run_dir")},
        }
        paths.append(sweep_dir / BEST_FILE)
        atomic_write_text(paths[-1], OmegaConf.to_yaml(summary))
    return paths
