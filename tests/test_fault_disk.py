"""A full disk or a read-only folder is one line naming the path, with the previous files intact
and no partial files left: a checkpoint, samples, a report and the token cache written onto a
small tmpfs that fills up, and a run folder on a read-only one. Skipped with the reason where a
tmpfs cannot be mounted (it needs root, or CAP_SYS_ADMIN)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest

from movielab.checkpoint import read_checkpoint
from movielab.cli import generate as generate_cli
from movielab.cli import train as train_cli
from movielab.cli.train import train
from movielab.errors import MovielabError
from movielab.files import atomic_write_text
from tests.conftest import TINY, compose_config

QUICK = [*TINY, "~callbacks.text_samples", "logger=csv"]


@contextlib.contextmanager
def _tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: a small tmpfs cannot be made here")
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({mounted.stderr.strip() or 'mount failed'}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(folder: Path) -> None:
    """Leave no byte free on the file system of `folder` (unbuffered writes until one fails)."""
    handle = os.open(folder / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for block in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(handle, b"\0" * block)
    finally:
        os.close(handle)


class FillDiskAfter(L.Callback):
    """Fills the run folder's disk after step `step`, so the next checkpoint write runs out of space."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step:
            _fill(Path(trainer.default_root_dir))


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    with _tmpfs(tmp_path / "disk", "2m") as disk:
        fill = ["+callbacks.fill._target_=tests.test_fault_disk.FillDiskAfter", "+callbacks.fill.step=3"]
        overrides = [*QUICK, *fill, "trainer.max_steps=8", "trainer.val_check_interval=2"]
        cfg = compose_config(tmp_path, [*overrides, f"paths.output_dir={disk / 'run'}"])
        with pytest.raises(MovielabError) as raised:
            train(cfg)
        last = disk / "run" / "checkpoints" / "last.ckpt"
        assert str(raised.value).startswith(f"cannot write {disk / 'run' / 'checkpoints'}")
        assert "no space left on the device" in str(raised.value) and "\n" not in str(raised.value)
        assert read_checkpoint(last)["global_step"] == 2  # the checkpoint before the disk filled
        assert not _temporaries(disk)


def test_a_full_disk_while_saving_samples_or_a_report_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    train(compose_config(tmp_path, [*QUICK, "trainer.max_steps=2", "trainer.val_check_interval=2"]))
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        run = disk / "run"
        shutil.copytree(tmp_path / "run" / "checkpoints", run / "checkpoints")
        report = atomic_write_text(run / "evaluation" / "report.md", "the previous report")
        _fill(disk)
        with pytest.raises(
            MovielabError, match="cannot write .*report.md: no space left on the device; the previous"
        ):
            atomic_write_text(report, "a new report " * 10000)
        assert report.read_text() == "the previous report"

        argv = [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "num_samples=2", "max_new_tokens=2000", "seed=0"]
        monkeypatch.setattr(sys, "argv", ["movielab.generate", *argv])
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        with pytest.raises(SystemExit) as exit_info:
            generate_cli.main()
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.count("\n") == 0
        assert err.startswith(f"error: cannot write {run / 'samples'}") and "no space left" in err
        assert not _temporaries(disk) and not list((run / "samples").glob("*.txt"))


def test_a_full_disk_while_preparing_the_token_cache_is_one_line_and_leaves_no_cache(
    tmp_path, monkeypatch, capsys
):
    with _tmpfs(tmp_path / "disk", "64k") as disk:
        monkeypatch.chdir(tmp_path)
        argv = [
            *QUICK,
            "trainer.max_steps=2",
            f"paths.cache_dir={disk / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
        monkeypatch.setattr(sys, "argv", ["movielab.train", *argv])
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        with pytest.raises(SystemExit) as exit_info:
            train_cli.main()
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and "Traceback" not in err and err.count("\n") == 0
        assert err.startswith("error: cannot write ") and "no space left on the device" in err
        cache = disk / "cache"
        assert not [p for p in cache.iterdir() if not p.name.startswith(".")] if cache.exists() else True


def test_a_read_only_output_folder_is_one_line_before_anything_runs(tmp_path, monkeypatch, capsys):
    with _tmpfs(tmp_path / "readonly", "1m", read_only=True) as readonly:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["movielab.train", *QUICK, f"paths.log_dir={readonly}"])
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        with pytest.raises(SystemExit) as exit_info:
            train_cli.main()
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.count("\n") == 0
        assert err.startswith(f"error: cannot create the run folder {readonly}/train/runs/")
        assert "the file system is read-only" in err
