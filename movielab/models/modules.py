"""The LightningModule that trains each task, built from a connected spec and the config's
optimizer factories (Hydra `_partial_`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from hydra.utils import instantiate

from movielab.errors import MovielabError
from movielab.models.genre_classifier import GenreClassifier
from movielab.models.language_model import CausalLanguageModel
from movielab.models.spec import FACTORY_KEYS, ModelSpec
from movielab.models.text_gan_module import TextGANModule

TRAINING_MODULES: dict[str, type[L.LightningModule]] = {
    "language_model": CausalLanguageModel,
    "text_gan": TextGANModule,
    "genre_classifier": GenreClassifier,
}


def training_module(spec: ModelSpec, model_config: Mapping[str, Any]) -> L.LightningModule:
    factories = {
        key: instantiate(model_config[key])
        for key in FACTORY_KEYS[spec.task]
        if model_config.get(key) is not None
    }
    if model_config.get("compile"):
        if spec.task != "language_model":
            raise MovielabError(f"model.compile=true is for language models, not a {spec.task}")
        factories["compile"] = True
    return TRAINING_MODULES[spec.task](spec, **factories)
