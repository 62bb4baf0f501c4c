"""A multi-objective study as its Pareto front: the trials no other feasible trial beats on every
objective at once, as a table with their hyperparameters, a scatter plot of every trial with the
front highlighted (one panel per pair of objectives), and the best trial per objective.

The front is Optuna's (`study.best_trials`): among completed trials that meet every constraint,
those that no other is at least as good as on all objectives and better on one. Trials that miss
a constraint are marked infeasible and are never on the front.
"""

from __future__ import annotations

import io
import itertools
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from movielab.sweeps.cell_claims import is_duplicate
from movielab.sweeps.report import (
    FINISHED,
    _figures,
    _fmt_value,
    _table,
    _utilisation_column,
    failed_trial_lines,
    is_infeasible,
    varying_params,
)

PLOT_FILE = "pareto_front.png"
FRONT_FILE = "pareto_front.yaml"
ARROW = {"minimize": "↓", "maximize": "↑"}


@dataclass
class ParetoReport:
    study: optuna.Study
    trials: list[FrozenTrial]  # finished ones, by number
    objectives: list[str]
    directions: list[str]
    constraints: list[str]
    front: list[FrozenTrial]
    factors: list[str]

    def on_front(self, trial: FrozenTrial) -> bool:
        return any(t.number == trial.number for t in self.front)

    def best_per_objective(self) -> list[FrozenTrial | None]:
        feasible = [t for t in self.trials if t.state == TrialState.COMPLETE and not is_infeasible(t)]
        best = []
        for i, direction in enumerate(self.directions):
            pick = min if direction == "minimize" else max
            best.append(pick(feasible, key=lambda t: t.values[i]) if feasible else None)
        return best


def build_pareto_report(study: optuna.Study) -> ParetoReport:
    trials = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state in FINISHED and not is_duplicate(t)),
        key=lambda t: t.number,
    )
    directions = [d.name.lower() for d in study.directions]
    names = list(study.user_attrs.get("objectives") or [f"objective {i}" for i in range(len(directions))])
    front = sorted(study.best_trials, key=lambda t: t.number)
    return ParetoReport(
        study=study,
        trials=trials,
        objectives=names,
        directions=directions,
        constraints=list(study.user_attrs.get("constraints") or []),
        front=front,
        factors=varying_params(trials),
    )


# -- Markdown ---------------------------------------------------------------------------------------
def _values(trial: FrozenTrial | None, n: int) -> list[str]:
    if trial is None or trial.state != TrialState.COMPLETE or trial.values is None:
        return ["-"] * n
    return [f"{v:.4f}" for v in trial.values]


def _violations(trial: FrozenTrial) -> str:
    missed = [name for name, value in trial.constraints.items() if value > 0]
    return f"infeasible: misses {', '.join(f'`{m}`' for m in missed)}" if missed else ""


def _state(trial: FrozenTrial) -> str:
    state = trial.state.name.lower()
    note = _violations(trial)
    return f"{state} ({note})" if note else state


