"""The HTTP API and the page: FastAPI routes over the served models.

Every answer is JSON (or Server-Sent Events for a streamed generation); every refusal is
`{error, field, allowed}` with a 4xx status, never a traceback. The decoding itself happens in
each model's scheduler thread; a handler checks the request, hands its rows over and relays the
events the scheduler delivers into this event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from movielab.data.records import Record
from movielab.errors import MovielabError
from movielab.generation import Event, GeneratedText, RowFinished, RowRestarted, TextPiece
from movielab.sampling import SamplingSettings
from movielab.serve.checks import (
    INVALID,
    ApiError,
    CheckedGenerate,
    Limits,
    checked_generate,
    named,
    settings_record,
)
from movielab.serve.scheduler import DecodingFailed, Delivery, Job
from movielab.serve.schemas import (
    ErrorBody,
    GenerateAnswer,
    GenerateBody,
    PredictAnswer,
    PredictBody,
)
from movielab.serve.served import ServedModel

log = logging.getLogger(__name__)

ERRORS = {
    status: {"model": ErrorBody, "description": description}
    for status, description in [
        (400, "malformed JSON, or a body that is not a JSON object"),
        (401, "the API key is missing or wrong"),
        (404, "no such model (allowed lists the served ones)"),
        (413, "the body is larger than the server's max_body_bytes"),
        (INVALID, "a field is unknown, of the wrong type or out of range (field and allowed say which)"),
    ]
}

BEARER = HTTPBearer(auto_error=False, description="the server's api_key, when it has one")


@dataclass(frozen=True)
class ServeOptions:
    """What the server allows a request (conf/serve.yaml)."""

    max_n: int = 16
    max_new_tokens_limit: int = 1000
    api_key: str | None = None
    max_body_bytes: int = 65536
    sampling: SamplingSettings = field(default_factory=SamplingSettings)

    def __post_init__(self) -> None:
        if self.sampling.max_new_tokens > self.max_new_tokens_limit:
            raise MovielabError(
                f"sampling.max_new_tokens={self.sampling.max_new_tokens} is above "
                f"max_new_tokens_limit={self.max_new_tokens_limit}"
            )

    @property
    def limits(self) -> Limits:
        return Limits(self.max_n, self.max_new_tokens_limit)


def create_app(models: Mapping[str, ServedModel], options: ServeOptions = ServeOptions()) -> FastAPI:
    """The app over models already loaded (their schedulers running); whoever loaded them closes them."""
    app = FastAPIOffline(
        title="movielab serve",
        summary="Text from movielab's trained models, streamed and batched across clients",
        version="1",
    )

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        """async: FastAPI runs a plain-def dependency in its thread pool, a thread hop (and a GIL
        hand-over beside the decoding thread) before every request."""
        if options.api_key is None:
            return
        token = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(token.encode(), options.api_key.encode()):
            raise ApiError(
                401, "this server needs its API key: send Authorization: Bearer <key>", "Authorization"
            )

    _add_error_handlers(app)
    app.add_middleware(_BodyLimit, max_bytes=options.max_body_bytes)
    app.mount("/static", StaticFiles(packages=[("movielab.serve", "static")]), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(
            resources.files("movielab.serve").joinpath("static/index.html").read_text("utf-8")
        )

    @app.get("/healthz", summary="Liveness, and what each model's decoding loop is doing")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": {name: _load(model) for name, model in models.items()}}

    @app.get(
        "/v1/models",
        summary="The served models: prompt fields, sampling defaults and limits, data, loss",
        dependencies=[Depends(authorized)],
        responses={401: ERRORS[401]},
    )
    def list_models() -> dict[str, Any]:
        return {"models": [model.describe(options.sampling, options.limits) for model in models.values()]}

    @app.post(
        "/v1/generate",
        summary="Write texts; stream: true gives Server-Sent Events",
        dependencies=[Depends(authorized)],
        response_model=GenerateAnswer,
        responses={
            **ERRORS,
            200: {
                "description": "the texts; with stream: true, text/event-stream: `piece` events "
                "{index, text, prompt}, `finished` {text...} per text, then `done` with this body",
                "content": {"text/event-stream": {}},
            },
        },
    )
    async def generate(body: GenerateBody, request: Request) -> Any:
        model = _pick(models, body.model, writes_text=True)
        checked = _checked(body, model, options)
        relay = _Relay(asyncio.get_running_loop())
        job = model.scheduler.submit(checked.requests, checked.prompts, relay.deliver)
        texts = _Texts(checked)
        if body.stream:
            return _EventStream(
                _events(model.name, job, relay, texts),
                on_close=lambda: model.scheduler.cancel(job),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        collecting = asyncio.ensure_future(_collect(job, relay, texts))
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({collecting, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not collecting.done():  # the client went away: its rows stop
            model.scheduler.cancel(job)
            collecting.cancel()
            return JSONResponse({"error": "client disconnected", "field": None, "allowed": None}, 499)
        try:
            collecting.result()
        except DecodingFailed as error:
            return JSONResponse({"error": str(error), "field": None, "allowed": None}, 500)
        return texts.answer(model.name)

    @app.post(
        "/v1/predict",
        summary="A genre classifier's probability per genre for a plot",
        dependencies=[Depends(authorized)],
        response_model=PredictAnswer,
        responses=ERRORS,
    )
    async def predict(body: PredictBody) -> dict[str, Any]:
        model = _pick(models, body.model, writes_text=False)
        text = body.text.strip()
        if not text:
            raise ApiError(
                INVALID, "text is empty: give the plot whose genres to read", "text", "a non-empty string"
            )
        record = Record(title=body.title or "", description=text, text=text, tagline="")
        predictor = model.loaded.predictor

        def ranked() -> list[tuple[str, float]]:
            with model.predict_lock, torch.inference_mode():
                return predictor.ranked(record)

        genres = await run_in_threadpool(ranked)
        return {
            "model": model.name,
            "genres": [
                {"genre": genre, "probability": p, "above_threshold": p >= predictor.threshold}
                for genre, p in genres
            ],
            "threshold": predictor.threshold,
        }

    return app


def _load(model: ServedModel) -> dict[str, Any]:
    load: dict[str, Any] = {"kind": model.loaded.kind}
    if model.scheduler is not None:
        scheduler = model.scheduler
        load.update(
            active_rows=scheduler.active_rows,
            waiting_rows=scheduler.waiting_rows,
            steps=scheduler.steps,
            tokens=scheduler.tokens,
            max_rows_together=scheduler.max_rows_together,
            max_batch=scheduler.max_batch,
        )
    return load


def _pick(models: Mapping[str, ServedModel], wanted: str | None, writes_text: bool) -> ServedModel:
    """The model a request names: it must exist and be of the endpoint's kind."""
    fitting = [name for name, model in models.items() if model.writes_text == writes_text]
    what = "text model" if writes_text else "genre classifier"
    if wanted is None:
        return models[named(fitting, None, what)]
    name = named(list(models), wanted, what)
    if name not in fitting:
        other = "/v1/predict" if writes_text else "/v1/generate"
        raise ApiError(
            INVALID, f"model {name!r} is a {models[name].loaded.kind}: use {other}", "model", fitting
        )
    return models[name]


