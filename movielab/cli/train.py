"""`python -m movielab.train [overrides]`: prepare data, train, checkpoint, and say where it all went."""

from __future__ import annotations

import dataclasses
import logging
import math
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from movielab import CONFIG_DIR
from movielab import resolvers as _resolvers  # noqa: F401 (registers ${steps_for_tokens:...} and the others)
from movielab.callbacks import GracefulStop, LastCheckpoint, ResumableRandomState, StopOnNonFinite
from movielab.checkpoint import SECTION, load_weights, movielab_section, read_checkpoint, require_same_data
from movielab.checkpoint_io import AtomicCheckpointIO, RunDescription
from movielab.data.batching import RecordBatching
from movielab.data.datamodule import TextDataModule
from movielab.data.fitting_configs import fitting_options_hint
from movielab.data.readers.csv_reader import MissingColumns
from movielab.data.token_cache import TokenData
from movielab.errors import (
    MovielabError,
    ReportedExit,
    config_errors_reported,
    movielab_error_in,
    user_errors_reported,
)
from movielab.evaluation.training_texts import training_index
from movielab.files import remove_stale_temporaries
from movielab.generation import TrainsTextWriter
from movielab.models.modules import training_module
from movielab.models.registry import CONDITIONS, NETS, fill_dataclass, make_config
from movielab.models.spec import ModelSpec, connect, data_needs, spec_from_config
from movielab.options import check_options

log = logging.getLogger(__name__)

# movielab reports tokens/s (ThroughputMonitor's items/s); it does not count FLOPs per batch
warnings.filterwarnings("ignore", message=".*`flops_per_batch`.*")
# Lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates: nothing a user can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
# under DDP the val/ metrics are torchmetrics reduced over every rank's windows and gen/ is broadcast
# from rank 0, so Lightning's advice to add sync_dist=True does not apply to them
warnings.filterwarnings("ignore", message=r".*self\.log\('(val|gen)/.*sync_dist=True.*")


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    return [instantiate(node) for node in (group or {}).values() if node is not None and "_target_" in node]


def _start_from_weights(module: L.LightningModule, path: str, data: TokenData) -> None:
    """`init_from=PATH`: a new phase from a checkpoint's weights (fresh optimizer, schedule and step
    count), e.g. a decaying learning rate after a constant one; same data and tokenizer only."""
    checkpoint = read_checkpoint(path)
    require_same_data(checkpoint, f"init_from={path}", data)
    try:
        load_weights(module.net, checkpoint["state_dict"], "net.", path)
        for name in module.spec.conditions:  # only a language model has conditions
            load_weights(module.conditions[name], checkpoint["state_dict"], f"conditions.{name}.", path)
    except MovielabError as error:
        raise MovielabError(
            f"init_from={path} holds another architecture: {error}; use the model.* options of its run"
        ) from None


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """The config as flat scalars for TensorBoard's HParams tab."""
    flat = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key != "_target_":
                    walk(value, f"{prefix}{key}/" if prefix or key else "")
        elif isinstance(node, bool | int | float | str) and node is not None:
            flat[prefix.rstrip("/")] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return {k: v for k, v in flat.items() if not k.startswith(("paths/", "hydra"))}


