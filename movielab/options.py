"""The options a user types, checked before anything runs: one rule per option (or pattern of
options) that movielab hands to a library (Lightning's trainer, torch's optimizers, callbacks) or
reads itself before the data is prepared. A bad value is a one-line error naming the option, the
value and what is expected.

Options that movielab's own classes check when they are built (data.batching.*, model.* task
options, net and condition configs) keep their checks there; tests/test_options.py holds every
option of conf/ to one place or the other, so a new option cannot go unchecked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from omegaconf import DictConfig, OmegaConf

from movielab.errors import MovielabError


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Rule:
    """What an option accepts, in words (for the error) and as a test."""

    expected: str
    accepts: Callable[[Any], bool]

    def or_null(self) -> Rule:
        return Rule(f"null or {self.expected}", lambda v: v is None or self.accepts(v))


def choice(*names: Any) -> Rule:
    return Rule(f"one of {', '.join(map(str, names))}", lambda v: v in names)


INTEGER = Rule("an integer", _int)
COUNT = Rule("an integer of at least 1", lambda v: _int(v) and v >= 1)
NON_NEGATIVE_INT = Rule("an integer of at least 0", lambda v: _int(v) and v >= 0)
POSITIVE = Rule("a number greater than 0", lambda v: _number(v) and v > 0)
NON_NEGATIVE = Rule("a number of at least 0", lambda v: _number(v) and v >= 0)
FRACTION = Rule("a number between 0 and 1 (both excluded)", lambda v: _number(v) and 0 < v < 1)
UNIT_INTERVAL = Rule("a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1)
NUCLEUS = Rule("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1)
FLAG = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("a string", lambda v: isinstance(v, str))
NAME = Rule("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")
FOLDER_NAME = Rule(
    "a folder name (no '/')", lambda v: isinstance(v, str) and v.strip() != "" and "/" not in v
)
METRIC = Rule("a metric name such as val/loss", lambda v: isinstance(v, str) and "/" in v)
NAMES = Rule("a list of names", lambda v: isinstance(v, list | tuple) and all(isinstance(x, str) for x in v))
BETAS = Rule(
    "two numbers in [0, 1)",
    lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v),
)
NUMBERS = Rule("a list of numbers", lambda v: isinstance(v, list | tuple) and all(_number(x) for x in v))
SCALE = Rule(
    "[low, high] with low < high",
    lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_number(x) for x in v) and v[0] < v[1],
)
DEVICE = Rule(
    "auto, cpu, cuda, cuda:N or mps",
    lambda v: (
        isinstance(v, str)
        and (v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()))
    ),
)
TEMPERATURES = Rule(
    "a list of numbers greater than 0",
    lambda v: isinstance(v, list | tuple) and len(v) > 0 and all(_number(x) and x > 0 for x in v),
)
TOP_PS = Rule(
    "a list of null or numbers in [0, 1]",
    lambda v: (
        isinstance(v, list | tuple)
        and len(v) > 0
        and all(x is None or (_number(x) and 0 <= x <= 1) for x in v)
    ),
)
PRECISIONS = (
    "32-true",
    "32",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "64-true",
    "64",
    "transformer-engine",
)

# the sampling options of a callback that writes samples while training
_SAMPLING = {
    "num_samples": COUNT,
    "samples_per_rating": COUNT,
    "max_new_tokens": COUNT,
    "temperature": POSITIVE,
    "top_k": COUNT.or_null(),
    "top_p": NUCLEUS.or_null(),
    "seed": INTEGER,
    "ngram": COUNT,
}

TRAIN_OPTIONS: dict[str, Rule] = {
    "seed": INTEGER,
    "task_name": FOLDER_NAME,
    "ckpt_path": TEXT.or_null(),
    "init_from": TEXT.or_null(),
    "overwrite": FLAG,
    "optimized_metric": METRIC,
    # Lightning's trainer: step-based training, one-line errors instead of Lightning's tracebacks
    "trainer.max_steps": COUNT,
    "trainer.max_epochs": Rule(
        "-1 (training counts steps) or an integer of at least 1", lambda v: _int(v) and (v == -1 or v >= 1)
    ),
    "trainer.val_check_interval": Rule(
        "an integer of at least 1 (steps between validations) or a fraction in (0, 1] of an epoch",
        lambda v: (_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1),
    ),
    "trainer.check_val_every_n_epoch": COUNT.or_null(),
    "trainer.log_every_n_steps": COUNT,
    "trainer.gradient_clip_val": POSITIVE.or_null(),
    "trainer.num_sanity_val_steps": Rule(
        "an integer of at least 0, or -1 (all)", lambda v: _int(v) and v >= -1
    ),
    "trainer.limit_val_batches": Rule(
        "an integer of at least 0 (batches) or a fraction in [0, 1]",
        lambda v: (_int(v) and v >= 0) or (isinstance(v, float) and 0 <= v <= 1),
    ),
    "trainer.fast_dev_run": Rule(
        "true, false or a number of batches", lambda v: isinstance(v, bool) or (_int(v) and v >= 0)
    ),
    "trainer.accelerator": choice("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "trainer.devices": Rule(
        "auto, -1 (all), a number of devices or a list of device ids",
        lambda v: (
            v == "auto"
            or (_int(v) and (v >= 1 or v == -1))
            or (isinstance(v, list | tuple) and all(_int(x) and x >= 0 for x in v))
        ),
    ),
    "trainer.precision": Rule(f"one of {', '.join(PRECISIONS)}", lambda v: str(v) in PRECISIONS),
    "trainer.deterministic": Rule("true, false or warn", lambda v: isinstance(v, bool) or v == "warn"),
    "trainer.strategy": NAME,
    "trainer.sync_batchnorm": FLAG,
    "trainer.enable_checkpointing": FLAG,
    "trainer.enable_progress_bar": FLAG,
    "trainer.enable_model_summary": FLAG,
    "trainer.num_nodes": COUNT,
    "trainer.strategy.process_group_backend": choice("gloo", "nccl", "mpi", "ucc"),
    "trainer.accumulate_grad_batches": COUNT,
    "model.kind": choice("language_model", "text_gan", "genre_classifier"),
    "model.compile": FLAG,
    # torch's optimizers and movielab's schedules (model.optimizer, the GAN's three)
    "model.*optimizer.lr": NON_NEGATIVE,
    "model.*optimizer.betas": BETAS,
    "model.*optimizer.weight_decay": NON_NEGATIVE,
    "model.*optimizer.eps": POSITIVE,
    "model.*optimizer.momentum": NON_NEGATIVE,
    "model.scheduler.warmup_steps": NON_NEGATIVE_INT,
    # model options whose dataclasses take any value of their type
    "model.net.config.pretrained": NAME,
    "model.pad_token": NAME,
    "model.end_token": NAME,
    "model.gp_weight": NON_NEGATIVE,
    "model.max_pos_weight": POSITIVE,
    "model.scheduler.min_lr_ratio": UNIT_INTERVAL,
    # data options the datamodule keeps as given
    "data.path": TEXT.or_null(),
    "data.val_fraction": FRACTION,
    "data.split_seed": INTEGER,
    "data.seed": INTEGER,
    "data.genre_min_count": COUNT,
    "data.max_tokens": COUNT.or_null(),
    "data.rating_scale": SCALE.or_null(),
    "data.cache_dir": NAME,
    "data.reader.genre_separator": NAME,
    "data.reader.join_lines": FLAG,
    "data.reader.strip_attribution": FLAG,
    "data.reader.require_rating": FLAG,
    "data.reader.min_votes": NON_NEGATIVE_INT,
    "data.reader.units_per_record": COUNT,
    "data.reader.title_types": NAMES,
    "data.reader.title_column": NAME,
    "data.reader.ratings": TEXT.or_null(),
    "data.reader.metadata": TEXT.or_null(),
    "data.reader.columns.*": TEXT.or_null(),
    "data.template.text": NAME,
    "data.template.stop": TEXT.or_null(),
    "data.tokenizer.kind": choice("char", "word", "sentencepiece", "hf"),
    "data.tokenizer.options.vocab_size": COUNT,
    "data.tokenizer.options.model_type": choice("bpe", "unigram", "char", "word"),
    "data.tokenizer.options.min_freq": COUNT,
    "data.tokenizer.options.max_size": COUNT.or_null(),
    "data.tokenizer.options.lowercase": FLAG,
    "data.tokenizer.options.unknown": NAME,
    "data.tokenizer.options.specials": NAMES,
    "data.tokenizer.options.user_defined_symbols": NAMES,
    # callbacks: checkpoints, samples and reports written while training
    "callbacks.*checkpoint.save_top_k": Rule(
        "-1 (all) or an integer of at least 0", lambda v: _int(v) and v >= -1
    ),
    "callbacks.*checkpoint.mode": choice("min", "max"),
    "callbacks.*checkpoint.monitor": METRIC.or_null(),
    "callbacks.*checkpoint.filename": NAME,
    "callbacks.*checkpoint.auto_insert_metric_name": FLAG,
    "callbacks.*checkpoint.enable_version_counter": FLAG,
    "callbacks.learning_rate_monitor.logging_interval": choice("step", "epoch", None),
    "callbacks.sweep_trial.monitor": METRIC,
    **{f"callbacks.*.{name}": rule for name, rule in _SAMPLING.items()},
    "callbacks.rating_conditioning.ratings": NUMBERS.or_null(),
    "callbacks.gen_metrics.every_validation": FLAG,
    "callbacks.gen_metrics.rating_samples": NON_NEGATIVE_INT,
    "callbacks.gen_metrics.ratings": NUMBERS.or_null(),
    "logger.*.name": TEXT,
    "logger.*.version": TEXT.or_null(),
    "logger.tensorboard.default_hp_metric": FLAG,
}

GENERATE_OPTIONS: dict[str, Rule] = {
    "ckpt": NAME,
    "num_samples": COUNT,
    "seed": INTEGER.or_null(),
    "device": DEVICE,
    "use_cache": FLAG,
    "typewriter": FLAG,
    "save": FLAG,
    "avoid_training_titles": FLAG,
}

EVALUATE_OPTIONS: dict[str, Rule] = {
    "mode": choice("grid", "conditioning"),
    "ckpt": NAME.or_null(),
    "classifier": NAME.or_null(),
    "data_path": NAME.or_null(),
    "out_dir": NAME.or_null(),
    "device": DEVICE,
    "temperatures": TEMPERATURES,
    "top_ps": TOP_PS,
    "top_k": COUNT.or_null(),
    "num_samples": COUNT,
    "max_new_tokens": COUNT,
    "seed": INTEGER,
    "ngram": COUNT,
    "genres": Rule(
        "null, a genre or a list of genres", lambda v: v is None or isinstance(v, str) or NAMES.accepts(v)
    ),
    "samples": Rule(
        "null, a file or a list of files", lambda v: v is None or isinstance(v, str) or NAMES.accepts(v)
    ),
    "conditioning.ratings": NUMBERS.or_null(),
    "conditioning.samples_per_rating": COUNT,
    "conditioning.examples": NON_NEGATIVE_INT,
    "conditioning.temperature": POSITIVE,
    "conditioning.top_k": COUNT.or_null(),
    "conditioning.top_p": NUCLEUS.or_null(),
    "conditioning.max_new_tokens": COUNT,
    "conditioning.heldout": FLAG,
}

PREDICT_OPTIONS: dict[str, Rule] = {
    "ckpt": NAME,
    "text": TEXT.or_null(),
    "title": TEXT.or_null(),
    "top": COUNT.or_null(),
    "device": DEVICE,
}


def _leaf_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if prefix == "" and key == "hydra":
                continue
            yield from _leaf_keys(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix[:-1]


def rule_for(key: str, rules: Mapping[str, Rule]) -> Rule | None:
    """The rule of `key`: its own, else the first pattern that matches it."""
    if key in rules:
        return rules[key]
    for pattern, rule in rules.items():
        if "*" in pattern and fnmatchcase(key, pattern):
            return rule
    return None


def check_options(cfg: DictConfig, rules: Mapping[str, Rule] = TRAIN_OPTIONS) -> None:
    """Every option of `cfg` that has a rule, checked: a one-line error for the first bad one."""
    container = OmegaConf.to_container(cfg, resolve=False)
    for key in _leaf_keys(container):
        rule = rule_for(key, rules)
        if rule is None:
            continue
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if not rule.accepts(value):
            raise MovielabError(f"{key}={value!r} must be {rule.expected}")
    _check_together(cfg)


def _check_together(cfg: DictConfig) -> None:
    """Constraints between options of one group."""
    scheduler = cfg.get("model", {}).get("scheduler") if "model" in cfg else None
    if (
        scheduler
        and str(scheduler.get("_target_", "")).endswith(".noam")
        and scheduler.get("warmup_steps", 1) < 1
    ):
        raise MovielabError(
            f"model.scheduler.warmup_steps={scheduler.warmup_steps} must be at least 1 for the noam schedule"
        )
    trainer = cfg.get("trainer") if "trainer" in cfg else None
    interval = trainer.get("val_check_interval") if trainer is not None else None
    if trainer is not None and isinstance(interval, float) and trainer.get("check_val_every_n_epoch") is None:
        raise MovielabError(
            f"trainer.val_check_interval={interval} is a fraction of an epoch, which needs "
            "trainer.check_val_every_n_epoch=1; movielab counts steps: give an integer of at least 1"
        )