def _checked(body: GenerateBody, model: ServedModel, options: ServeOptions) -> CheckedGenerate:
    """In the event loop: tokenizing a prompt and running the condition encoders takes well under
    a millisecond, less than a hop to a worker thread and back while the decoding thread runs."""
    with torch.inference_mode():
        return checked_generate(body, model.loaded.sampler, model.name, options.sampling, options.limits)


class _Mailbox:
    """What scheduler threads deliver, handed to one event loop: the loop is woken once for all
    that arrived since it last ran (a step delivers to every job in it at once), not once a job."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.pending: list[tuple[asyncio.Queue, Delivery]] = []

    def post(self, queue: asyncio.Queue, item: Delivery) -> None:  # from a scheduler's thread
        with self.lock:
            self.pending.append((queue, item))
            if len(self.pending) > 1:
                return  # a wake-up is on its way
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self.loop.call_soon_threadsafe(self._hand_over)

    def _hand_over(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
        for queue, item in pending:
            queue.put_nowait(item)


_MAILBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()


class _Relay:
    """One request's deliveries, queued in its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.mailbox = _MAILBOXES.get(loop) or _MAILBOXES.setdefault(loop, _Mailbox(loop))
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()

    def deliver(self, item: Delivery) -> None:
        self.mailbox.post(self.queue, item)


class _Texts:
    """A job's texts as they grow, by index in the request."""

    def __init__(self, checked: CheckedGenerate) -> None:
        self.checked = checked
        self.prompt_lengths = [len(p.text) for p in checked.prompts]
        self.written = [""] * len(checked.requests)
        self.results: list[GeneratedText | None] = [None] * len(checked.requests)

    def answer(self, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "texts": [_text_body(i, r) for i, r in enumerate(self.results) if r is not None],
            "seed": self.checked.seed,
            "settings": settings_record(self.checked.settings),
            "prompt": self.checked.prompt,
        }


