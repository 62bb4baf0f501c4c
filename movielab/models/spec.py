"""What a model is, as plain data: a task, its net and conditions by kind, the task's options.

Training reads a spec from the `model:` config, binds what only the data knows with `connect`
(vocabulary size, genres, the rating scale, special token ids, class weights), and stores the
result in every checkpoint; loading a checkpoint rebuilds the modules from it through
movielab.models.registry. Values flow one way at each step: the model tells the data what it
needs (`data_needs`: window and record lengths, its own tokenizer) before preparation, and the
prepared data tells the model what it holds (`DataFacts`) after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from movielab.data.contract import DataFacts, DataNeeds
from movielab.data.tokenizers import Tokenizer, TokenizerSpec
from movielab.errors import MovielabError
from movielab.models.registry import CONDITIONS, NETS, fill_dataclass, make_config, plain_data

TASKS = ("language_model", "text_gan", "genre_classifier")
FEEDBACKS = ("soft", "gumbel")
THRESHOLD_METRICS = ("f1_micro", "f2_micro", "f1_macro", "f2_macro")
# config keys that are training machinery (optimizer factories), not part of what the model is
FACTORY_KEYS = {
    "language_model": ("optimizer", "scheduler"),
    "genre_classifier": ("optimizer", "scheduler"),
    "text_gan": ("critic_optimizer", "generator_optimizer", "pretrain_optimizer"),
}
# config keys that say how the model trains (read by its training module), not what it is: they stay
# out of the spec and so out of checkpoints. `compile`: torch.compile the net while it trains
TRAINING_KEYS = ("compile",)


@dataclass
class LanguageModelOptions:
    """`loss_on="last"` scores only the token after each whole window (the reference LSTM's loss)."""

    loss_on: str = "all"

    def __post_init__(self) -> None:
        if self.loss_on not in ("all", "last"):
            raise MovielabError(f"model.loss_on='{self.loss_on}' must be 'all' (every position) or 'last'")


@dataclass
class TextGANOptions:
    critic_steps: int = 6
    gp_weight: float = 10.0
    pretrain_steps: int = 0
    fake_batch_size: int | None = None  # default: the data's batch size
    feedback: str = "soft"
    gumbel_temperature: float = 1.0
    real_smoothing: float = 0.0
    pad_token: str = "<pad>"
    end_token: str = "<end>"
    pad_id: int | None = None  # bound from the tokenizer
    end_id: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACKS:
            raise MovielabError(f"model.feedback='{self.feedback}' is not one of {', '.join(FEEDBACKS)}")
        if self.critic_steps < 1 or (self.fake_batch_size is not None and self.fake_batch_size < 1):
            raise MovielabError("model.critic_steps and model.fake_batch_size must be at least 1")
        if self.pretrain_steps < 0:
            raise MovielabError(f"model.pretrain_steps={self.pretrain_steps} must be at least 0")
        if not 0.0 <= self.real_smoothing < 1.0:
            raise MovielabError(f"model.real_smoothing={self.real_smoothing} must be in [0, 1)")
        if not self.gumbel_temperature > 0:
            raise MovielabError(f"model.gumbel_temperature={self.gumbel_temperature} must be greater than 0")


@dataclass
class GenreClassifierOptions:
    """`genres`: the training split's vocabulary; `pos_weight`: BCE weight per genre (both bound
    from the data)."""

    genres: tuple[str, ...] = ()
    pos_weight: tuple[float, ...] = ()
    max_pos_weight: float = 50.0
    threshold_metric: str = "f1_micro"
    threshold_candidates: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))

    def __post_init__(self) -> None:
        if self.threshold_metric not in THRESHOLD_METRICS:
            raise MovielabError(
                f"model.threshold_metric='{self.threshold_metric}' must be one of "
                f"{', '.join(THRESHOLD_METRICS)}"
            )
        if not self.threshold_candidates or not all(0 < t < 1 for t in self.threshold_candidates):
            raise MovielabError("model.threshold_candidates must be thresholds in (0, 1)")


OPTIONS = {
    "language_model": LanguageModelOptions,
    "text_gan": TextGANOptions,
    "genre_classifier": GenreClassifierOptions,
}


