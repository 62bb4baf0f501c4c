"""A run never overwrites another: runs started together get folders of their own, a
hydra.run.dir that holds a run is refused (its files byte-identical afterwards) unless the
command resumes inside it or says overwrite=true."""

from __future__ import annotations

import hashlib
import multiprocessing
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from movielab.cli import train as train_cli
from movielab.run_folder import claim_new_folder
from tests.conftest import TINY

QUICK = [
    *TINY,
    "~callbacks.text_samples",
    "logger=csv",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
]


def _claim(base: str, barrier, results) -> None:  # noqa: ANN001
    barrier.wait()
    results.put(str(claim_new_folder(Path(base))))


def test_runs_claiming_one_folder_at_once_each_get_their_own(tmp_path):
    context = multiprocessing.get_context("fork")  # the children only make folders
    barrier, results = context.Barrier(6), context.Queue()
    base = tmp_path / "runs" / "2026-12-01_10-00-00"
    workers = [context.Process(target=_claim, args=(str(base), barrier, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    claimed = {results.get(timeout=5) for _ in workers}
    assert len(claimed) == 6
    assert claimed == {str(base), *(f"{base}-{n}" for n in range(1, 6))}


def _cli(monkeypatch, root: Path, *argv: str) -> int | None:
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", ["movielab.train", *argv])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    try:
        train_cli.main()
    except SystemExit as exit_:
        return exit_.code
    return 0


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_run_started_in_the_same_second_as_another_gets_a_new_folder(tmp_path, monkeypatch):
    runs = tmp_path / "outputs" / "train" / "runs"
    now = datetime.now()
    taken = [runs / (now + timedelta(seconds=s)).strftime("%Y-%m-%d_%H-%M-%S") for s in range(-1, 30)]
    for folder in taken:  # another run holds every stamp this one could get
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"the other run's weights")
    assert _cli(monkeypatch, tmp_path, *QUICK) == 0
    new = [p for p in runs.iterdir() if p not in taken]
    assert (
        len(new) == 1
        and new[0].name.endswith("-1")
        and (new[0] / "checkpoints" / "last.ckpt").stat().st_size > 100
    )
    assert all((f / "checkpoints" / "last.ckpt").read_bytes() == b"the other run's weights" for f in taken)
    assert sorted(p.name for p in taken[0].iterdir()) == ["checkpoints"]  # no .hydra/ written into it


def test_a_folder_holding_a_run_is_refused_unless_resuming_in_it_or_told_to_overwrite(
    tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "my-run"
    assert _cli(monkeypatch, tmp_path, *QUICK, f"hydra.run.dir={folder}") == 0
    before = _digests(folder)
    capsys.readouterr()

    assert _cli(monkeypatch, tmp_path, *QUICK, "trainer.max_steps=4", f"hydra.run.dir={folder}") == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: hydra.run.dir={folder} already holds a run (checkpoints, csv): resume it with "
        f"ckpt_path={folder}/checkpoints/last.ckpt, choose another folder, or add overwrite=true to "
        "replace its checkpoints and logs"
    )
    assert _digests(folder) == before  # not a byte changed, .hydra/ included

    last = folder / "checkpoints" / "last.ckpt"
    resume = [*QUICK, "trainer.max_steps=4", f"hydra.run.dir={folder}", f"ckpt_path={last}"]
    assert _cli(monkeypatch, tmp_path, *resume) == 0
    from movielab.checkpoint import read_checkpoint

    assert read_checkpoint(last)["global_step"] == 4

    assert _cli(monkeypatch, tmp_path, *QUICK, f"hydra.run.dir={folder}", "overwrite=true") == 0
    assert read_checkpoint(last)["global_step"] == 2  # a new run of 2 steps
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best-step000002.ckpt", "last.ckpt"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "experiment=nope",
            "experiment=nope is not a config; the options of experiment are: genre_classifier",
        ),
        ("debug=xyz", "debug=xyz is not a config; the options of debug are: fdr, limit, overfit"),
    ],
)
def test_an_optional_group_naming_no_config_is_refused(tmp_path, monkeypatch, capsys, option, message):
    assert _cli(monkeypatch, tmp_path, option) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {message}")
    assert not (tmp_path / "outputs" / "train").exists()
