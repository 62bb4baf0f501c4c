"""DDP on two CPU processes (`trainer=ddp_cpu`, gloo: the code path of `trainer=ddp` on GPUs), run
as a user runs it, `python -m movielab.train` in a subprocess, so Lightning starts rank 1 as a copy of
the command with Hydra's run folder: loss falls; the ranks draw different batches and hold the same
weights; only rank 0 writes checkpoints, samples, logs and reports and prints the summary (every file
each process writes is recorded by an audit hook); val/loss is the mean over every validation row of
both ranks' uneven shards, equal to one process's; resuming halfway gives the same weights. The title
transformer (rows of titles) runs by default, the character GPT (windows) with `pytest -m slow`."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from movielab.checkpoint import read_checkpoint
from movielab.data.batching import RecordBatching, WindowBatching
from movielab.data.token_cache import TokenSplit
from movielab.errors import MovielabError
from movielab.models.modules import training_module
from movielab.models.spec import connect, data_needs, spec_from_config
from tests.conftest import REPO, compose_config

STEPS = 12
COMMON = [
    "trainer=ddp_cpu",
    "model.net.config.n_layer=1",
    "model.net.config.n_head=2",
    "model.net.config.n_embd=16",
    "model.net.config.dropout=0.2",
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STEPS // 2}",
    "trainer.log_every_n_steps=1",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "~callbacks.throughput",
    "logger=[csv,tensorboard]",
    "callbacks.text_samples.num_samples=2",
    "callbacks.text_samples.max_new_tokens=16",
    "+callbacks/gen_metrics=every_validation",
    "callbacks.gen_metrics.num_samples=4",
    "callbacks.gen_metrics.max_new_tokens=16",
    # every validation's checkpoint kept, to resume from the halfway one
    "+callbacks.every_validation._target_=lightning.pytorch.callbacks.ModelCheckpoint",
    "+callbacks.every_validation.dirpath=${paths.output_dir}/checkpoints/every",
    "+callbacks.every_validation.filename='step{step:06d}'",
    "+callbacks.every_validation.auto_insert_metric_name=false",
    "+callbacks.every_validation.save_top_k=-1",
    "+callbacks.every_validation.monitor=null",
    "+callbacks.every_validation.mode=max",  # only so its state_key differs from last_checkpoint's
]
MODELS = {
    # rating-conditioned titles, one per row (RecordBatching): rows of different lengths, so each
    # rank's dropout draws a different amount of randomness; the rating report and gen/rating_*;
    "titles": [
        "experiment=title_transformer",
        "data.tokenizer.options.vocab_size=120",
        "data.batching.batch_size=16",
        "data.val_fraction=0.0825",  # 33 of the sample's ~400 titles: rank 0 gets 17 (2 batches), rank 1 16
        "model.optimizer.lr=0.02",
        "model.scheduler.warmup_steps=4",
        "callbacks.rating_conditioning.samples_per_rating=2",
        "callbacks.rating_conditioning.ratings=[2,8]",
        "callbacks.rating_conditioning.max_new_tokens=16",
        "callbacks.gen_metrics.rating_samples=2",
        "callbacks.gen_metrics.ratings=[2,8]",
    ],
    # the character GPT on windows (WindowBatching); 33 validation windows of 8: rank 0 gets 17
    "gpt": [
        "model.net.config.block_size=16",
        "model.optimizer.lr=0.01",
        "model.scheduler.warmup_steps=2",
        "data.batching.batch_size=8",
        "data.batching.val_max_windows=33",
    ],
}

# Loaded by every process (both ranks) through PYTHONPATH: records each path it opens for writing,
# creates, renames or removes under MOVIELAB_AUDIT_ROOT, and at exit writes them with its rank.
AUDIT_HOOK = """
import atexit, json, os, sys

_root = os.environ["MOVIELAB_AUDIT_ROOT"]
_written = set()
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def _keep(path):
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(_root):
            _written.add(os.path.relpath(path, _root))


def _hook(event, args):
    if event == "open" and isinstance(args[2], int) and args[2] & _WRITE:
        _keep(args[0])
    elif event == "os.mkdir" and not os.path.exists(args[0]):  # exist_ok on a folder there: no write
        _keep(args[0])
    elif event in ("os.remove", "os.rmdir"):
        _keep(args[0])
    elif event == "os.rename":
        _keep(args[0]), _keep(args[1])


@atexit.register
def _report():
    rank = os.environ.get("LOCAL_RANK", "0")
    with open(os.path.join(os.environ["MOVIELAB_AUDIT_OUT"], f"rank{rank}-{os.getpid()}.json"), "w") as f:
        json.dump(sorted(_written), f)


sys.addaudithook(_hook)
"""


class BatchRecorder(L.Callback):
    """Test probe (runs on every rank): a digest of each step's training inputs, and at the end
    of the weights, written to <out_dir>/rank<R>.json."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches: dict[int, str] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches[trainer.global_step] = _digest(batch["inputs"])

    def on_train_end(self, trainer, pl_module) -> None:
        weights = hashlib.sha256()
        for tensor in pl_module.state_dict().values():
            weights.update(tensor.detach().cpu().numpy().tobytes())
        record = {"batches": self.batches, "weights": weights.hexdigest(), "world_size": trainer.world_size}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.numpy().astype(np.int64).tobytes()).hexdigest()


