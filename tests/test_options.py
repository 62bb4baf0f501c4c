"""Every option a user sets in conf/ has a bad value tried here, and each is one line naming it.

The options are read from the YAML files themselves, so an option added to conf/ without a row
in BAD (or a reason in NOT_TYPED) fails test_every_option_of_conf_is_covered. Each bad value goes
through the entry point's own checks before anything is read or built: `planned_run` for
training (options, model fields, lengths that must agree), and the generate, evaluate and
predict functions (which check their options before loading the checkpoint).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from movielab.cli.evaluate import evaluate
from movielab.cli.generate import generate_samples
from movielab.cli.predict import predict
from movielab.cli.train import planned_run
from movielab.errors import MovielabError
from tests.conftest import CONF_DIR, compose_config

ENTRIES = ("generate", "evaluate", "predict")

# options no user types as a value, and why
NOT_TYPED = {
    "*._target_": "which class a config builds: the config file's choice (checkpoints refuse any)",
    "*._partial_": "how Hydra builds an optimizer factory",
    "data._convert_": "how Hydra passes the data config",
    "hydra.*": "Hydra's own; hydra.run.dir is held by RunFolderClaim (tests/test_fault_run_folders.py)",
    "<*>.hydra.*": "the entry point's Hydra settings",
    "budget.*": "arithmetic of a sweep's search space, read by the Optuna sweeper (tests/test_sweeper.py)",
    "paths.*": "folders: any path the file system takes; an unwritable one fails in one line when written",
    "trainer.default_root_dir": "a folder (paths.output_dir)",
    "callbacks.*.dirpath": "a folder (paths.output_dir)",
    "logger.*.save_dir": "a folder (paths.output_dir)",
    "data.sample": "which bundled sample a data config falls back to",
    "data.source_hint": "the words a data config's errors use",
    "callbacks.model_checkpoint": "null switches the callback off",
    "callbacks.last_checkpoint": "null switches the callback off",
    "callbacks.text_samples": "null switches the callback off",
    "model.scheduler": "null trains without a schedule",
    "callbacks.text_samples.prompt.*": "prompt fields: the model's prepare() checks them when sampling",
    "callbacks.rating_conditioning": "null switches the callback off",
    "callbacks.gen_metrics.prompt": "prompt fields: the model's prepare() checks them when sampling",
    "callbacks.gen_metrics.classifier": "a checkpoint, loaded and checked before training (test_gen_metrics)",
    "<generate>.title": "free text of the prompt",
    "<generate>.prime": "free text of the prompt",
    "<generate>.rating": "the model's prepare() checks it against its scale",
    "<generate>.genres": "the model's prepare() checks them against its genres",
    "<predict>.text": "free text (required: tests/test_genre_classifier.py)",
    "<predict>.title": "free text",
    "<serve>.*": "checked by movielab/cli/serve.py's own table (its tests read conf/serve.yaml)",
}

# option (or pattern) -> bad values; the error must name the option
BAD: dict[str, list[Any]] = {
    "seed": ["abc"],
    "task_name": ["a/b", ""],
    "ckpt_path": [3],
    "init_from": [3],
    "overwrite": ["yes"],
    "optimized_metric": ["loss"],
    "trainer.max_steps": [0, -1, "many"],
    "trainer.max_epochs": [0],
    "trainer.val_check_interval": [0, -3, 0.5],
    "trainer.check_val_every_n_epoch": [0],
    "trainer.log_every_n_steps": [0],
    "trainer.gradient_clip_val": [-1.0],
    "trainer.num_sanity_val_steps": [-2],
    "trainer.limit_val_batches": [1.5],
    "trainer.fast_dev_run": [-1],
    "trainer.accelerator": ["quantum"],
    "trainer.devices": [0],
    "trainer.precision": ["8-bit"],
    "trainer.deterministic": ["sometimes"],
    "trainer.strategy": [""],
    "trainer.sync_batchnorm": ["x"],
    "trainer.enable_checkpointing": ["x"],
    "model.kind": ["regression"],
    "model.net.kind": ["transformer"],
    "model.net.config.block_size": [0],
    "model.net.config.n_layer": [0],
    "model.net.config.n_head": [0],
    "model.net.config.n_embd": [0],
    "model.net.config.dropout": [1.0, -0.1],
    "model.net.config.bias": ["x"],
    "model.net.config.embedding_dim": [0],
    "model.net.config.hidden_dim": [0],
    "model.net.config.tie_weights": ["x"],
    "model.net.config.max_length": [0],
    "model.net.config.generator_layers": [0],
    "model.net.config.discriminator_layers": [0],
    "model.net.config.noise_dim": [0],
    "model.net.config.noise_length": [0],
    "model.net.config.mapping_layers": [0],
    "model.net.config.pretrained": [3],
    "model.conditions.*.kind": ["mood"],
    "model.conditions.*.drop_prob": [1.0],
    "model.conditions.rating.scalar": ["x"],
    "model.loss_on": ["middle"],
    "model.*optimizer.lr": [-1, "abc"],
    "model.*optimizer.betas": [[0.9], [0.9, 1.5]],
    "model.optimizer.weight_decay": [-0.1],
    "model.optimizer.eps": [0],
    "model.scheduler.warmup_steps": [-1],
    "model.scheduler.min_lr_ratio": [1.5],
    "model.critic_steps": [0],
    "model.gp_weight": [-1.0],
    "model.pretrain_steps": [-1],
    "model.fake_batch_size": [0],
    "model.feedback": ["hard"],
    "model.gumbel_temperature": [0],
    "model.real_smoothing": [1.0],
    "model.pad_token": [""],
    "model.end_token": [""],
    "model.seed": ["x"],
    "model.max_pos_weight": [0],
    "model.threshold_metric": ["accuracy"],
    "data.path": [3],
    "data.val_fraction": [0, 1, 1.5],
    "data.split_seed": ["x"],
    "data.seed": ["x"],
    "data.cache_dir": [""],
    "data.genre_min_count": [0],
    "data.max_tokens": [0],
    "data.rating_scale": [[10, 0], [5]],
    "data.reader.columns.*": [3],
    "data.reader.genre_separator": [""],
    "data.reader.optional": ["year", ["plot"]],
    "data.reader.join_lines": ["x"],
    "data.reader.strip_attribution": ["x"],
    "data.reader.require_rating": ["x"],
    "data.reader.min_votes": [-1],
    "data.reader.ratings": [3],
    "data.reader.metadata": [3],
    "data.reader.title_column": [""],
    "data.reader.title_types": ["movie"],
    "data.reader.unit": ["word"],
    "data.reader.units_per_record": [0],
    "data.template.text": [""],
    "data.template.stop": [3],
    "data.tokenizer.kind": ["bytes"],
    "data.tokenizer.options.vocab_size": [0],
    "data.tokenizer.options.model_type": ["wordpiece"],
    "data.tokenizer.options.min_freq": [0],
    "data.tokenizer.options.max_size": [0],
    "data.tokenizer.options.lowercase": ["x"],
    "data.tokenizer.options.unknown": [""],
    "data.tokenizer.options.specials": ["<pad>"],
    "data.tokenizer.options.user_defined_symbols": ["<end>"],
    "data.batching.batch_size": [0, "x"],
    "data.batching.block_size": [0, 100000],  # 100000: longer than the model's context
    "data.batching.max_length": [0, 1000],  # 1000: longer than the model takes
    "data.batching.pool_batches": [0],
    "data.batching.repeat_batches": [0],
    "data.batching.steps_per_epoch": [0],
    "data.batching.val_max_windows": [0],
    "callbacks.*checkpoint.save_top_k": [-2],
    "callbacks.*checkpoint.mode": ["best"],
    "callbacks.*checkpoint.monitor": ["loss"],
    "callbacks.*checkpoint.filename": [""],
    "callbacks.*checkpoint.auto_insert_metric_name": ["no"],
    "callbacks.*checkpoint.enable_version_counter": [1],
    "callbacks.learning_rate_monitor.logging_interval": ["hour"],
    "callbacks.sweep_trial.monitor": ["loss"],
    "callbacks.*.num_samples": [0],
    "callbacks.*.samples_per_rating": [0],
    "callbacks.*.max_new_tokens": [0],
    "callbacks.*.temperature": [0],
    "callbacks.*.top_k": [0],
    "callbacks.*.top_p": [1.5],
    "callbacks.*.seed": ["x"],
    "callbacks.*.ngram": [0],
    "callbacks.rating_conditioning.ratings": ["high"],
    "callbacks.gen_metrics.every_validation": ["sometimes"],
    "callbacks.gen_metrics.rating_samples": [-1],
    "callbacks.gen_metrics.ratings": ["high"],
    "trainer.num_nodes": [0],
    "model.compile": ["yes"],
    "trainer.strategy.process_group_backend": ["pigeon"],
    "logger.*.name": [3],
    "logger.*.version": [3],
    "logger.tensorboard.default_hp_metric": ["x"],
    "<generate>.ckpt": [""],
    "<generate>.num_samples": [0, "x"],
    "<generate>.seed": ["x"],
    "<generate>.temperature": [0, "abc"],
    "<generate>.top_k": [0],
    "<generate>.top_p": [1.5],
    "<generate>.min_p": [1.5],
    "<generate>.repetition_penalty": [0],
    "<generate>.no_repeat_ngram_size": [0],
    "<generate>.max_new_tokens": [0],
    "<generate>.device": ["gpu9"],
    "<generate>.use_cache": ["x"],
    "<generate>.typewriter": ["x"],
    "<generate>.save": ["x"],
    "<generate>.avoid_training_titles": ["x"],
    "<evaluate>.mode": ["both"],
    "<evaluate>.ckpt": [3],
    "<evaluate>.samples": [3],
    "<evaluate>.classifier": [3],
    "<evaluate>.genres": [3],
    "<evaluate>.temperatures": [[0], []],
    "<evaluate>.top_ps": [[2]],
    "<evaluate>.top_k": [0],
    "<evaluate>.num_samples": [0],
    "<evaluate>.max_new_tokens": [0],
    "<evaluate>.seed": ["x"],
    "<evaluate>.ngram": [0],
    "<evaluate>.data_path": [3],
    "<evaluate>.out_dir": [3],
    "<evaluate>.device": ["x"],
    "<evaluate>.conditioning.ratings": ["high"],
    "<evaluate>.conditioning.samples_per_rating": [0],
    "<evaluate>.conditioning.examples": [-1],
    "<evaluate>.conditioning.temperature": [0],
    "<evaluate>.conditioning.top_k": [0],
    "<evaluate>.conditioning.top_p": [1.5],
    "<evaluate>.conditioning.max_new_tokens": [0],
    "<evaluate>.conditioning.heldout": ["x"],
    "<predict>.ckpt": [""],
    "<predict>.top": [0],
    "<predict>.device": ["x"],
}

# the configs whose groups hold an option, composed as a user would pick them
SOURCES = {
    "model/lstm.yaml": ["model=lstm", "data=seinfeld"],
    "model/text_gan.yaml": ["experiment=text_gan"],
    "model/genre_classifier.yaml": ["experiment=genre_classifier"],
    "model/title_transformer.yaml": ["experiment=title_transformer"],
    "model/genre_gpt.yaml": ["experiment=genre_plots"],
    "model/hf_causal_lm.yaml": [
        "model=hf_causal_lm",
        "model.net.config.pretrained=/models/gpt2",
        "data=imdb1000_plots",  # records: window batching needs data.batching.block_size for it
    ],
    "callbacks/title_transformer.yaml": ["experiment=title_transformer"],
    "callbacks/gen_metrics/every_validation.yaml": ["+callbacks/gen_metrics=every_validation"],
    "callbacks/gen_metrics/at_end.yaml": ["+callbacks/gen_metrics=at_end"],
    "logger/csv.yaml": ["logger=csv"],
}


def _options() -> dict[str, str]:
    """Every option of every file of conf/ ({'<generate>.seed': 'generate.yaml', ...})."""
    found: dict[str, str] = {}

    def walk(node: Any, prefix: str, source: str) -> None:
        for key, value in node.items():
            if key == "defaults":
                continue
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.", source)
            else:
                found.setdefault(f"{prefix}{key}", source)

    for path in sorted(CONF_DIR.rglob("*.yaml")):
        relative = path.relative_to(CONF_DIR)
        text = path.read_text(encoding="utf-8")
        if len(relative.parts) == 1:
            prefix = "" if relative.stem == "train" else f"<{relative.stem}>."
        elif relative.parts[0] == "hydra":
            prefix = "hydra."
        elif "# @package _global_" in text:
            prefix = ""
        else:  # a group's package is its folder: callbacks/gen_metrics/at_end.yaml -> callbacks.gen_metrics.
            prefix = ".".join(relative.parts[:-1]) + "."
        walk(yaml.safe_load(text) or {}, prefix, str(relative))
    return found


def _matches(key: str, patterns: dict[str, Any]) -> str | None:
    return next((p for p in patterns if p == key or ("*" in p and fnmatchcase(key, p))), None)


OPTIONS = _options()
CASES = [
    (key, value)
    for key in sorted(OPTIONS)
    if not _matches(key, NOT_TYPED) and _matches(key, BAD)
    for value in BAD[_matches(key, BAD)]
]


def test_every_option_of_conf_is_covered():
    uncovered = [key for key in OPTIONS if not _matches(key, NOT_TYPED) and not _matches(key, BAD)]
    assert not uncovered, f"options with no bad value tried (add them to BAD or NOT_TYPED): {uncovered}"
    assert len(CASES) > 200


def _entry_and_key(key: str) -> tuple[str, str]:
    if key.startswith("<"):
        entry, _, rest = key[1:].partition(">.")
        return entry, rest
    return "train", key


def _source_overrides(source: str) -> list[str]:
    if source in SOURCES:
        return SOURCES[source]
    group, _, name = source.removesuffix(".yaml").partition("/")
    if group in ("data", "experiment", "debug", "trainer") and name and not name.startswith(("_", "default")):
        return [f"{group}={name}"]
    return []


@cache
def _base(entry: str, overrides: tuple[str, ...], tmp: str) -> Any:
    extra = {"generate": ["ckpt=nowhere.ckpt"], "predict": ["ckpt=nowhere.ckpt", "text=A plot."]}
    return compose_config(Path(tmp), [*overrides, *extra.get(entry, [])], config_name=entry)


def _check(entry: str, cfg: Any) -> None:
    {"train": planned_run, "generate": generate_samples, "evaluate": evaluate, "predict": predict}[entry](cfg)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("options"))


@pytest.mark.parametrize(("key", "value"), CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_a_bad_value_is_one_line_naming_the_option(tmp, key, value):
    entry, option = _entry_and_key(key)
    cfg = _base(entry, tuple(_source_overrides(OPTIONS[key])), tmp).copy()
    with open_dict(cfg):
        OmegaConf.update(cfg, option, value, force_add=True)
    with pytest.raises(MovielabError) as raised:
        _check(entry, cfg)
    message = str(raised.value)
    assert "\n" not in message and option in message, message


@pytest.mark.parametrize(
    "overrides",
    sorted({tuple(_source_overrides(source)) for source in OPTIONS.values() if not source.startswith("<")}),
)
def test_the_configs_the_bad_values_start_from_pass(tmp, overrides):
    datamodule, spec = planned_run(
        _base("train", overrides, tmp).copy()
    )  # so every error above is the value's
    assert spec.task and datamodule.batching.batch_size >= 1


@pytest.mark.parametrize(
    "experiment",
    [
        [],
        ["model=lstm", "data=seinfeld"],
        ["experiment=title_transformer"],
        ["experiment=text_gan"],
        ["experiment=genre_classifier"],
        ["experiment=genre_plots"],
    ],
)
@pytest.mark.parametrize("steps", [0, -1])
def test_max_steps_below_one_is_refused_for_every_model(tmp, experiment, steps):
    cfg = compose_config(Path(tmp), [*experiment, f"trainer.max_steps={steps}"])
    with pytest.raises(MovielabError, match=f"trainer.max_steps={steps} must be an integer of at least 1"):
        planned_run(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["experiment=title_transformer", "data.batching.max_length=64"],
            "data.batching.max_length=64 is longer than the model takes: at most 63",
        ),
        (
            ["experiment=title_transformer", "data.max_tokens=80"],
            "data.max_tokens=80 keeps records the model cannot hold whole",
        ),
        (
            ["model.net.config.block_size=64", "data.batching.block_size=128"],
            "data.batching.block_size=128 is longer than the model's context",
        ),
        (
            ["model.net.config.n_embd=100", "model.net.config.n_head=3"],
            "n_embd=100 must be divisible by n_head=3",
        ),
        (
            ["experiment=title_transformer", "model.scheduler.warmup_steps=0"],
            "warmup_steps=0 must be at least 1 for the noam schedule",
        ),
    ],
)
def test_options_that_must_agree_are_checked_before_any_data_is_read(tmp, overrides, message):
    with pytest.raises(MovielabError, match=message):
        planned_run(compose_config(Path(tmp), overrides))