def _description(cfg: DictConfig, spec: ModelSpec, datamodule: TextDataModule) -> dict[str, Any]:
    """What every checkpoint of this run says about itself (movielab.checkpoint_io.RunDescription)."""
    data = datamodule.prepare()
    index = training_index(data, datamodule.template)
    stats = data.stats
    summary_keys = ("source", "records_read", "train_records", "val_records", "train_tokens", "val_tokens")
    return {
        "model": spec.to_data(),
        "tokenizer": data.tokenizer.to_state(),
        "template": {"text": datamodule.template.text, "stop": datamodule.template.stop},
        "data": {
            **{k: stats[k] for k in summary_keys if k in stats},
            "vocab_size": data.tokenizer.vocab_size,
            "genres": list(stats.get("genres", [])),
            "rating_scale": None if datamodule.rating_scale is None else list(datamodule.rating_scale),
        },
        "data_fingerprint": data.fingerprint,
        "data_digest": data.content_digest,
        "training_fingerprints": None if index is None else index.to_tensor(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def _clear_debris(output_dir: Path, ckpt_path: str | None) -> None:
    """Temporaries that killed writers left in this run's folder and in the one resumed from."""
    if rank_zero_only.rank != 0:
        return
    folders = [output_dir, *([Path(ckpt_path).parent] if ckpt_path else [])]
    removed = [path for folder in folders for path in remove_stale_temporaries(folder)]
    if removed:
        log.info("Removed %d temporary file(s) left by killed writers, e.g. %s", len(removed), removed[0])


def _require_same_architecture(module: L.LightningModule, checkpoint: dict[str, Any], path: str) -> None:
    """Resuming needs every weight of the checkpoint to fit the model the options describe."""
    saved = checkpoint["state_dict"]
    ours = module.state_dict()
    misfits = [
        *(f"{k} missing" for k in ours if k not in saved),
        *(f"{k} not in the model" for k in saved if k not in ours),
        *(
            f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}"
            for k, v in ours.items()
            if k in saved and isinstance(saved[k], torch.Tensor) and saved[k].shape != v.shape
        ),
    ]
    if not misfits:
        return
    before = (checkpoint[SECTION].get("model") or {}) if isinstance(checkpoint.get(SECTION), dict) else {}
    now = module.spec.to_data()
    changed = [
        f"{key}: {before.get('net', {}).get('config', {}).get(key)!r} in the checkpoint, {value!r} now"
        for key, value in now["net"]["config"].items()
        if before.get("net", {}).get("config", {}).get(key) != value
    ]
    if before.get("net", {}).get("kind") != now["net"]["kind"]:
        changed.insert(
            0, f"net {before.get('net', {}).get('kind')!r} in the checkpoint, {now['net']['kind']!r} now"
        )
    detail = "; ".join(changed[:3]) if changed else ", ".join(misfits[:3])
    raise MovielabError(
        f"ckpt_path={path} holds another architecture ({detail}); resume with the model.* options of its run"
    )


# values only the data knows, stood in by placeholders so a config's fields are checked before it is read
_DATA_BOUND_NET_FIELDS = {"vocab_size": 2, "n_outputs": 1}
_DATA_BOUND_CONDITION_FIELDS = {"rating_prefix": {"scale": [0.0, 1.0]}, "genre_prefix": {"genres": ["_"]}}


def _check_model_fields(spec: ModelSpec) -> None:
    """Every net and condition field valid for its kind (the dataclasses' own checks), before any
    data is read: `model.net.config.n_layer=0` fails in a second, not after preparing the data."""
    for name, part in spec.conditions.items():  # their fields sit beside `kind` in the config
        where = f"model.conditions.{name}"
        if part.kind not in CONDITIONS:
            raise MovielabError(f"{where}.kind={part.kind!r} is not one of {', '.join(sorted(CONDITIONS))}")
        placeholders = {"d_model": 1, **_DATA_BOUND_CONDITION_FIELDS.get(part.kind, {})}
        fill_dataclass(CONDITIONS[part.kind].load()[1], {**placeholders, **part.config}, where)
    if spec.net.kind == "hf_causal_lm":
        return  # its architecture is the pretrained model's, read when it is built
    fields = (
        {f.name for f in dataclasses.fields(NETS[spec.net.kind].load()[1])}
        if spec.net.kind in NETS
        else set()
    )
    bound = {k: v for k, v in _DATA_BOUND_NET_FIELDS.items() if k in fields and k not in spec.net.config}
    make_config(NETS, spec.net.kind, {**spec.net.config, **bound}, "model.net")
    spec.task_options()


def _check_record_lengths(datamodule: TextDataModule) -> None:
    """Records the data keeps (data.max_tokens) must fit the rows the model takes whole."""
    if not isinstance(datamodule.batching, RecordBatching):
        return  # windows cut the token stream anywhere: no record needs to fit whole
    max_length = datamodule.batching.max_length
    if (
        datamodule.max_tokens is not None
        and max_length is not None
        and datamodule.max_tokens > max_length + 1
    ):
        raise MovielabError(
            f"data.max_tokens={datamodule.max_tokens} keeps records the model cannot hold whole: rows take "
            f"at most {max_length + 1} tokens (data.batching.max_length={max_length}, from the model's "
            "block_size less one position per condition); lower data.max_tokens or raise block_size"
        )


def planned_run(cfg: DictConfig) -> tuple[TextDataModule, ModelSpec]:
    """The datamodule and the model spec of a config, connected, with every option checked before
    any data is read (types and ranges, the model's fields, lengths that must agree)."""
    check_options(cfg)
    try:
        datamodule: TextDataModule = instantiate(cfg.data)
    except Exception as error:  # Hydra wraps the data classes' own checks
        raise movielab_error_in(error) or error from None
    spec = spec_from_config(cfg.model)
    _check_model_fields(spec)
    datamodule.connect(data_needs(spec))  # the model's lengths and tokenizer, before preparation
    _check_record_lengths(datamodule)
    return datamodule, spec


def _stop_reason(stop: GracefulStop) -> str | None:
    if stop.received is None:
        return None
    where = f" at step {stop.at_step}" if stop.at_step is not None else " in its last step"
    return f"interrupted by {signal.Signals(stop.received).name}{where}"


def train(cfg: DictConfig) -> float | None:
    """Train one model from a composed config; returns cfg.optimized_metric for sweeps.

    Ctrl-C or SIGTERM stops after the step in progress, saves checkpoints/last.ckpt, prints the
    summary with "interrupted at step N" and exits 130 / 143; a NaN or inf stops the run with
    one line (TrainingDiverged) and never overwrites a checkpoint."""
    started = time.perf_counter()
    check_options(cfg)  # the seed too, before it is used
    L.seed_everything(cfg.seed, workers=True)
    datamodule, spec = planned_run(cfg)
    output_dir = Path(cfg.paths.output_dir)
    _clear_debris(output_dir, cfg.ckpt_path)
    try:
        data = datamodule.prepare()
    except MissingColumns as error:  # a CSV given to the wrong data= option: name the right one
        raise MovielabError(f"{error}{fitting_options_hint(error.header)}") from None
    spec = connect(spec, datamodule.facts())  # the data's vocabulary, genres, scale, after it
    resumed = None
    if cfg.ckpt_path:
        if cfg.get("init_from"):
            raise MovielabError(
                "give ckpt_path (resume exactly) or init_from (new phase from its weights), not both"
            )
        resumed = read_checkpoint(cfg.ckpt_path)
        movielab_section(resumed, cfg.ckpt_path)  # its digests: a damaged file never resumes
        require_same_data(resumed, f"ckpt_path={cfg.ckpt_path}", data)
    module = training_module(spec, cfg.model)
    if resumed is not None:
        _require_same_architecture(module, resumed, cfg.ckpt_path)
        del resumed
    if cfg.get("init_from"):
        _start_from_weights(module, cfg.init_from, data)
    if rank_zero_only.rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        data.tokenizer.save(output_dir / "tokenizer.json")
    stop = GracefulStop()
    callbacks = [
        StopOnNonFinite(),  # first: its validation check runs before samples and checkpoints
        *_instantiate_all(cfg.get("callbacks")),
        RunDescription(_description(cfg, module.spec, datamodule)),
        ResumableRandomState(),
        stop,
    ]
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    n_params = sum(p.numel() for p in module.parameters())
    log.info("Model: %s (%s) with %.2fM parameters", spec.task, spec.net.kind, n_params / 1e6)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    except SystemExit:  # a graceful stop (SIGTERMException), or Lightning's exit after a Ctrl-C mid-step
        reason, code = _stop_reason(stop), 128 + int(stop.received or signal.SIGINT)
        if reason is None and not isinstance(stop.exception, KeyboardInterrupt):
            raise
        if reason is None:
            reason = (
                f"interrupted at step {trainer.global_step} (the steps since the last checkpoint are lost)"
            )
        if trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            _print_summary(trainer, cfg, output_dir, metrics, time.perf_counter() - started, reason)
        raise ReportedExit(code, reason) from None

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "gen/"))}
    final = {
        f"final/{name.split('/', 1)[1]}": value for name, value in metrics.items() if name.startswith("val/")
    }
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # fills TensorBoard's HParams tab
            logger.log_hyperparams(_hparams(cfg), final)
        else:
            logger.log_hyperparams(_hparams(cfg))
        logger.save()
    reason = _stop_reason(stop)  # a signal that came during the last step
    if trainer.is_global_zero:
        _print_summary(trainer, cfg, output_dir, metrics, time.perf_counter() - started, reason)
    if reason is not None:
        raise ReportedExit(128 + int(stop.received), reason)
    value = metrics.get(cfg.optimized_metric)
    return None if value is None or math.isnan(value) else value