def _train_ddp(root: Path, *overrides: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """`python -m movielab.train trainer=ddp_cpu ...` run from `root` (outputs under root/outputs),
    with the audit hook in both ranks; returns the finished rank 0 once rank 1 has exited too."""
    audit = root / "audit"
    (root / "site").mkdir(parents=True, exist_ok=True)
    audit.mkdir(exist_ok=True)
    (root / "site" / "sitecustomize.py").write_text(AUDIT_HOOK)
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'site'}{os.pathsep}{REPO}",
        "MOVIELAB_AUDIT_ROOT": str(root / "outputs"),
        "MOVIELAB_AUDIT_OUT": str(audit),
        "HYDRA_FULL_ERROR": "1",
    }
    env.pop("LOCAL_RANK", None)
    command = [sys.executable, "-m", "movielab.train", *overrides]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    deadline = time.monotonic() + 60  # rank 1 exits on its own, shortly after rank 0
    while len(list(audit.glob("rank*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


def _audit(root: Path) -> dict[int, set[str]]:
    written: dict[int, set[str]] = {}
    for path in (root / "audit").glob("rank*.json"):
        written[int(path.name.split("-")[0].removeprefix("rank"))] = set(json.loads(path.read_text()))
    return written


def _run_folder(root: Path) -> Path:
    [folder] = (root / "outputs").glob("*/runs/*")  # one folder, shared by both ranks
    return folder


def _metric(run: Path, name: str) -> list[tuple[int, float]]:
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        return [(int(row["step"]), float(row[name])) for row in csv.DictReader(handle) if row.get(name)]


@pytest.fixture(scope="module", params=["titles", pytest.param("gpt", marks=pytest.mark.slow)])
def ddp_run(request, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, list[str]]:
    root = tmp_path_factory.mktemp(f"ddp_{request.param}")
    (root / "records").mkdir()
    overrides = [*MODELS[request.param], *COMMON]
    result = _train_ddp(
        root,
        *overrides,
        "+callbacks.batch_recorder._target_=tests.test_ddp.BatchRecorder",
        f"+callbacks.batch_recorder.out_dir={root / 'records'}",
    )
    return root, result, overrides


def _single_process(root: Path, overrides: list[str]) -> tuple:
    """The same data and model config in this process (no DDP): the prepared datamodule and a
    training module with the vocabulary bound."""
    cfg = compose_config(root, [o for o in overrides if o != "trainer=ddp_cpu"])
    datamodule = instantiate(cfg.data)
    spec = spec_from_config(cfg.model)
    datamodule.connect(data_needs(spec))
    datamodule.prepare()
    return datamodule, training_module(connect(spec, datamodule.facts()), cfg.model)


def test_two_processes_train_one_model_and_loss_falls(ddp_run):
    root, _, _ = ddp_run
    run = _run_folder(root)
    records = [json.loads((root / "records" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]
    assert records[0]["weights"] == records[1]["weights"]  # gradients were averaged every step
    train_loss = [value for _, value in _metric(run, "train/loss")]
    val_loss = [value for _, value in _metric(run, "val/loss")]
    assert len(train_loss) == STEPS and len(val_loss) == 2
    assert val_loss[1] < val_loss[0] and np.mean(train_loss[-3:]) < np.mean(train_loss[:3]) - 0.2
    gen = _metric(run, "gen/distinct_2")
    assert len(gen) == 2 and all(0 < value <= 1 for _, value in gen)  # rank 0's, once a validation


def test_the_ranks_draw_different_batches_each_from_seed_rank_and_step(ddp_run):
    root, _, overrides = ddp_run
    batches = [json.loads((root / "records" / f"rank{r}.json").read_text())["batches"] for r in (0, 1)]
    assert sorted(map(int, batches[0])) == sorted(map(int, batches[1])) == list(range(STEPS))
    assert all(batches[0][step] != batches[1][step] for step in batches[0])
    # rank r's batch k is the batching's draw for (seed, r, k) (movielab.data.batching)
    datamodule, _ = _single_process(root, overrides)
    split = datamodule.prepare().train
    for rank in (0, 1):
        loader = datamodule.batching.train_loader(split, seed=datamodule.seed, rank=rank, world_size=2)
        for step in (0, STEPS - 1):
            assert batches[rank][str(step)] == _digest(loader.draw(step)["inputs"])


def test_only_rank_zero_writes_and_prints_the_summary(ddp_run):
    root, result, _ = ddp_run
    run = _run_folder(root).relative_to(root / "outputs")
    written = _audit(root)
    assert sorted(written) == [0, 1]
    # rank 1 writes its own log only (Hydra job train_ddp_process_1), nothing else anywhere
    assert written[1] == {str(run / "train_ddp_process_1.log")}
    rank0 = {Path(p).relative_to(run).as_posix() for p in written[0] if Path(p).is_relative_to(run)}
    expected = {
        "train.log",
        "tokenizer.json",
        ".hydra/config.yaml",
        "checkpoints/last.ckpt",
        f"checkpoints/every/step{STEPS // 2:06d}.ckpt",
        "csv/metrics.csv",
    }
    assert expected <= rank0, expected - rank0
    assert any(p.startswith("checkpoints/best-step") for p in rank0)
    assert any(p.startswith("tensorboard/events.out.tfevents") for p in rank0)  # scalars, samples, hparams
    assert result.stdout.count("Run finished after") == 1
    assert "[rank: 1]" in result.stdout + result.stderr  # rank 1 did run (Lightning's rank prefix)
    assert "sync_dist=True" not in result.stderr  # val/ and gen/ are reduced already: no false advice


def test_val_loss_is_the_mean_over_every_window_of_both_ranks(ddp_run):
    """The DDP run's last val/loss, over uneven shards, equals one process validating the same
    weights on the whole validation set."""
    root, _, overrides = ddp_run
    run = _run_folder(root)
    logged = _metric(run, "val/loss")[-1][1]
    datamodule, module = _single_process(root, overrides)
    module.load_state_dict(read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    [one_process] = trainer.validate(module, datamodule=datamodule, verbose=False)
    assert one_process["val/loss"] == pytest.approx(logged, rel=1e-5)
    # the shards are uneven, and rank 0's alone scores differently
    val = datamodule.prepare().val
    shards = [list(datamodule.batching.val_loader(val, rank=r, world_size=2)) for r in (0, 1)]
    sizes = [sum(len(batch["inputs"]) for batch in shard) for shard in shards]
    assert sizes[0] == sizes[1] + 1
    module.eval()
    with torch.no_grad():
        scored = [module._loss(batch) for batch in shards[0]]
    rank0_only = float(sum(loss * n for loss, n in scored) / sum(n for _, n in scored))
    assert abs(rank0_only - logged) > 1e-4


def test_resuming_halfway_under_ddp_gives_the_weights_of_the_uninterrupted_run(ddp_run, tmp_path):
    """N steps == N/2, resume, N/2 more: weights, Adam moments and every rank's RNG state (the
    titles' rows differ in length per rank, so their dropout draws differ) come back exactly."""
    root, _, overrides = ddp_run
    full_run = _run_folder(root)
    halfway = full_run / "checkpoints" / "every" / f"step{STEPS // 2:06d}.ckpt"
    assert read_checkpoint(halfway)["global_step"] == STEPS // 2
    cache = f"paths.cache_dir={root / 'outputs' / 'cache' / 'tokens'}"
    _train_ddp(tmp_path, *overrides, f"ckpt_path={halfway}", cache)
    full = read_checkpoint(full_run / "checkpoints" / "last.ckpt")
    resumed = read_checkpoint(_run_folder(tmp_path) / "checkpoints" / "last.ckpt")
    assert full["global_step"] == resumed["global_step"] == STEPS
    for name, tensor in full["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
    assert len(full["callbacks"]["ResumableRandomState"]["ranks"]) == 2
    moments = full["optimizer_states"][0]["state"], resumed["optimizer_states"][0]["state"]
    assert all(torch.equal(moments[0][k]["exp_avg"], moments[1][k]["exp_avg"]) for k in moments[0])


def _split(n_records: int, length: int = 5) -> TokenSplit:
    offsets = np.arange(n_records + 1, dtype=np.int64) * length
    return TokenSplit(np.arange(n_records * length, dtype=np.uint16), offsets, {})  # ids all differ


@pytest.mark.parametrize("world_size", [2, 3])
def test_validation_shards_cover_every_window_and_record_once(world_size):
    split = _split(23)
    windows = WindowBatching(batch_size=4, block_size=4)
    starts = [
        int(row[0])
        for rank in range(world_size)
        for batch in windows.val_loader(split, rank, world_size)
        for row in batch["inputs"]
    ]
    single = [int(row[0]) for batch in windows.val_loader(split) for row in batch["inputs"]]
    assert sorted(starts) == sorted(single) == sorted(set(starts))
    assert len(starts) == (len(split.tokens) - 1) // 4
    records = RecordBatching(batch_size=4)
    rows = [
        tuple(row.tolist())
        for rank in range(world_size)
        for batch in records.val_loader(split, rank, world_size)
        for row in batch["inputs"]
    ]
    assert len(rows) == 23 and sorted(rows) == sorted(
        tuple(row.tolist()) for batch in records.val_loader(split) for row in batch["inputs"]
    )


def test_fewer_validation_windows_than_ranks_is_a_one_line_error():
    with pytest.raises(MovielabError, match="validation split has 2 windows, fewer than the 3 processes"):
        WindowBatching(batch_size=4, block_size=4, val_max_windows=2).val_loader(_split(23), 2, 3)
    with pytest.raises(MovielabError, match="validation split has 2 records, fewer than the 3 processes"):
        RecordBatching(batch_size=4).val_loader(_split(2), 2, 3)
