"""Checkpoints of format 1 (movielab before 2026-12), read as data.

They described a model by its Hydra config: `_target_` import paths with their arguments. Those
paths are only compared here with the few classes that existed then, never imported: each maps to
a registry kind, its arguments to that kind's fields, and anything else is a one-line error. The
values that lived in buffers (the GAN's special ids, the classifier's class weights) and in
callback states (the training texts' fingerprints) move into the spec and the section.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from movielab.errors import MovielabError

MODULES = {
    "movielab.models.language_model.CausalLanguageModel": "language_model",
    "movielab.models.hf_causal_lm.HFLanguageModel": "language_model",
    "movielab.models.text_gan_module.TextGANModule": "text_gan",
    "movielab.models.genre_classifier.GenreClassifier": "genre_classifier",
}
NETS = {
    "movielab.models.gpt.GPT": "gpt",
    "movielab.models.lstm.LSTM": "lstm",
    "movielab.models.text_gan.TextGAN": "text_gan",
    "movielab.models.transformer_encoder.TransformerEncoder": "transformer_encoder",
}
NET_CONFIGS = {
    "movielab.models.gpt.GPTConfig",
    "movielab.models.lstm.LSTMConfig",
    "movielab.models.text_gan.TextGANConfig",
}
CONDITIONS = {
    "movielab.models.conditioning.RatingPrefix": "rating_prefix",
    "movielab.models.genre_prefix.GenrePrefix": "genre_prefix",
}
TEMPLATE = "movielab.data.templates.Template"
OPTIONS = {
    "language_model": ("loss_on",),
    "text_gan": (
        "critic_steps",
        "gp_weight",
        "pretrain_steps",
        "fake_batch_size",
        "feedback",
        "gumbel_temperature",
        "real_smoothing",
        "pad_token",
        "end_token",
        "seed",
    ),
    "genre_classifier": ("genres", "max_pos_weight", "threshold_metric", "threshold_candidates"),
}
FACTORIES = {"optimizer", "scheduler", "critic_optimizer", "generator_optimizer", "pretrain_optimizer"}
IGNORED = {"val_samples", "vocab_size", "pretrained", "net", "conditions", "_target_", "_partial_"}


def _node(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MovielabError(f"format-1 checkpoint: {where} is not a config node")
    return value


def _target(node: Mapping[str, Any], allowed: Mapping[str, str] | set[str], where: str) -> str:
    target = node.get("_target_")
    if target not in allowed:
        raise MovielabError(
            f"format-1 checkpoint: {where}._target_={target!r} is not a movielab model part, refused"
        )
    return allowed[target] if isinstance(allowed, Mapping) else target


def _fields(node: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}


def _net(model: Mapping[str, Any], task: str, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    if model.get("_target_") == "movielab.models.hf_causal_lm.HFLanguageModel":
        extra = state.pop("net._extra_state", None)
        if not isinstance(extra, Mapping) or not isinstance(extra.get("hf_config"), Mapping):
            raise MovielabError("format-1 checkpoint: the Hugging Face model's architecture is missing")
        config = {"pretrained": model.get("pretrained"), "vocab_size": model.get("vocab_size")}
        return {"kind": "hf_causal_lm", "config": {**config, "architecture": dict(extra["hf_config"])}}
    net = _node(model.get("net"), "model.net")
    kind = _target(net, NETS, "model.net")
    config = _node(net.get("config"), "model.net.config")
    _target(config, NET_CONFIGS, "model.net.config")
    fields = _fields(config)
    if kind == "transformer_encoder":
        fields["n_outputs"] = len(model.get("genres") or ())
    return {"kind": kind, "config": fields}


def _spec(model: Mapping[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    task = _target(model, MODULES, "model")
    unknown = sorted(set(model) - set(OPTIONS[task]) - FACTORIES - IGNORED)
    if unknown:
        raise MovielabError(f"format-1 checkpoint: model has unexpected field(s) {', '.join(unknown)}")
    conditions = {}
    for name, node in (model.get("conditions") or {}).items():
        node = _node(node, f"model.conditions.{name}")
        conditions[name] = {
            "kind": _target(node, CONDITIONS, f"model.conditions.{name}"),
            "config": _fields(node),
        }
    options = {k: model[k] for k in OPTIONS[task] if k in model}
    if task == "text_gan":
        special = state.get("special_ids")
        if not isinstance(special, torch.Tensor) or special.numel() != 2 or bool((special < 0).any()):
            raise MovielabError("format-1 checkpoint: the text GAN's <pad> and <end> ids are missing")
        options.update(pad_id=int(special[0]), end_id=int(special[1]))
    if task == "genre_classifier" and isinstance(state.get("pos_weight"), torch.Tensor):
        options["pos_weight"] = state["pos_weight"].tolist()
    return {"task": task, "net": _net(model, task, state), "conditions": conditions, "options": options}


def upgrade_format_1(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The section a format-1 checkpoint would have in format 2 (its state_dict is edited in place:
    the Hugging Face architecture moves out of the weights)."""
    section = checkpoint["movielab"]
    config = _node(section.get("config"), "config")
    state = checkpoint["state_dict"]
    template = _node(_node(config.get("data"), "config.data").get("template"), "config.data.template")
    _target(template, {TEMPLATE}, "data.template")
    callbacks = checkpoint.get("callbacks") if isinstance(checkpoint.get("callbacks"), Mapping) else {}
    fingerprints = (callbacks.get("TrainingTextIndex") or {}).get("fingerprints")
    return {
        "format_version": 1,
        "model": _spec(_node(config.get("model"), "model"), state),
        "tokenizer": section.get("tokenizer"),
        "template": {"text": template.get("text"), "stop": template.get("stop")},
        "data": {},
        "data_fingerprint": section.get("data_fingerprint"),
        "training_fingerprints": fingerprints if isinstance(fingerprints, torch.Tensor) else None,
        "metrics": {},
        "config": dict(config),
    }
