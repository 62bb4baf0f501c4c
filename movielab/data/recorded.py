"""A run's data rebuilt from the data config its checkpoint recorded, as data: every `_target_`
in it must be one of movielab's data classes (compared by name, before anything is built), so a
checkpoint someone sent cannot make evaluation run code of its choosing. The recorded
TextDataModule is built as its plain TextData (the same arguments, no Lightning to import)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

from movielab.data.text_data import TextData
from movielab.errors import MovielabError

DATA_CLASSES = {
    "movielab.data.datamodule.TextDataModule",
    "movielab.data.readers.CsvReader",
    "movielab.data.readers.FortunesReader",
    "movielab.data.readers.TextFileReader",
    "movielab.data.readers.ImdbTsvReader",
    "movielab.data.readers.CmuSummaryReader",
    "movielab.data.readers.csv_reader.CsvReader",
    "movielab.data.readers.fortunes.FortunesReader",
    "movielab.data.readers.text_file.TextFileReader",
    "movielab.data.readers.imdb_tsv.ImdbTsvReader",
    "movielab.data.readers.cmu_summaries.CmuSummaryReader",
    "movielab.data.templates.Template",
    "movielab.data.tokenizers.TokenizerSpec",
    "movielab.data.batching.WindowBatching",
    "movielab.data.batching.RecordBatching",
}


def _check_targets(node: Any, where: str) -> None:
    if isinstance(node, str) and "${" in node:
        raise MovielabError(f"{where}={node!r} is an interpolation, not a recorded value: refused")
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and target not in DATA_CLASSES:
            raise MovielabError(f"{where}._target_={target!r} is not a movielab data class: refused")
        for key, value in node.items():
            _check_targets(value, f"{where}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            _check_targets(value, f"{where}[{i}]")


def recorded_data(
    config: Mapping[str, Any], data_path: str | None = None, cache_dir: str = "outputs/cache/tokens"
) -> TextData:
    """The data of a run's recorded config (`config["data"]`), optionally on another file.
    Token ids are cached in `cache_dir`, never where the checkpoint says (it could name any folder)."""
    data = config.get("data") if isinstance(config, Mapping) else None
    if not isinstance(data, Mapping):
        raise MovielabError("the checkpoint records no data config to compare with")
    _check_targets(data, "data")
    if data.get("_target_") != "movielab.data.datamodule.TextDataModule":
        raise MovielabError("the checkpoint's data config is not a movielab TextDataModule")
    node = OmegaConf.create(dict(data))
    node._target_ = f"{TextData.__module__}.{TextData.__qualname__}"
    node.cache_dir = cache_dir
    if data_path:
        node.path = data_path
    return instantiate(node)
