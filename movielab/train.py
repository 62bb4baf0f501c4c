"""`python -m movielab.train [overrides]`: prepare data, train, checkpoint, and say where it all went."""

from __future__ import annotations

import json
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
from omegaconf import DictConfig, OmegaConf, open_dict

from movielab import CONFIG_DIR
from movielab import resolvers as _resolvers  # noqa: F401 (registers ${steps_for_tokens:...}, ${mul:...})
from movielab.callbacks import ResumableRandomState
from movielab.checkpoint import AtomicCheckpointIO, RunDescription, read_checkpoint, require_same_data
from movielab.errors import MovielabError, user_errors_reported

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    return [instantiate(node) for node in (group or {}).values() if node is not None and "_target_" in node]


def _start_from_weights(model: L.LightningModule, path: str, fingerprint: str) -> None:
    """`init_from=PATH`: a new phase from a checkpoint's weights (fresh optimizer, schedule and step
    count), e.g. a decaying learning rate after a constant one; same data and tokenizer only."""
    checkpoint = read_checkpoint(path)
    require_same_data(checkpoint, f"init_from={path}", fingerprint)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:  # torch lists every mismatch, one per line: name one
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise MovielabError(
            f"init_from={path} holds another architecture ({lines[-1] if lines else error}); "
            "use the model.* options of its run"
        ) from error


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


# movielab reports tokens/s (ThroughputMonitor's items/s); it does not count FLOPs per batch
warnings.filterwarnings("ignore", message=".*`flops_per_batch`.*")


def train(cfg: DictConfig) -> float | None:
    """Train one model from a composed config; returns cfg.optimized_metric for sweeps."""
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    data = datamodule.prepare()
    with open_dict(cfg):
        cfg.vocab_size = data.tokenizer.vocab_size
        cfg.genre_vocabulary = list(datamodule.genre_vocabulary.names)
    if cfg.ckpt_path:
        require_same_data(read_checkpoint(cfg.ckpt_path), f"ckpt_path={cfg.ckpt_path}", data.fingerprint)

    model = instantiate(cfg.model)
    if cfg.get("init_from"):
        if cfg.ckpt_path:
            raise MovielabError(
                "give ckpt_path (resume exactly) or init_from (new phase from its weights), not both"
            )
        _start_from_weights(model, cfg.init_from, data.fingerprint)
    if not model.automatic_optimization and cfg.trainer.get("gradient_clip_val"):
        raise MovielabError(
            f"{type(model).__name__} steps its own optimizers, so Lightning cannot clip its gradients: "
            "add trainer.gradient_clip_val=null (its experiment config sets it)"
        )
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data.tokenizer.save(output_dir / "tokenizer.json")
    if cfg.genre_vocabulary:
        (output_dir / "genres.json").write_text(json.dumps(list(cfg.genre_vocabulary)), encoding="utf-8")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [
        *_instantiate_all(cfg.get("callbacks")),
        RunDescription(resolved, data.tokenizer, data.fingerprint),
        ResumableRandomState(),
    ]
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    n_params = sum(p.numel() for p in model.parameters())
    log.info("Model: %s with %.2fM parameters", type(model.net).__name__, n_params / 1e6)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    final = {f"final/{name.split('/', 1)[1]}": value for name, value in metrics.items()}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # fills TensorBoard's HParams tab
            logger.log_hyperparams(_hparams(cfg), final)
        else:
            logger.log_hyperparams(_hparams(cfg))
        logger.save()
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
    lines.append(f"  TensorBoard:  tensorboard --logdir {output_dir.parent.parent}")
    print("\n".join(lines))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors_reported():
        return train(cfg)


if __name__ == "__main__":
    main()
