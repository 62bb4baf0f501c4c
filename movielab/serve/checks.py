"""A generate body checked and turned into rows to decode, every mistake a 4xx `ApiError` naming the
field and what it may be.

The checks are the ones the rest of movielab makes: sampling values by SamplingSettings, prompt
values by the model's own `prepare` (which also normalises genre names); the server adds only its
limits (n, max_new_tokens) and says which field an error is about.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from movielab.errors import MovielabError
from movielab.generation import GeneratesText, PreparedPrompt, PromptField, Request
from movielab.sampling import SamplingSettings
from movielab.serve.schemas import SAMPLING_FIELDS, GenerateBody

REQUEST_FIELDS = ("model", "n", "seed", "stream", *SAMPLING_FIELDS)
INVALID = 422  # a well-formed body with a value that is unknown, of the wrong type or out of range
MAX_SEED = 2**62


class ApiError(Exception):
    """A request the server refuses: HTTP status, a one-line message, the field, what it may be."""

    def __init__(self, status: int, error: str, field: str | None = None, allowed: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = " ".join(error.split())
        self.field = field
        self.allowed = allowed

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "field": self.field, "allowed": self.allowed}


@dataclass(frozen=True)
class Limits:
    max_n: int
    max_new_tokens: int


@dataclass
class CheckedGenerate:
    prompt: dict[str, Any]
    settings: SamplingSettings
    seed: int
    requests: list[Request]
    prompts: list[PreparedPrompt]


def sampling_settings(
    given: Mapping[str, Any], defaults: SamplingSettings, limits: Limits
) -> SamplingSettings:
    """The defaults with the given values; a bad one is named with SamplingSettings' own words."""
    base = {name: getattr(defaults, name) for name in SAMPLING_FIELDS}
    for name, value in given.items():
        try:
            SamplingSettings(**{**base, name: value})
        except MovielabError as error:
            message = str(error)
            allowed = message.split(" must be ", 1)[1] if " must be " in message else None
            raise ApiError(INVALID, message, name, allowed) from None
    settings = SamplingSettings(**{**base, **given})
    if settings.max_new_tokens > limits.max_new_tokens:
        raise ApiError(
            INVALID,
            f"max_new_tokens={settings.max_new_tokens} is above this server's limit {limits.max_new_tokens}",
            "max_new_tokens",
            {"low": 1, "high": limits.max_new_tokens},
        )
    return settings


def _allowed(field: PromptField) -> Any:
    if field.kind == "number":
        return {"low": field.low, "high": field.high}
    if field.kind == "choices":
        return list(field.choices)
    return "a string"


def _type_error(field: PromptField, value: Any) -> str | None:
    if field.kind == "text" and not isinstance(value, str):
        return f"{field.name} must be a string"
    if field.kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"{field.name} must be a number in [{field.low:g}, {field.high:g}]"
    if field.kind == "choices" and not (
        isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    ):
        return f"{field.name} must be a list of names from the model's vocabulary"
    return None


def prepared_prompt(sampler: GeneratesText, prompt: dict[str, Any], model: str) -> PreparedPrompt:
    """The prompt checked field by field against the model's prompt fields, then prepared by the
    model; an error names the field it is about where one alone is at fault."""
    fields = {field.name: field for field in sampler.prompt_fields()}
    for name, value in prompt.items():
        if name not in fields:
            try:
                sampler.prepare({name: value})
                message = f"model {model!r} takes no field {name!r}"
            except MovielabError as error:
                message = str(error)
            raise ApiError(INVALID, message, name, [*REQUEST_FIELDS, *fields])
        problem = _type_error(fields[name], value) if value is not None else None
        if problem:
            raise ApiError(INVALID, problem, name, _allowed(fields[name]))
    try:
        return sampler.prepare(prompt)
    except MovielabError as error:
        culprit = _culprit(sampler, prompt)
        allowed = _allowed(fields[culprit]) if culprit else None
        raise ApiError(INVALID, str(error), culprit, allowed) from None


def _culprit(sampler: GeneratesText, prompt: dict[str, Any]) -> str | None:
    """The field whose value alone the model refuses, if there is one."""
    for name, value in prompt.items():
        try:
            sampler.prepare({name: value})
        except MovielabError:
            return name
    return None


def checked_generate(
    body: GenerateBody, sampler: GeneratesText, model: str, defaults: SamplingSettings, limits: Limits
) -> CheckedGenerate:
    """A generate body as the rows to decode: n requests of one prompt, seeds seed, seed + 1, ...
    (as `python -m movielab.generate` numbers its samples)."""
    if not 1 <= body.n <= limits.max_n:
        raise ApiError(
            INVALID,
            f"n={body.n} must be from 1 to this server's limit {limits.max_n}",
            "n",
            {"low": 1, "high": limits.max_n},
        )
    if body.seed is not None and not 0 <= body.seed <= MAX_SEED:
        raise ApiError(
            INVALID, f"seed={body.seed} must be from 0 to {MAX_SEED}", "seed", {"low": 0, "high": MAX_SEED}
        )
    given = {name: getattr(body, name) for name in SAMPLING_FIELDS if name in body.model_fields_set}
    settings = sampling_settings(given, defaults, limits)
    prompt = dict(body.model_extra or {})
    prepared = prepared_prompt(sampler, prompt, model)
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    requests = [Request(prompt, settings, seed + i) for i in range(body.n)]
    return CheckedGenerate(prompt, settings, seed, requests, [prepared] * body.n)


def settings_record(settings: SamplingSettings) -> dict[str, Any]:
    """The settings as an answer shows them (the model's banned tokens are its own business)."""
    return {name: value for name, value in asdict(settings).items() if name in SAMPLING_FIELDS}


def named(names: Sequence[str], wanted: str | None, kind: str) -> str:
    """The model a request names, or the only one there is; unknown names list the known."""
    if wanted is None:
        if not names:
            raise ApiError(404, f"this server has no {kind}", "model", [])
        if len(names) == 1:
            return names[0]
        raise ApiError(INVALID, f"name the model: this server has several {kind}s", "model", list(names))
    if wanted not in names:
        raise ApiError(404, f"unknown model {wanted!r}", "model", list(names))
    return wanted
