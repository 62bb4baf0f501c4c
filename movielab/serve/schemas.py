"""The JSON bodies the API takes and gives (pydantic models: FastAPI checks types against them and
writes them into the OpenAPI schema at /openapi.json and /docs).

Types are strict (a number is a JSON number, not a string); ranges are checked where they are
defined: sampling settings by SamplingSettings, prompt fields by the model (movielab.serve.checks).
A generate body takes the model's prompt fields (title, rating, genres, prime, ...) beside the
fields below: GET /v1/models lists each model's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from movielab.sampling import SAMPLING_OPTIONS

SAMPLING_FIELDS = SAMPLING_OPTIONS


class ErrorBody(BaseModel):
    """Every 4xx (and the rare 5xx) answer: what is wrong, the field it is about, what it may be."""

    error: str
    field: str | None = None
    allowed: Any = None


class GenerateBody(BaseModel):
    model_config = ConfigDict(
        strict=True,
        extra="allow",
        json_schema_extra={
            "additionalProperties": {"description": "a prompt field of the model (GET /v1/models)"},
            "examples": [
                {"model": "plots", "title": "The Last Lighthouse", "genres": ["horror"], "rating": 7.5},
                {"model": "plots", "prime": "A widow", "n": 2, "seed": 7, "temperature": 0.9, "stream": True},
            ],
        },
    )

    model: str | None = Field(None, description="a served model's name (optional when one is served)")
    n: int = Field(1, description="how many texts; text i is drawn with seed + i")
    seed: int | None = Field(None, description="the first text's seed (random when not given)")
    stream: bool = Field(False, description="Server-Sent Events: a piece event per token, then done")
    temperature: float | None = Field(None, description="> 0 (default: /v1/models)")
    top_k: int | None = Field(None, description=">= 1, null: off")
    top_p: float | None = Field(None, description="in (0, 1], null: off")
    min_p: float | None = Field(None, description="in [0, 1), null: off")
    repetition_penalty: float | None = Field(None, description="> 0, 1: none")
    no_repeat_ngram_size: int | None = Field(None, description=">= 1, null: off")
    max_new_tokens: int | None = Field(None, description="1 to the server's limit (/v1/models)")


class PredictBody(BaseModel):
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [{"model": "genres", "text": "A family moves into an old farmhouse."}]
        },
    )

    model: str | None = Field(None, description="a served genre classifier (optional when one is served)")
    text: str = Field(description="the plot to read genres from")
    title: str | None = Field(None, description="only read by classifiers whose template has the title")


class GeneratedTextBody(BaseModel):
    index: int
    text: str
    cut_off: bool = Field(description="used up max_new_tokens before the model wrote its stop")
    copies_training: bool | None = Field(description="the text is a training text (null: no index)")
    seed: int
    new_tokens: int


class GenerateAnswer(BaseModel):
    model: str
    texts: list[GeneratedTextBody]
    seed: int
    settings: dict[str, Any] = Field(description="the sampling settings used")
    prompt: dict[str, Any] = Field(description="the prompt fields given")


class GenreProbability(BaseModel):
    genre: str
    probability: float
    above_threshold: bool


class PredictAnswer(BaseModel):
    model: str
    genres: list[GenreProbability] = Field(description="every genre, most probable first")
    threshold: float = Field(description="the decision threshold chosen on validation")
