"""`python -m movielab.train [overrides]`: prepare data, train, checkpoint, and say where it all went."""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from movielab import CONFIG_DIR
from movielab import resolvers as _resolvers  # noqa: F401 (registers ${steps_for_tokens:...}, ${mul:...})
from movielab.callbacks import ResumableRandomState
from movielab.checkpoint import load_weights, read_checkpoint, require_same_data
from movielab.checkpoint_io import AtomicCheckpointIO, RunDescription
from movielab.data.datamodule import TextDataModule
from movielab.errors import MovielabError, user_errors_reported
from movielab.evaluation.training_texts import training_index
from movielab.models.modules import training_module
from movielab.models.spec import ModelSpec, connect, data_needs, spec_from_config

log = logging.getLogger(__name__)

# movielab reports tokens/s (ThroughputMonitor's items/s); it does not count FLOPs per batch
warnings.filterwarnings("ignore", message=".*`flops_per_batch`.*")
# under DDP the val/ metrics are torchmetrics reduced over every rank's windows and gen/ is broadcast
# from rank 0, so Lightning's advice to add sync_dist=True does not apply to them
warnings.filterwarnings("ignore", message=r".*self\.log\('(val|gen)/.*sync_dist=True.*")


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    return [instantiate(node) for node in (group or {}).values() if node is not None and "_target_" in node]


def _start_from_weights(module: L.LightningModule, path: str, fingerprint: str) -> None:
    """`init_from=PATH`: a new phase from a checkpoint's weights (fresh optimizer, schedule and step
    count), e.g. a decaying learning rate after a constant one; same data and tokenizer only."""
    checkpoint = read_checkpoint(path)
    require_same_data(checkpoint, f"init_from={path}", fingerprint)
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
        "training_fingerprints": None if index is None else index.to_tensor(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def train(cfg: DictConfig) -> float | None:
    """Train one model from a composed config; returns cfg.optimized_metric for sweeps."""
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    datamodule: TextDataModule = instantiate(cfg.data)
    spec = spec_from_config(cfg.model)
    datamodule.connect(data_needs(spec))  # the model's lengths and tokenizer, before preparation
    data = datamodule.prepare()
    spec = connect(spec, datamodule.facts())  # the data's vocabulary, genres, scale, after it
    if cfg.ckpt_path:
        if cfg.get("init_from"):
            raise MovielabError(
                "give ckpt_path (resume exactly) or init_from (new phase from its weights), not both"
            )
        require_same_data(read_checkpoint(cfg.ckpt_path), f"ckpt_path={cfg.ckpt_path}", data.fingerprint)
    module = training_module(spec, cfg.model)
    if cfg.get("init_from"):
        _start_from_weights(module, cfg.init_from, data.fingerprint)
    output_dir = Path(cfg.paths.output_dir)
    if rank_zero_only.rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        data.tokenizer.save(output_dir / "tokenizer.json")
    callbacks = [
        *_instantiate_all(cfg.get("callbacks")),
        RunDescription(_description(cfg, module.spec, datamodule)),
        ResumableRandomState(),
    ]
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    n_params = sum(p.numel() for p in module.parameters())
    log.info("Model: %s (%s) with %.2fM parameters", spec.task, spec.net.kind, n_params / 1e6)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)

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
    if trainer.is_global_zero:
        _print_summary(trainer, output_dir, metrics, time.perf_counter() - started)
    value = metrics.get(cfg.optimized_metric)
    return None if value is None or math.isnan(value) else value


def _print_summary(trainer: L.Trainer, output_dir: Path, metrics: dict[str, float], seconds: float) -> None:
    lines = [
        f"Run finished in {seconds / 60:.1f} min after {trainer.global_step} steps.",
        *(f"  {name} = {value:.4f}" for name, value in sorted(metrics.items())),
        f"  run folder:   {output_dir}",
    ]
    last = output_dir / "checkpoints" / "last.ckpt"  # conf/callbacks/default.yaml: last_checkpoint
    best = [c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor and c.best_model_path]
    if last.exists():
        lines.append(f"  last ckpt:    {last}")
    lines.extend(f"  best ckpt:    {path}" for path in best)
    if last.exists():
        lines.append(f"  sample:       python -m movielab.generate ckpt={last}")
    lines.append(f"  TensorBoard:  tensorboard --logdir {output_dir}")
    print("\n".join(lines))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors_reported():
        return train(cfg)


if __name__ == "__main__":
    main()