def _text_body(index: int, result: GeneratedText) -> dict[str, Any]:
    return {
        "index": index,
        "text": result.text,
        "cut_off": result.cut_off,
        "copies_training": result.copies_training,
        "seed": result.seed,
        "new_tokens": result.new_tokens,
    }


async def _job_events(job: Job, relay: _Relay) -> AsyncIterator[list[Event]]:
    """The job's events until each of its rows has finished: those of every step delivered since
    the last look, together (a loop that falls behind catches up in fewer, larger writes)."""
    unfinished = set(job.rows)
    while unfinished:
        deliveries = [await relay.queue.get()]
        while not relay.queue.empty():
            deliveries.append(relay.queue.get_nowait())
        events = []
        for delivered in deliveries:
            if isinstance(delivered, BaseException):
                raise delivered
            events += delivered
        unfinished -= {event.row for event in events if isinstance(event, RowFinished)}
        yield events


async def _collect(job: Job, relay: _Relay, texts: _Texts) -> None:
    async for events in _job_events(job, relay):
        for event in events:
            if isinstance(event, RowFinished):
                texts.results[job.index(event.row)] = event.result


def _sse(event: str, data: Mapping[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(model: str, job: Job, relay: _Relay, texts: _Texts) -> AsyncIterator[str]:
    """Server-Sent Events: a `piece` per bit of text (the prompt's own text first, marked), a
    `restart` when a text is withdrawn, a `finished` per text, then `done` with the whole answer."""
    try:
        async for events in _job_events(job, relay):
            chunk = []
            for event in events:
                index = job.index(event.row)
                if isinstance(event, TextPiece):
                    in_prompt = len(texts.written[index]) + len(event.text) <= texts.prompt_lengths[index]
                    texts.written[index] += event.text
                    chunk.append(_sse("piece", {"index": index, "text": event.text, "prompt": in_prompt}))
                elif isinstance(event, RowRestarted):
                    texts.written[index] = ""
                    chunk.append(_sse("restart", {"index": index, "reason": event.reason}))
                else:
                    texts.results[index] = event.result
                    chunk.append(_sse("finished", _text_body(index, event.result)))
            yield "".join(chunk)
        yield _sse("done", texts.answer(model))
    except DecodingFailed as error:
        yield _sse("error", {"error": str(error), "field": None, "allowed": None})


class _EventStream(StreamingResponse):
    """A streaming response that always says when it ends, finished or not (a client that goes
    away mid-stream cancels the generator's task, which may never resume)."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


class _BodyLimit:
    """Bodies over the limit are refused in the API's JSON: at once when their Content-Length says
    so, else when the bytes received pass it (FastAPI's own max_body_size answers in plain text)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse(_too_large(self.max_bytes).body(), 413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if received > self.max_bytes:  # an HTTPException: FastAPI passes it to the handlers
                raise StarletteHTTPException(413, _too_large(self.max_bytes).error)
            return message

        await self.app(scope, counted, send)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than this server's limit of {limit} bytes")


async def _disconnected(request: Request) -> None:
    """Returns when the client hangs up (the body has been read: only a disconnect can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(error.body(), error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        refusal = _validation_error(error.errors())
        return JSONResponse(refusal.body(), refusal.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        body = {"error": str(error.detail), "field": None, "allowed": None}
        return JSONResponse(body, error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.error("request %s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse(
            {
                "error": "internal server error (the server's log has the details)",
                "field": None,
                "allowed": None,
            },
            500,
        )


EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "model": "a JSON object",
    "dict": "a JSON object",
}


def _validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """FastAPI's first complaint about a body as {error, field, allowed}."""
    first = errors[0]
    kind, location = first.get("type", ""), [part for part in first.get("loc", ()) if part != "body"]
    if kind == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return ApiError(
            400, f"the body is not valid JSON ({detail})" if detail else "the body is not valid JSON"
        )
    if not location or not isinstance(location[0], str):
        unread = kind == "missing" or isinstance(first.get("input"), bytes | str)
        hint = " with Content-Type: application/json" if unread else ""
        return ApiError(400, f"the body must be a JSON object{hint}", None, "a JSON object")
    name = str(location[0])
    if kind == "missing":
        return ApiError(INVALID, f"{name} is required", name)
    if kind == "extra_forbidden":
        return ApiError(INVALID, f"unknown field {name!r}", name, sorted(PredictBody.model_fields))
    expected = next((words for prefix, words in EXPECTED.items() if kind.startswith(prefix)), None)
    if expected is not None:
        return ApiError(INVALID, f"{name}={first.get('input')!r} must be {expected}", name, expected)
    return ApiError(INVALID, f"{name}: {first.get('msg', 'is not acceptable')}", name)
