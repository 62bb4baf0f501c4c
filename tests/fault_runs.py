"""Training runs in child processes that the fault tests kill (SIGKILL, SIGTERM, SIGINT).

The children are forked from a forkserver that imported movielab once (and never ran a torch op,
so no thread pool is forked): a run starts in a fraction of a second instead of the several
seconds a fresh `python -m movielab.train` spends importing. Each child composes the real config
(tests.conftest.compose_config) and calls movielab.cli.train.train, as the CLI does.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from movielab.checkpoint import movielab_section, read_checkpoint
from tests.conftest import QUIET_CPU

QUIET = [*QUIET_CPU, "~callbacks.throughput", "logger=csv", "trainer.log_every_n_steps=1"]
# one tiny configuration per model kind the exact-resume tests cover
KINDS = {
    "char_gpt": [
        "model.net.config.n_layer=1",
        "model.net.config.n_head=2",
        "model.net.config.n_embd=16",
        "model.net.config.block_size=16",
        "model.net.config.dropout=0.2",  # resume must restore the RNG to draw the same masks
        "data.batching.batch_size=4",
        "data.batching.val_max_windows=8",
        "~callbacks.text_samples",
    ],
    "lstm": [
        "model=lstm",
        "data=seinfeld",
        "model.net.config.embedding_dim=16",
        "model.net.config.hidden_dim=16",
        "model.net.config.block_size=8",
        "model.net.config.dropout=0.2",
        "data.batching.batch_size=4",
        "data.batching.val_max_windows=8",
        "~callbacks.text_samples",
    ],
    "title_transformer": [
        "experiment=title_transformer",
        "model.net.config.n_layer=1",
        "model.net.config.n_head=2",
        "model.net.config.n_embd=16",
        "model.scheduler.warmup_steps=5",
        "data.batching.batch_size=16",
        "data.tokenizer.options.vocab_size=120",
        "~callbacks.text_samples",
        "~callbacks.rating_conditioning",
    ],
    "text_gan": [
        "experiment=text_gan",
        "model.net.config.n_embd=16",
        "model.net.config.n_head=2",
        "model.net.config.generator_layers=1",
        "model.net.config.discriminator_layers=1",
        "model.net.config.noise_dim=8",
        "model.net.config.mapping_layers=1",
        "model.net.config.max_length=16",
        "model.critic_steps=3",
        "model.pretrain_steps=2",
        "data.batching.batch_size=8",
        "~callbacks.generated_text_metrics",
    ],
    "genre_classifier": [
        "experiment=genre_classifier",
        "model.net.config.n_layer=1",
        "model.net.config.n_head=2",
        "model.net.config.n_embd=16",
        "model.net.config.block_size=64",
        "model.scheduler.warmup_steps=2",
        "data.batching.batch_size=16",
        "~callbacks.genre_report",
    ],
}

OUTPUT = "output.txt"
_CONTEXT: Any = None


def context() -> Any:
    """The forkserver context, preloaded with movielab's training entry point."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["tests.fault_runs", "movielab.cli.train", "tests.conftest"])
    return _CONTEXT


class Marker(L.Callback):
    """Touches `path` once training has started (the parent waits for it before a random kill)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Path(self.path).touch()


class SlowSteps(L.Callback):
    """Each training step takes at least `seconds` longer, so a signal sent at a random moment
    lands mid-run rather than after the last step."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        time.sleep(self.seconds)


class SignalAtStep(L.Callback):
    """Sends `signum` to its own process as batch `step` starts: it arrives mid-step."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class KillAtStep(L.Callback):
    """SIGKILLs its own process when batch `step` starts: nothing of the run gets to clean up."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _slow_checkpoint_writes(marker: str) -> None:
    """Make every checkpoint write stop halfway for a second, after touching `marker`: the parent
    kills the child then, with a partial temporary on disk."""
    import movielab.checkpoint_io as checkpoint_io
    from movielab.files import atomic_output

    def slow(obj: Any, path: str | Path) -> None:
        with atomic_output(path) as stream:
            import io

            buffer = io.BytesIO()
            torch.save(obj, buffer)
            data = buffer.getvalue()
            stream.write(data[: len(data) // 2])
            stream.flush()
            Path(marker).touch()
            time.sleep(1.0)
            stream.write(data[len(data) // 2 :])

    checkpoint_io.atomic_torch_save = slow


def _child(root: str, overrides: list[str], slow_write_marker: str | None) -> None:
    from movielab.cli.train import train
    from tests.conftest import compose_config

    torch.set_num_threads(1)
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / OUTPUT, "ab") as output:  # what the run prints, for the test to read
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    if slow_write_marker:
        _slow_checkpoint_writes(slow_write_marker)
    train(compose_config(Path(root), overrides))


def start(root: Path, overrides: list[str], slow_write_marker: Path | None = None) -> Any:
    process = context().Process(
        target=_child,
        args=(str(root), list(overrides), str(slow_write_marker) if slow_write_marker else None),
    )
    process.start()
    return process


def run(root: Path, overrides: list[str], timeout: float = 120.0) -> int:
    """A child run to its end; its exit code."""
    process = start(root, overrides)
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise AssertionError(f"the run in {root} did not end within {timeout} s")
    return process.exitcode


def output(root: Path) -> str:
    """What the child runs in `root` printed (stdout and stderr)."""
    path = root / OUTPUT
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for(path: Path, process: Any, timeout: float = 60.0) -> bool:
    """Whether `path` appeared before the process ended (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if not process.is_alive():
            return path.exists()
        time.sleep(0.01)
    return False


def complete_step(path: Path) -> int:
    """The step of a checkpoint that loads whole and matches its digest (else the test fails)."""
    checkpoint = read_checkpoint(path)
    movielab_section(checkpoint, path)  # the digest over weights and description
    return int(checkpoint["global_step"])


def logged(run_dir: Path, name: str) -> dict[int, float]:
    """{step: value} of a metric in the run's csv log."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return {int(row["step"]): float(row[name]) for row in csv.DictReader(handle) if row.get(name)}


def same_weights(a: Path, b: Path) -> list[str]:
    """The names of weights and optimizer moments that differ between two checkpoints."""
    first, second = read_checkpoint(a), read_checkpoint(b)
    differ = [k for k, v in first["state_dict"].items() if not torch.equal(v, second["state_dict"][k])]
    for i, (x, y) in enumerate(zip(first["optimizer_states"], second["optimizer_states"], strict=True)):
        for key, moments in x["state"].items():
            differ += [
                f"optimizer {i} {key} {m}"
                for m, value in moments.items()
                if isinstance(value, torch.Tensor) and not torch.equal(value, y["state"][key][m])
            ]
    return differ