def pareto_markdown(report: ParetoReport, storage: str | None = None) -> str:
    study = report.study
    util = _utilisation_column(report.trials)
    figure_header = ["wall-clock", "tokens/s", "peak memory", *([util[0]] if util else [])]
    n = len(report.objectives)
    goals = list(zip(report.objectives, report.directions, strict=True))
    value_header = [f"{name} {ARROW[d]}" for name, d in goals]
    counts = Counter(t.state.name.lower() for t in report.trials)
    infeasible = [t for t in report.trials if t.state == TrialState.COMPLETE and is_infeasible(t)]
    out = [
        f"# Sweep `{study.study_name}`",
        "",
        "- objectives: " + ", ".join(f"{d} `{name}`" for name, d in goals),
    ]
    if report.constraints:
        out.append(
            "- constraints: "
            + ", ".join(f"`{c}`" for c in report.constraints)
            + f" ({len(infeasible)} completed trials miss one: infeasible, never on the front)"
        )
    out.append(
        f"- trials: {len(report.trials)} finished ("
        + ", ".join(f"{k} {state}" for state, k in sorted(counts.items()))
        + ")"
    )
    if storage:
        out.append(f"- storage: `{storage}`")
    out.append(
        f"- Pareto front: {len(report.front)} trials ("
        + (", ".join(str(t.number) for t in report.front) or "none yet")
        + "): no other feasible trial is as good on every objective and better on one"
    )
    out.append("")

    rows = [
        [str(t.number), *_values(t, n), *(_fmt_value(t.params.get(f, "-")) for f in report.factors)]
        + _figures(t, util)
        for t in report.front
    ]
    header = ["trial", *value_header, *report.factors, *figure_header]
    out += ["## Pareto front", "", _table(header, rows), ""]
    for t in report.front:
        command = " ".join(["python -m movielab.train", *t.user_attrs.get("overrides", [])])
        out.append(f"- trial {t.number}: `{command}`")
    out.append("")

    rows = []
    for i, (name, direction, best) in enumerate(
        zip(report.objectives, report.directions, report.best_per_objective(), strict=True)
    ):
        if best is None:
            rows.append([f"{direction} {name}", "-", "-", "-"])
            continue
        others = ", ".join(
            f"{other} = {best.values[j]:.4f}" for j, other in enumerate(report.objectives) if j != i
        )
        rows.append([f"{direction} {name}", str(best.number), f"{best.values[i]:.4f}", others])
    header = ["objective", "trial", "value", "its other objectives"]
    out += ["## Best trial per objective", "", _table(header, rows)]
    out.append("")

    rows = [
        [
            str(t.number),
            _state(t),
            "yes" if report.on_front(t) else "",
            *_values(t, n),
            *(_fmt_value(t.params.get(f, "-")) for f in report.factors),
            *_figures(t, util),
        ]
        for t in report.trials
    ]
    header = ["trial", "state", "front", *value_header, *report.factors, *figure_header]
    out += ["## All trials", "", _table(header, rows), ""]
    return "\n".join(out + failed_trial_lines(report.trials))


# -- the plot ---------------------------------------------------------------------------------------
def pareto_plot_png(report: ParetoReport) -> bytes:
    """Every completed trial in the plane of each pair of objectives: the front in red (and, for
    two objectives, joined as a staircase), dominated trials grey, infeasible ones as crosses."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    pairs = list(itertools.combinations(range(len(report.objectives)), 2))
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.6 * cols, 7.5), 4.0 * rows + 0.8), squeeze=False)
    for ax in axes.flat[len(pairs) :]:
        ax.set_visible(False)
    done = [t for t in report.trials if t.state == TrialState.COMPLETE and t.values is not None]
    groups = {
        "Pareto front": ([t for t in done if report.on_front(t)], dict(color="tab:red", marker="o", s=46)),
        "dominated": (
            [t for t in done if not report.on_front(t) and not is_infeasible(t)],
            dict(color="grey", marker="o", s=22, alpha=0.6),
        ),
        "infeasible (misses a constraint)": (
            [t for t in done if is_infeasible(t)],
            dict(color="tab:orange", marker="x", s=30),
        ),
    }
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
        for label, (trials, style) in groups.items():
            if trials:
                ax.scatter([t.values[i] for t in trials], [t.values[j] for t in trials], label=label, **style)
        front = sorted(groups["Pareto front"][0], key=lambda t: t.values[i])
        if len(pairs) == 1 and len(front) > 1:
            xs, ys = [t.values[i] for t in front], [t.values[j] for t in front]
            ax.step(xs, ys, where="post", color="tab:red", alpha=0.5)
        for t in front:
            point = (t.values[i], t.values[j])
            ax.annotate(str(t.number), point, textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(f"{report.objectives[i]} ({report.directions[i]})")
        ax.set_ylabel(f"{report.objectives[j]} ({report.directions[j]})")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"{report.study.study_name}: Pareto front (numbered)")
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 0.95))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def front_summary(report: ParetoReport, storage: str) -> dict[str, Any]:
    """pareto_front.yaml: each front trial with its values and the command that reruns it."""
    return {
        "study_name": report.study.study_name,
        "storage": storage,
        "objectives": dict(zip(report.objectives, report.directions, strict=True)),
        "constraints": report.constraints,
        "front": [
            {
                "number": t.number,
                "values": dict(zip(report.objectives, t.values, strict=True)),
                "params": dict(t.params),
                "run_dir": t.user_attrs.get("run_dir"),
                "command": "python -m movielab.train " + " ".join(t.user_attrs.get("overrides", [])),
            }
            for t in report.front
        ],
    }