def _resume_command(ckpt: str) -> str:
    """This run's own command line (Hydra's record of its overrides) with `ckpt_path` set, so an
    interrupted run goes on by pasting one line. A sweep's trial goes on by rerunning the sweep."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN:
        return f"python -m movielab.train <same options> ckpt_path={ckpt}"
    given = HydraConfig.get().overrides
    set_here = {"ckpt_path", "hydra.mode"}  # the one set below; the one Hydra records for itself
    kept = [o for o in [*given.hydra, *given.task] if o.split("=", 1)[0].lstrip("+~") not in set_here]
    return shlex.join(["python", "-m", "movielab.train", *kept, f"ckpt_path={ckpt}"])


def _print_summary(
    trainer: L.Trainer,
    cfg: DictConfig,
    output_dir: Path,
    metrics: dict[str, float],
    seconds: float,
    interrupted: str | None = None,
) -> None:
    ending = f"Run {interrupted}" if interrupted else f"Run finished after {trainer.global_step} steps"
    lines = [
        f"{ending}, in {seconds / 60:.1f} min.",
        *(f"  {name} = {value:.4f}" for name, value in sorted(metrics.items())),
        f"  run folder:   {output_dir}",
    ]
    last = [
        c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint) and c.saved_step is not None
    ]
    best = [
        c.best_model_path
        for c in trainer.checkpoint_callbacks
        if c.monitor and c.best_model_path and Path(c.best_model_path).exists()
    ]
    lines.extend(f"  last ckpt:    {c.best_model_path} (step {c.saved_step})" for c in last)
    lines.extend(f"  best ckpt:    {path}" for path in best)
    if last:
        ckpt = last[0].best_model_path
        if isinstance(trainer.lightning_module, TrainsTextWriter):
            lines.append(f"  sample:       python -m movielab.generate ckpt={ckpt}")
        else:  # a genre classifier writes no text; it reads a plot
            lines.append(f'  predict:      python -m movielab.predict ckpt={ckpt} text="<a plot>"')
        if interrupted:
            lines.append(f"  resume:       {_resume_command(ckpt)}")
    elif not trainer.fast_dev_run:
        lines.append("  no checkpoint was written (callbacks.last_checkpoint is off)")
    interval = cfg.trainer.get("val_check_interval")
    if not any(name.startswith("val/") for name in metrics) and isinstance(interval, int) and not interrupted:
        lines.append(
            f"  no validation ran: {trainer.global_step} steps < trainer.val_check_interval={interval}"
        )
    board = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
    if board:
        lines.append(f"  TensorBoard:  tensorboard --logdir {output_dir}")
    print("\n".join(lines))


@config_errors_reported
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors_reported():
        try:
            return train(cfg)
        except KeyboardInterrupt:  # before training started (preparing data): nothing to save
            print("interrupted before training started: nothing was trained", file=sys.stderr)
            raise ReportedExit(130, "interrupted before training started") from None


if __name__ == "__main__":
    main()
