"""Runs stopped at random moments lose nothing: SIGTERM and Ctrl-C stop after the step in
progress with a checkpoint that resumes exactly (exit 143 / 130, the summary says where), and in
a loop of runs SIGKILLed at random moments and in the middle of checkpoint writes, last.ckpt is
always a complete checkpoint (the previous one or the new one), the temporaries of the killed
writers are removed by the next run in the folder, no stray "best" copies pile up, and resuming
each time ends with the weights of the run that was never killed."""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import fault_runs
from tests.conftest import REPO

STEPS = 30
COMMON = [
    *fault_runs.KINDS["char_gpt"],
    *fault_runs.QUIET,
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=3",  # a checkpoint every 3 steps
    "+callbacks.slow._target_=tests.fault_runs.SlowSteps",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run that is never stopped."""
    root = tmp_path_factory.mktemp("reference")
    assert fault_runs.run(root, COMMON) == 0
    return root / "run"


def _marked(root: Path, overrides: list[str]) -> tuple[list[str], Path]:
    marker = root / "training-started"
    return [
        *overrides,
        "+callbacks.marker._target_=tests.fault_runs.Marker",
        f"+callbacks.marker.path={marker}",
    ], marker


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize(
    ("signum", "during"),
    [
        (signal.SIGTERM, None),  # from outside, at a moment chosen by the clock
        (signal.SIGINT, 3),  # during batch 3: stops after step 4, no validation due
        (signal.SIGTERM, 5),  # during batch 5: step 6 validates (and checkpoints) first
    ],
)
def test_a_stop_signal_saves_the_step_and_resumes_exactly(reference, tmp_path, signum, during):
    if during is None:
        overrides, marker = _marked(tmp_path, COMMON)
        process = fault_runs.start(tmp_path / "stopped", overrides)
        assert fault_runs.wait_for(marker, process)
        time.sleep(0.15)
        os.kill(process.pid, signum)
    else:
        sender = [
            "+callbacks.signal._target_=tests.fault_runs.SignalAtStep",
            f"+callbacks.signal.step={during}",
        ]
        process = fault_runs.start(
            tmp_path / "stopped", [*COMMON, *sender, f"+callbacks.signal.signum={signum}"]
        )
    process.join(60)
    assert process.exitcode == 128 + signum
    out = fault_runs.output(tmp_path / "stopped")
    stopped = tmp_path / "stopped" / "run" / "checkpoints"
    step = fault_runs.complete_step(stopped / "last.ckpt")
    assert 0 < step < STEPS and (during is None or step == during + 1)
    assert f"Run interrupted by {signal.Signals(signum).name} at step {step}" in out
    assert f"last ckpt:    {stopped / 'last.ckpt'} (step {step})" in out
    assert not [name for name in _files(stopped) if name.endswith(".tmp")]

    assert fault_runs.run(tmp_path / "resumed", [*COMMON, f"ckpt_path={stopped / 'last.ckpt'}"]) == 0
    resumed = tmp_path / "resumed" / "run"
    assert (
        fault_runs.same_weights(
            reference / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt"
        )
        == []
    )
    before, after = fault_runs.logged(reference, "train/loss"), fault_runs.logged(resumed, "train/loss")
    # a loss is logged at the index of its batch: the first after the resume is batch `step`
    assert after and all(after[s] == before[s] for s in after) and min(after) == step


def _kill_loop(reference: Path, tmp_path: Path, kills: int, during_writes: int) -> None:
    rng = random.Random(kills)
    folder = tmp_path / "loop"
    checkpoints = folder / "run" / "checkpoints"
    last = checkpoints / "last.ckpt"
    previous_step = 0
    write_kills = set(rng.sample(range(1, kills), during_writes))
    partial_seen = 0
    for i in range(kills):
        resume = [f"ckpt_path={last}"] if last.exists() else []
        overrides, marker = _marked(folder, [*COMMON, *resume])
        marker.unlink(missing_ok=True)
        writing = folder / "writing"
        writing.unlink(missing_ok=True)
        process = fault_runs.start(folder, overrides, slow_write_marker=writing if i in write_kills else None)
        if i in write_kills:
            assert fault_runs.wait_for(writing, process)  # halfway through writing a checkpoint
        else:
            assert fault_runs.wait_for(marker, process)
            time.sleep(rng.uniform(0.0, 0.5))
        process.kill()
        process.join(30)
        temporaries = [name for name in _files(checkpoints) if name.endswith(".tmp")]
        partial_seen += bool(temporaries)
        if i in write_kills:
            assert temporaries, "the kill during a write left no partial file: the test did not test it"
        if last.exists():
            step = fault_runs.complete_step(last)  # never partial: the previous or the new one
            assert step >= previous_step
            previous_step = step
        if previous_step == STEPS:
            break
    assert partial_seen >= during_writes
    assert fault_runs.run(folder, [*COMMON, f"ckpt_path={last}"] if last.exists() else COMMON) == 0
    assert fault_runs.same_weights(reference / "checkpoints" / "last.ckpt", last) == []
    names = _files(checkpoints)
    best = [name for name in names if name.startswith("best-")]
    assert not [name for name in names if name.endswith(".tmp")]
    assert len(best) == 1 and "-v" not in best[0] and names == sorted([*best, "last.ckpt"])
    assert best == _files(reference / "checkpoints")[:1]  # the same best step as the unkilled run


def test_runs_killed_at_random_moments_and_mid_write_lose_nothing(reference, tmp_path):
    _kill_loop(reference, tmp_path, kills=4, during_writes=2)


@pytest.mark.slow
def test_twenty_runs_killed_at_random_moments_and_mid_write_lose_nothing(reference, tmp_path):
    _kill_loop(reference, tmp_path, kills=20, during_writes=6)


def test_the_printed_resume_command_resumes_the_run(tmp_path):
    """`python -m movielab.train` stopped by Ctrl-C prints its own command line with ckpt_path set
    (a path with a space quoted): that line, run as printed, goes on from the checkpoint."""
    data = tmp_path / "my data" / "movies.csv"
    data.parent.mkdir()
    shutil.copy(REPO / "movielab" / "data" / "samples" / "letterboxd_sample.csv", data)
    overrides = [
        *(o for o in COMMON if "SlowSteps" not in o),
        f"data.path={data}",
        "trainer.max_steps=5",
        f"paths.root_dir={tmp_path}",
        "+callbacks.signal._target_=tests.fault_runs.SignalAtStep",
        "+callbacks.signal.step=2",
        f"+callbacks.signal.signum={int(signal.SIGINT)}",
    ]
    train = [sys.executable, "-m", "movielab.train"]
    stopped = subprocess.run([*train, *overrides], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr[-2000:]
    [line] = [line for line in stopped.stdout.splitlines() if line.strip().startswith("resume:")]
    command = shlex.split(line.split("resume:", 1)[1])
    [last] = tmp_path.glob("outputs/*/runs/*/checkpoints/last.ckpt")
    assert command == ["python", "-m", "movielab.train", *overrides, f"ckpt_path={last}"]
    assert fault_runs.complete_step(last) == 3
    resumed = subprocess.run([*train, *command[3:]], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]  # the signal's step has passed: it sends none
    assert "Run finished after 5 steps" in resumed.stdout
