"""Nets and condition encoders by kind: a name and plain fields become a module, and nothing else.

A checkpoint (and a training config) describes its model as `{"kind": "gpt", "config": {...}}`:
the kind is looked up here and the fields fill that kind's dataclass, so a checkpoint survives
moving code between files and can never name code to run. Adding an architecture is one line here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from movielab.errors import MovielabError
from movielab.models.conditioning import RatingPrefix, RatingPrefixConfig
from movielab.models.genre_prefix import GenrePrefix, GenrePrefixConfig
from movielab.models.gpt import GPT, GPTConfig
from movielab.models.lstm import LSTM, LSTMConfig
from movielab.models.text_gan import TextGAN, TextGANConfig
from movielab.models.transformer_encoder import TransformerEncoder, TransformerEncoderConfig

PLAIN = (bool, int, float, str, type(None))


def _hf() -> tuple[type, type]:
    from movielab.models.hf_causal_lm import HFCausalLM, HFCausalLMConfig  # transformers: an optional extra

    return HFCausalLM, HFCausalLMConfig


@dataclass(frozen=True)
class Kind:
    """A module kind: its config dataclass and its class (loaded on first use when optional)."""

    load: Callable[[], tuple[type, type]]


NETS: dict[str, Kind] = {
    "gpt": Kind(lambda: (GPT, GPTConfig)),
    "lstm": Kind(lambda: (LSTM, LSTMConfig)),
    "text_gan": Kind(lambda: (TextGAN, TextGANConfig)),
    "transformer_encoder": Kind(lambda: (TransformerEncoder, TransformerEncoderConfig)),
    "hf_causal_lm": Kind(_hf),
}
CONDITIONS: dict[str, Kind] = {
    "rating_prefix": Kind(lambda: (RatingPrefix, RatingPrefixConfig)),
    "genre_prefix": Kind(lambda: (GenrePrefix, GenrePrefixConfig)),
}


def plain_data(value: Any, where: str) -> Any:
    """`value` if it is plain data (numbers, strings, lists and string-keyed maps of them), with
    a one-line error naming where it is otherwise; a `_target_` anywhere is refused."""
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, list | tuple):
        return [plain_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise MovielabError(f"{where}: key {key!r} is not a name")
            if key == "_target_":
                raise MovielabError(
                    f"{where}._target_ names code to run: a movielab model is plain data, refused"
                )
        return {key: plain_data(item, f"{where}.{key}") for key, item in value.items()}
    raise MovielabError(f"{where} holds a {type(value).__name__}, not plain data")


def _lookup(kinds: Mapping[str, Kind], kind: Any, where: str) -> tuple[type, type]:
    if not isinstance(kind, str) or kind not in kinds:
        raise MovielabError(f"{where}.kind={kind!r} is not one of {', '.join(sorted(kinds))}")
    return kinds[kind].load()


def make_config(kinds: Mapping[str, Kind], kind: str, fields: Mapping[str, Any], where: str) -> Any:
    """The kind's config dataclass filled from plain `fields`."""
    _, config_class = _lookup(kinds, kind, where)
    return fill_dataclass(config_class, fields, f"{where}.config", f" for kind {kind}")


def fill_dataclass(config_class: type, fields: Mapping[str, Any], where: str, about: str = "") -> Any:
    """`config_class(**fields)` with every field checked first: unknown or missing names and
    values of the wrong type are a one-line error naming the field (then the class's own checks)."""
    fields = plain_data(dict(fields), where)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise MovielabError(
            f"{where} has unknown field(s) {', '.join(unknown)}{about}; known: {', '.join(sorted(known))}"
        )
    missing = [
        f.name
        for f in dataclasses.fields(config_class)
        if f.name not in fields
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise MovielabError(f"{where} is missing {', '.join(missing)}{about}")
    hints = typing.get_type_hints(config_class)
    typed = {name: _typed(value, hints[name], f"{where}.{name}") for name, value in fields.items()}
    return config_class(**typed)


def _typed(value: Any, hint: Any, where: str) -> Any:
    """`value` as the annotated type (int, float, bool, str, None, tuples, lists, maps of them),
    or a one-line error saying what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _typed(value, option, where)
            except MovielabError:
                continue
        raise MovielabError(f"{where}={value!r} is not {' or '.join(_name(a) for a in args)}")
    if hint is type(None):
        if value is None:
            return None
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list) and isinstance(value, list | tuple):
        item = args[0] if args else Any
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis:
            if len(value) != len(args):
                raise MovielabError(f"{where}={list(value)!r} must have {len(args)} items")
            return tuple(
                _typed(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        items = [_typed(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    elif origin is dict and isinstance(value, Mapping):
        return dict(value)
    raise MovielabError(f"{where}={value!r} is not {_name(hint)}")


def _name(hint: Any) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def build(kinds: Mapping[str, Kind], kind: str, fields: Mapping[str, Any], where: str) -> nn.Module:
    module_class, _ = _lookup(kinds, kind, where)
    return module_class(make_config(kinds, kind, fields, where))


def config_data(module: nn.Module) -> dict[str, Any]:
    """A built module's config as plain data, as a checkpoint stores it (tuples as lists)."""
    return plain_data(dataclasses.asdict(module.config), "config")