@dataclass(frozen=True)
class Part:
    """A net or a condition encoder: a registry kind and its config fields."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    task: str
    net: Part
    conditions: dict[str, Part] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return plain_data(dataclasses.asdict(self), "model")

    @classmethod
    def from_data(cls, data: Any, where: str = "model") -> ModelSpec:
        """A spec from plain data (a checkpoint's), every part checked: a one-line error names the
        first field that is not what a movielab model can be."""
        data = plain_data(data, where)
        if not isinstance(data, Mapping):
            raise MovielabError(f"{where} is not a model description")
        unknown = sorted(set(data) - {"task", "net", "conditions", "options"})
        if unknown:
            raise MovielabError(f"{where} has unknown field(s) {', '.join(unknown)}")
        spec = cls(
            _task(data.get("task"), where),
            _part(data.get("net"), f"{where}.net"),
            {
                name: _part(part, f"{where}.conditions.{name}")
                for name, part in _mapping(data, "conditions", where).items()
            },
            dict(_mapping(data, "options", where)),
        )
        spec.checked(where)
        return spec

    def checked(self, where: str = "model") -> ModelSpec:
        """Every part's fields valid for its kind (the dataclasses' own checks), or a one-line error.
        A condition's width (d_model) is bound when the net is built; until then it is not checked."""
        make_config(NETS, self.net.kind, self.net.config, f"{where}.net")
        for name, part in self.conditions.items():
            config = part.config if "d_model" in part.config else {**part.config, "d_model": 1}
            make_config(CONDITIONS, part.kind, config, f"{where}.conditions.{name}")
        self.task_options(where)
        if self.conditions and self.task != "language_model":
            raise MovielabError(f"{where}: only a language_model takes conditions")
        return self

    def task_options(self, where: str = "model") -> Any:
        return fill_dataclass(OPTIONS[self.task], self.options, where)

    def with_net_config(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, net=Part(self.net.kind, {**self.net.config, **changes}))

    def with_condition_config(self, name: str, **changes: Any) -> ModelSpec:
        part = self.conditions[name]
        return dataclasses.replace(
            self, conditions={**self.conditions, name: Part(part.kind, {**part.config, **changes})}
        )

    def with_options(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, options={**self.options, **changes})


def _task(task: Any, where: str) -> str:
    if task not in TASKS:
        raise MovielabError(f"{where}.kind={task!r} is not one of {', '.join(TASKS)}")
    return task


def _mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise MovielabError(f"{where}.{key} must be a mapping")
    return value


def _part(data: Any, where: str) -> Part:
    if not isinstance(data, Mapping) or not isinstance(data.get("kind"), str):
        raise MovielabError(f"{where} must give a kind")
    unknown = sorted(set(data) - {"kind", "config"})
    if unknown:
        raise MovielabError(f"{where} has unknown field(s) {', '.join(unknown)}")
    return Part(data["kind"], dict(_mapping(data, "config", where)))


def spec_from_config(model: Mapping[str, Any]) -> ModelSpec:
    """The spec a `model:` config describes (before `connect`): `kind`, `net: {kind, config}`,
    `conditions: {name: {kind, ...fields}}`, optimizer factories (left out), the rest options."""
    model = plain_data(
        {
            k: v
            for k, v in model.items()
            if k not in FACTORY_KEYS.get(model.get("kind"), ()) and k not in TRAINING_KEYS
        },
        "model",
    )
    task = _task(model.get("kind"), "model")
    net = _part(model.get("net"), "model.net")
    conditions = {}
    for name, node in _mapping(model, "conditions", "model").items():
        if node is None:
            continue
        if not isinstance(node, Mapping) or "kind" not in node:
            raise MovielabError(f"model.conditions.{name} must give a kind ({', '.join(sorted(CONDITIONS))})")
        conditions[name] = Part(node["kind"], {k: v for k, v in node.items() if k != "kind"})
    options = {k: v for k, v in model.items() if k not in ("kind", "net", "conditions")}
    fill_dataclass(OPTIONS[task], options, "model")  # unknown options fail here, before any data is read
    return ModelSpec(task, net, conditions, options)


