"""Callbacks movielab adds to Lightning's: generated samples in TensorBoard, exact RNG on resume,
checkpoints that keep a run's work (at the end, on a stop signal, never non-finite, never an
ambiguous "best"), a stop at the first non-finite loss, and a progress bar that counts steps."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, ThroughputMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from movielab.data.batching import batch_size_of, tokens_in
from movielab.errors import TrainingDiverged
from movielab.generation import TrainsTextWriter, generate_texts, requests_for
from movielab.models.modes import evaluating
from movielab.sampling import SamplingSettings

log = logging.getLogger(__name__)


class TextSamples(L.Callback):
    """After each validation, sample a few texts and add them to TensorBoard's Text tab.

    Every sample has its own seed (seed, seed + 1, ...), so logging samples never changes the
    training run's randomness, and the samples of two validations differ only by the weights.
    """

    def __init__(
        self,
        num_samples: int = 3,
        max_new_tokens: int = 300,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = 0.95,
        seed: int = 0,
        prompt: dict[str, Any] | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.settings = SamplingSettings(
            temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens
        )
        self.seed = seed
        self.prompt = dict(prompt or {})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the validation's metrics are logged (and StopOnNonFinite has checked them)
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or not isinstance(pl_module, TrainsTextWriter)
        ):
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        datamodule = trainer.datamodule
        sampler = pl_module.text_sampler(datamodule.tokenizer, datamodule.template)
        requests = requests_for(self.prompt, self.settings, self.seed, self.num_samples)
        with evaluating(pl_module):
            results = generate_texts(sampler, requests, device=pl_module.device)
        markdown = "\n\n---\n\n".join(f"```\n{result.text}\n```" for result in results)
        for logger in loggers:
            logger.experiment.add_text("samples", markdown, global_step=trainer.global_step)


class ResumableRandomState(L.Callback):
    """Saves the torch RNG states in checkpoints and restores them on resume, so dropout after
    resuming draws the same masks as an uninterrupted run would have. Under DDP the ranks' states
    differ (batches of different shapes draw different amounts), so every rank's is gathered into
    the checkpoint (which rank 0 writes) and each rank gets its own back."""

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        if _world_size() > 1:  # Lightning asks every rank for its state when it saves a checkpoint
            ranks: list[Any] = [None] * _world_size()
            torch.distributed.all_gather_object(ranks, state)
            return {"ranks": ranks}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "ranks" in state_dict:
            ranks = state_dict["ranks"]
            state_dict = ranks[torch.distributed.get_rank() % len(ranks) if _world_size() > 1 else 0]
        torch.set_rng_state(state_dict["cpu"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def _world_size() -> int:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if distributed else 1


class TokenThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor with tokens as its items: logs train/items_per_sec (tokens/s).

    The counting functions are given here rather than as Hydra `_partial_` targets in the config:
    Hydra 1.3.8 checks its target policy on every call of such a partial (about 0.2 ms), and these
    run twice every training step (experiments/bench_training.md).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(batch_size_fn=batch_size_of, length_fn=tokens_in, **kwargs)


class LastCheckpoint(ModelCheckpoint):
    """checkpoints/last.ckpt: rewritten at every validation, and written once more when training
    ends at max_steps or is stopped by a signal (GracefulStop, Lightning's SIGTERMException) if
    the last steps were not saved yet, so a run shorter than val_check_interval or cut short by
    Ctrl-C still leaves its weights. Other errors save nothing: the step may be half done."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_if_behind(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):  # raised between steps, never within one
            self._save_if_behind(trainer)

    def _save_if_behind(self, trainer: L.Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    @property
    def saved_step(self) -> int | None:
        """The step of the checkpoint this run wrote last (None before the first)."""
        return self._last_global_step_saved if self.best_model_path else None


def _pattern(filename: str) -> str:
    """`best-step{step:06d}` -> `best-step*`: the names this callback's checkpoints can have."""
    out, depth = [], 0
    for char in filename:
        if char == "{":
            depth += 1
            if depth == 1:
                out.append("*")
        elif char == "}":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


class BestCheckpoints(ModelCheckpoint):
    """The save_top_k best checkpoints by `monitor`, with three guarantees Lightning's lacks:

    - a non-finite score (NaN, inf) is never saved as a best;
    - no `-v1` copies: a name is rewritten in place (atomically), and when training starts the
      folder's files of this pattern that the run does not track are removed (a killed run's
      newer best, which the resumed run rewrites identically);
    - resuming into another folder carries the tracked best files over (hard links), so the new
      folder's best is the run's best, not the best since the resume.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["enable_version_counter"] = False
        super().__init__(*args, **kwargs)

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is not None and not bool(torch.isfinite(current)):
            return False
        return super().check_monitor_top_k(trainer, current)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        previous = state_dict.get("dirpath")
        if previous and self.dirpath and Path(previous) != Path(self.dirpath):
            state_dict = self._carried_over(state_dict, Path(previous), Path(self.dirpath))
        super().load_state_dict(state_dict)

    def _carried_over(self, state: dict[str, Any], previous: Path, folder: Path) -> dict[str, Any]:
        best = state.get("best_k_models") or {}
        if not best or not all(Path(path).is_file() for path in best):
            return state  # nothing to carry, or the old folder lost files: start a fresh top-k
        moved = {str(path): str(folder / Path(path).name) for path in best}
        if rank_zero_only.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            for old, new in moved.items():
                if not Path(new).exists():
                    _link_or_copy(Path(old), Path(new))
        return {
            **state,
            "dirpath": str(folder),
            "best_k_models": {moved[str(k)]: v for k, v in best.items()},
            "best_model_path": moved.get(str(state.get("best_model_path")), ""),
            "kth_best_model_path": moved.get(str(state.get("kth_best_model_path")), ""),
        }

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.is_global_zero and self.dirpath and Path(self.dirpath).is_dir():
            tracked = {Path(path).resolve() for path in self.best_k_models}
            for path in Path(self.dirpath).glob(f"{_pattern(self.filename or '')}{self.FILE_EXTENSION}"):
                if path.resolve() not in tracked:
                    log.info("removing %s: a best checkpoint this run does not track", path)
                    path.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copy2(source, target)


def _finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() != 1 or bool(torch.isfinite(value.detach()).all())
    return not isinstance(value, float) or math.isfinite(value)


class StopOnNonFinite(L.Callback):
    """Stops training at the first NaN or inf: a training loss after its step, the weights before
    a validation, a validation metric before any checkpoint of it is written (Lightning calls
    checkpoint callbacks last). The error names the step and the metric; the checkpoints written
    before stay as they were (AtomicCheckpointIO also refuses to write non-finite weights)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:  # noqa: ANN001
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not _finite(loss):
            self._stop(trainer, "train/loss", float(loss))
        self._check(trainer, "train/")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check_weights(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._check_weights(trainer, pl_module)  # raising here keeps the file on disk as it was

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, parameter in pl_module.named_parameters():
            if not bool(torch.isfinite(parameter.detach()).all()):
                self._stop(trainer, f"the weight {name}", math.nan)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, "val/")

    def _check(self, trainer: L.Trainer, prefix: str) -> None:
        for name, value in trainer.callback_metrics.items():
            if name.startswith(prefix) and not _finite(value):
                self._stop(trainer, name, float(value))

    def _stop(self, trainer: L.Trainer, metric: str, value: float) -> None:
        shown = "non-finite" if metric.startswith("the weight") else f"{value}"
        raise TrainingDiverged(
            f"training diverged at step {trainer.global_step}: {metric} is {shown}; the run stopped "
            "and its checkpoints from before are kept (try a smaller model.optimizer.lr)",
            step=trainer.global_step,
            metric=metric,
        )


class GracefulStop(L.Callback):
    """Ctrl-C (SIGINT) or SIGTERM (a scheduler's or `timeout`'s stop) while training: the step in
    progress finishes, with its validation if one is due, then Lightning's own graceful SIGTERM
    stop ends training at that step boundary (where LastCheckpoint saves, in a state that
    resumes exactly: no extra validation, as `trainer.should_stop` would run). `received` says
    which signal came, `at_step` where training stopped. A second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self.at_step: int | None = None
        self.exception: BaseException | None = None
        self._requested = False
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only
        for signum in self.SIGNALS:  # Lightning's SIGTERM handler is kept, and called when it is safe
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = signum
        log.warning(
            "%s received: stopping after this step and saving checkpoints/last.ckpt "
            "(Ctrl-C again to stop at once, losing the steps since the last checkpoint)",
            signal.Signals(signum).name,
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:  # noqa: ANN001
        # a validation due after this step must run whole first: Lightning stops a validation
        # in progress once it has been told of a SIGTERM
        if self.received is not None and not _validates_after_this_step(trainer):
            self._request_stop(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.received is not None and not trainer.sanity_checking:
            self._request_stop(trainer)

    def _request_stop(self, trainer: L.Trainer) -> None:
        if self._requested:
            return
        self._requested = True
        self.at_step = trainer.global_step
        lightning_handler = self._previous.get(signal.SIGTERM)
        if callable(lightning_handler):
            lightning_handler(signal.SIGTERM, None)  # raises SIGTERMException at the step's end
        else:
            trainer.should_stop = True

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.exception = exception
        self._restore()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def _validates_after_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning runs a validation after the step that just ended (its own decision)."""
    loop = trainer.fit_loop.epoch_loop
    return bool(loop._should_check_val_fx(trainer.fit_loop._data_fetcher))


class StepProgressBar(RichProgressBar):
    """Rich's progress bar for step-based training: "Epoch 3" and `step 1200/5000`, instead of
    "Epoch 3/-2" (max_epochs=-1 less one)."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        return {"step": f"{trainer.global_step}{total}", **items}
