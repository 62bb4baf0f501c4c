"""An extra DDP rank joins rank 0's run folder: Lightning restarts the command for each extra rank
with hydra.run.dir=<rank 0's folder> (LOCAL_RANK set), torchrun and srun set RANK / SLURM_PROCID.
Such a process must neither be refused for the run rank 0 is starting there nor, given
overwrite=true, delete what rank 0 has just written; rank 0 itself still is and does."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from movielab import CONFIG_DIR
from movielab.run_folder import RunFolderClaim, launched_rank

RANKS = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def _folder_with_a_run(folder: Path) -> dict[str, bytes]:
    for name, data in {"checkpoints/last.ckpt": b"weights", "csv/metrics.csv": b"step,loss\n1,2\n"}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _claim(folder: Path, *overrides: str) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose("train", overrides=[f"hydra.run.dir={folder}", *overrides], return_hydra_config=True)
    RunFolderClaim().on_run_start(config)


@pytest.fixture
def no_rank(monkeypatch):
    for name in RANKS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", ["LOCAL_RANK", "RANK", "SLURM_PROCID", "NODE_RANK"])
def test_an_extra_rank_joins_a_held_folder_and_overwrite_deletes_nothing(tmp_path, no_rank, variable):
    before = _folder_with_a_run(tmp_path)
    no_rank.setenv(variable, "1")
    _claim(tmp_path)  # refused for rank 0 (next test); joined here
    _claim(tmp_path, "overwrite=true")
    after = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_rank_zero_is_still_refused_and_overwrite_still_replaces(tmp_path, no_rank, capsys):
    _folder_with_a_run(tmp_path)
    no_rank.setenv("LOCAL_RANK", "0")
    with pytest.raises(SystemExit):
        _claim(tmp_path)
    assert "already holds a run" in capsys.readouterr().err
    _claim(tmp_path, "overwrite=true")
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "csv").exists()


def test_launched_rank_reads_every_launchers_variable():
    assert launched_rank({}) == 0
    assert launched_rank({"LOCAL_RANK": "0", "NODE_RANK": "0"}) == 0
    assert launched_rank({"LOCAL_RANK": "1"}) == 1  # Lightning's child on node 0
    assert launched_rank({"NODE_RANK": "2", "LOCAL_RANK": "0"}) == 2  # a node's first process
    assert launched_rank({"RANK": "3", "LOCAL_RANK": "1"}) == 3  # torchrun
    assert launched_rank({"SLURM_PROCID": "5"}) == 5
    assert launched_rank({"RANK": ""}) == 0


@pytest.mark.parametrize(
    ("variable", "rank", "job", "log"),
    [
        (None, None, "train", "train.log"),
        ("RANK", "3", "train", "train.rank3.log"),  # torchrun
        ("SLURM_PROCID", "1", "train", "train.rank1.log"),  # srun
        ("LOCAL_RANK", "1", "train_ddp_process_1", "train_ddp_process_1.log"),  # Lightning's child
    ],
)
def test_each_rank_writes_its_own_log_file_in_the_shared_run_folder(
    tmp_path, no_rank, variable, rank, job, log
):
    from movielab import resolvers  # noqa: F401 (the training entry point registers ${rank_log_name:...})

    if variable:
        no_rank.setenv(variable, rank)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose("train", overrides=[f"hydra.run.dir={tmp_path}"], return_hydra_config=True)
    with open_dict(config):
        config.hydra.runtime.output_dir, config.hydra.job.name = str(tmp_path), job
    assert config.hydra.job_logging.handlers.file.filename == str(tmp_path / log)
