"""Tiny models built the way training builds them (a spec through the registry), for unit tests."""

from __future__ import annotations

import torch

from movielab.data.templates import Template
from movielab.data.tokenizers import CharTokenizer
from movielab.models.language_model import CausalLanguageModel
from movielab.models.language_sampler import LanguageModelSampler
from movielab.models.spec import ModelSpec, Part

LETTERS = "abcdefghijklmnopqrstuvwxyz .:'"


def tiny_language_model(
    net_kind: str = "gpt", conditions: dict | None = None, seed: int = 0, **config: object
) -> CausalLanguageModel:
    """A CausalLanguageModel over a tiny net (eval mode), conditions as {name: (kind, fields)}."""
    defaults = {
        "gpt": {"vocab_size": 17, "block_size": 24, "n_layer": 2, "n_head": 2, "n_embd": 16, "dropout": 0.0},
        "lstm": {"vocab_size": 17, "embedding_dim": 16, "hidden_dim": 24, "n_layer": 2, "dropout": 0.0},
    }[net_kind]
    parts = {name: Part(kind, dict(fields)) for name, (kind, fields) in (conditions or {}).items()}
    spec = ModelSpec("language_model", Part(net_kind, {**defaults, **config}), parts)
    torch.manual_seed(seed)
    return CausalLanguageModel(spec, optimizer=torch.optim.AdamW).eval()


def char_sampler(module: CausalLanguageModel, template: Template | None = None) -> LanguageModelSampler:
    """The module as a sampler over the letters (its vocabulary must be len(LETTERS) + 1)."""
    template = template or Template("{title}: {description}.", stop=".")
    return module.text_sampler(CharTokenizer(list(LETTERS)), template)


VOCAB = len(LETTERS) + 1  # the letters and the unknown character


def module_from_config(model_config, vocab_size: int):  # noqa: ANN001, ANN201 (a composed cfg.model)
    """The training module a composed `model:` config describes, with the vocabulary size bound."""
    from movielab.models.modules import training_module
    from movielab.models.spec import spec_from_config

    spec = spec_from_config(model_config).with_net_config(vocab_size=vocab_size)
    return training_module(spec, model_config)