# -- model -> data: what the data must give the model --------------------------------------------
def _config_value(spec: ModelSpec, name: str) -> Any:
    """A net config field, or its default when the config leaves it out."""
    if name in spec.net.config:
        return spec.net.config[name]
    _, config_class = NETS[spec.net.kind].load()
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    return defaults.get(name)


def data_needs(spec: ModelSpec) -> DataNeeds:
    if spec.net.kind == "hf_causal_lm":
        pretrained = spec.net.config.get("pretrained")
        return DataNeeds(tokenizer=TokenizerSpec("hf", {"pretrained": pretrained}) if pretrained else None)
    if spec.net.kind == "text_gan":
        return DataNeeds(max_record_tokens=_config_value(spec, "max_length"))
    block = _config_value(spec, "block_size")
    if spec.net.kind == "lstm":
        return DataNeeds(window_length=block)
    prefix_positions = len(spec.conditions)  # one position per condition encoder
    return DataNeeds(window_length=block, record_length=block - prefix_positions)


# -- data -> model: what the prepared data holds ------------------------------------------------
def connect(spec: ModelSpec, facts: DataFacts) -> ModelSpec:
    """The spec with every value only the data knows bound, checked."""
    vocab = facts.tokenizer.vocab_size
    spec = spec.with_net_config(vocab_size=vocab)
    for name, part in spec.conditions.items():
        if part.kind == "rating_prefix":
            if facts.rating_scale is None:
                raise MovielabError(
                    f"model.conditions.{name} needs the data's rating scale: set "
                    "data.rating_scale=[low,high] (data=imdb_titles and letterboxd_titles state theirs)"
                )
            spec = spec.with_condition_config(name, scale=list(facts.rating_scale))
        elif part.kind == "genre_prefix":
            spec = spec.with_condition_config(name, genres=list(_genres(facts)))
    if spec.task == "text_gan":
        options = spec.task_options()
        spec = spec.with_options(
            pad_id=_special_id(facts.tokenizer, options.pad_token),
            end_id=_special_id(facts.tokenizer, options.end_token),
            fake_batch_size=options.fake_batch_size or facts.batch_size or 64,
        )
    if spec.task == "genre_classifier":
        genres = _genres(facts)
        options = spec.task_options()
        labels = (
            facts.train_genre_labels if facts.train_genre_labels is not None else np.zeros((0, len(genres)))
        )
        weights = positive_weights(labels, options.max_pos_weight)
        spec = spec.with_net_config(n_outputs=len(genres)).with_options(
            genres=list(genres), pos_weight=weights
        )
    return spec.checked()


def _genres(facts: DataFacts) -> tuple[str, ...]:
    if facts.genres:
        return facts.genres
    if facts.genres_below_min_count:
        raise MovielabError(
            f"this model needs genres, and all {facts.genres_below_min_count} genres of the training data "
            f"are on fewer than data.genre_min_count={facts.genre_min_count} records: lower it"
        )
    raise MovielabError(
        "this model needs genres, and the training data has none: use a data config with a genres "
        "column (e.g. data=imdb1000_plots) or map one with data.reader.columns.genres"
    )


def _special_id(tokenizer: Tokenizer, token: str) -> int:
    """The id of a special token; the GAN needs a tokenizer that has them (the word tokenizer)."""
    ids = tokenizer.encode(token).tolist()
    if tokenizer.kind != "word" or len(ids) != 1 or ids[0] == tokenizer.unknown_id:
        raise MovielabError(
            f"the text GAN needs a tokenizer with a '{token}' token (data.tokenizer.kind=word with "
            f"options.specials); the {tokenizer.kind} tokenizer has none"
        )
    return int(ids[0])


def positive_weights(labels: Sequence[Sequence[float]] | np.ndarray, max_weight: float = 50.0) -> list[float]:
    """BCE pos_weight per genre: negatives / positives among the labelled training records.

    A genre on 10% of the movies gets weight 9, so its few positives count as much as its many
    negatives (BCEWithLogitsLoss's recipe for imbalance); capped at `max_weight` so a genre seen once
    does not dominate, and 1 for a genre with no positives.
    """
    labels = np.asarray(labels, dtype=np.float64)
    labels = labels[labels.sum(axis=1) > 0] if labels.size else labels
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return [float(w) for w in np.clip(weights, 0.0, max_weight)]
