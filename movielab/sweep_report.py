"""`python -m movielab.sweep_report SWEEP_DIR` (or `--storage STORAGE --study NAME`): a sweep as
Markdown tables, one per factor, and a plot of val loss against each factor; a multi-objective
sweep as its Pareto front, a table and a scatter plot.

The tables are printed and written, with the plot, to `summary.md` and `val_loss_by_factor.png`
(`pareto_front.png`) in the sweep folder (or `--out DIR`). The sweep may still be running: the
report shows the trials finished so far, read from the study's storage (a database URL or a
journal file, as `hydra.sweeper.storage` takes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from movielab.errors import MovielabError, user_errors_reported


def _why_not(folder: Path, study_file: str) -> str:
    """What the folder lacks, and the newest sweep folders below it (a user gave `outputs/`)."""
    if not folder.exists():
        return "it does not exist"
    if not folder.is_dir():
        database = (
            f"; a sweep database is read with --storage sqlite:///{folder}" if folder.suffix == ".db" else ""
        )
        return f"it is a file{database}"
    depths = ("*", "*/*", "*/*/*", "*/*/*/*")
    found = [path.parent for depth in depths for path in folder.glob(f"{depth}/{study_file}")]
    if not found:
        return f"no {study_file}"
    newest = sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)[:3]
    return f"no {study_file}; sweep folders below it, newest first: {', '.join(map(str, newest))}"


def _locate(args: argparse.Namespace) -> tuple[str, str, Path]:
    """(storage URL, study name, output folder) from the command line."""
    from movielab.sweeps.optuna_sweep import STUDY_FILE

    if args.sweep_dir is not None:
        study_file = Path(args.sweep_dir) / STUDY_FILE
        if not study_file.is_file():
            why = _why_not(Path(args.sweep_dir), STUDY_FILE)
            raise MovielabError(
                f"{args.sweep_dir} is not a sweep folder ({why}); give the folder a "
                "`python -m movielab.train -m ...` sweep wrote, or --storage URL --study NAME"
            )
        written = OmegaConf.load(study_file)
        return str(written.storage), str(written.study_name), Path(args.out or args.sweep_dir)
    if args.storage is None:
        raise MovielabError("give a sweep folder, or --storage URL (with --study NAME)")
    import optuna

    from movielab.sweeps.storage import normalise, open_storage

    storage = normalise(args.storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
    study = args.study or (names[0] if len(names) == 1 else None)
    if study not in names:
        raise MovielabError(
            f"--study {args.study}: {args.storage} holds the studies {', '.join(names) or '(none)'}"
        )
    return storage, study, Path(args.out or Path("outputs") / "sweeps" / study)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m movielab.sweep_report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "sweep_dir", nargs="?", help="a sweep folder (outputs/<task>/multiruns/<date>_<time>)"
    )
    parser.add_argument(
        "--storage",
        help="the study's storage: sqlite:///outputs/sweeps/NAME.db, postgresql+psycopg://... or a .log file",
    )
    parser.add_argument("--study", help="the study name (needed when the storage holds several)")
    parser.add_argument("--out", help="where to write summary.md and the plot (default: the sweep folder)")
    args = parser.parse_args(argv)
    with user_errors_reported():
        import optuna

        from movielab.sweeps.report import build_report, to_markdown, write_report
        from movielab.sweeps.storage import display, open_storage

        storage, name, out = _locate(args)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(storage))
        except KeyError:
            raise MovielabError(f"{display(storage)} holds no study named {name}") from None
        report = build_report(study)
        print(to_markdown(report, display(storage)))
        for path in write_report(report, out, display(storage)):
            print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
