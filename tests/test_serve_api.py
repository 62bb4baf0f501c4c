"""`movielab serve` through its HTTP API, on tiny models trained here: a genre- and rating-conditioned
char GPT that stops at the first "." and a genre classifier. Every endpoint, each refusal, the
API key, streaming against non-streamed text, concurrent requests decoded in one batch giving
the texts that sequential requests give, and clients that hang up stopping their rows."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from fastapi.testclient import TestClient
from omegaconf import OmegaConf, open_dict

from movielab.checkpoint import SECTION, read_checkpoint
from movielab.cli.serve import main as serve_main
from movielab.cli.serve import serve, serve_options
from movielab.cli.train import train
from movielab.data.records import Record
from movielab.errors import MovielabError
from movielab.generation import RowFinished, generate_texts, requests_for
from movielab.sampling import SamplingSettings
from movielab.serve.app import ServeOptions, create_app
from movielab.serve.scheduler import DecodingFailed, DecodingScheduler
from movielab.serve.served import checkpoints_to_serve, load_served, model_names
from tests.conftest import CONF_DIR, QUIET_CPU, compose_config

QUIET = [*QUIET_CPU, "logger=csv"]
# title + plot after a genre and a rating prefix; a text ends at its first "." (a short stop that a
# barely trained model writes now and then, so some rows stop and others run to their limit)
PLOTS = [
    "experiment=genre_plots",
    "+model.conditions.rating.kind=rating_prefix",
    "+data.rating_scale=[0,10]",
    "data.template.stop=.",
    "model.net.config.n_layer=1",
    "model.net.config.n_head=2",
    "model.net.config.n_embd=32",
    "model.net.config.block_size=128",
    "data.batching.batch_size=8",
    "trainer.max_steps=30",
    "trainer.val_check_interval=15",
    "++trainer.limit_val_batches=2",
    "~callbacks.text_samples",
    *QUIET,
]
CLASSIFIER = [
    "experiment=genre_classifier",
    "model.net.config.n_layer=1",
    "model.net.config.n_head=2",
    "model.net.config.n_embd=32",
    "model.net.config.block_size=128",
    "model.scheduler.warmup_steps=10",
    "data.batching.batch_size=16",
    "trainer.max_steps=30",
    "trainer.val_check_interval=15",
    *QUIET,
]
OPTIONS = ServeOptions(
    max_n=4, max_new_tokens_limit=300, max_body_bytes=4096, sampling=SamplingSettings(max_new_tokens=60)
)
MAX_BATCH = 8
PLOT = "A family moves into an old farmhouse where the cellar door will not stay shut."


@functools.cache
def trained_checkpoints(root: Path) -> dict[str, Path]:
    """The two tiny runs, trained once per session (the browser tests serve them too)."""
    for name, overrides in (("plots", PLOTS), ("genres", CLASSIFIER)):
        train(compose_config(root / name, overrides))
    return {name: root / name / "run" / "checkpoints" / "last.ckpt" for name in ("plots", "genres")}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    return trained_checkpoints(tmp_path_factory.getbasetemp() / "serve_models")


@pytest.fixture(scope="module")
def models(checkpoints):
    served = load_served(checkpoints, max_batch=MAX_BATCH)
    yield served
    for model in served.values():
        if model.scheduler is not None:
            model.scheduler.close()


@pytest.fixture(scope="module")
def client(models) -> Iterator[TestClient]:
    with TestClient(create_app(models, OPTIONS)) as test_client:
        yield test_client


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_models_describe_prompt_fields_sampling_limits_data_and_loss(client, checkpoints):
    answer = client.get("/v1/models")
    assert answer.status_code == 200
    described = {m["name"]: m for m in answer.json()["models"]}
    assert sorted(described) == ["genres", "plots"]
    plots, genres = described["plots"], described["genres"]
    section = read_checkpoint(checkpoints["plots"])[SECTION]
    fields = {f["name"]: f for f in plots["prompt_fields"]}
    assert sorted(fields) == ["genres", "prime", "rating", "title"]
    assert (fields["rating"]["kind"], fields["rating"]["low"], fields["rating"]["high"]) == ("number", 0, 10)
    assert (
        fields["genres"]["choices"] == section["data"]["genres"] and "horror" in fields["genres"]["choices"]
    )
    assert plots["kind"] == "language_model" and plots["endpoint"] == "/v1/generate" and plots["stop"] == "."
    assert plots["sampling"]["defaults"]["temperature"] == OPTIONS.sampling.temperature
    assert plots["sampling"]["limits"] == {"n": 4, "max_new_tokens": 300}
    assert plots["val_loss"] == pytest.approx(section["metrics"]["val/loss"]) and plots["step"] == 30
    assert plots["parameters"] > 10_000 and plots["data"]["train_records"] == section["data"]["train_records"]
    assert genres["kind"] == "genre_classifier" and genres["endpoint"] == "/v1/predict"
    assert "drama" in genres["genres"] and 0 < genres["threshold"] < 1


def test_generate_gives_the_generation_apis_texts_with_their_flags(client, models):
    prompt = {"title": "The Salt Orchard", "genres": ["drama"], "rating": 7.5}
    body = {"model": "plots", **prompt, "n": 3, "seed": 11, "max_new_tokens": 60, "top_p": 0.9}
    answer = client.post("/v1/generate", json=body)
    assert answer.status_code == 200, answer.text
    texts = answer.json()["texts"]
    settings = SamplingSettings.from_options(
        {**OPTIONS.sampling.__dict__, "max_new_tokens": 60, "top_p": 0.9}
    )
    expected = generate_texts(models["plots"].loaded.sampler, requests_for(prompt, settings, 11, 3))
    assert [t["text"] for t in texts] == [r.text for r in expected]
    assert [t["seed"] for t in texts] == [11, 12, 13] and answer.json()["seed"] == 11
    assert [t["cut_off"] for t in texts] == [r.cut_off for r in expected]
    assert all(t["text"].startswith("The Salt Orchard\n") for t in texts)
    assert all(isinstance(t["copies_training"], bool) for t in texts)  # the checkpoint has the index
    assert answer.json()["settings"]["top_p"] == 0.9 and answer.json()["prompt"] == prompt


def test_the_only_model_of_a_kind_may_go_unnamed_and_a_random_seed_is_reported(client):
    answer = client.post("/v1/generate", json={"max_new_tokens": 5})
    assert answer.status_code == 200 and answer.json()["model"] == "plots"
    seed = answer.json()["seed"]
    again = client.post("/v1/generate", json={"max_new_tokens": 5, "seed": seed})
    assert again.json()["texts"][0]["text"] == answer.json()["texts"][0]["text"]


def test_streamed_pieces_add_up_to_the_texts_of_the_same_request_not_streamed(client):
    body = {"model": "plots", "title": "Kessler Station", "genres": ["horror"], "n": 2, "seed": 3,
            "max_new_tokens": 80}  # fmt: skip
    plain = client.post("/v1/generate", json=body).json()
    streamed = client.post("/v1/generate", json={**body, "stream": True})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed.text)
    pieces = [data for name, data in events if name == "piece"]
    assert len(pieces) > 20  # a piece per token or so, not the text in one go
    for index, text in enumerate(plain["texts"]):
        mine = [p for p in pieces if p["index"] == index]
        assert "".join(p["text"] for p in mine) == text["text"]
        assert mine[0]["prompt"] and mine[0]["text"] == "Kessler Station\n" and not mine[-1]["prompt"]
    finished = [data for name, data in events if name == "finished"]
    assert sorted(f["index"] for f in finished) == [0, 1]
    assert events[-1][0] == "done" and events[-1][1] == plain


def test_predict_ranks_every_genre_with_the_classifiers_probabilities(client, models):
    answer = client.post("/v1/predict", json={"model": "genres", "text": PLOT})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    predictor = models["genres"].loaded.predictor
    expected = predictor.ranked(Record(title="", description=PLOT, text=PLOT, tagline=""))
    assert [g["genre"] for g in body["genres"]] == [genre for genre, _ in expected]
    assert [g["probability"] for g in body["genres"]] == pytest.approx([p for _, p in expected])
    assert sorted(g["genre"] for g in body["genres"]) == sorted(predictor.genres)
    assert body["threshold"] == predictor.threshold
    assert all(g["above_threshold"] == (g["probability"] >= body["threshold"]) for g in body["genres"])


def test_healthz_docs_openapi_and_the_page_need_nothing_from_outside(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["models"]["plots"]["max_batch"] == MAX_BATCH
    schema = client.get("/openapi.json").json()
    assert {"/v1/models", "/v1/generate", "/v1/predict", "/healthz"} <= set(schema["paths"])
    assert "temperature" in schema["components"]["schemas"]["GenerateBody"]["properties"]
    for page, assets in (("/docs", "/static-offline-docs/"), ("/", "/static/")):
        html = client.get(page).text
        links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert links and all(link.startswith((assets, "/docs", "/openapi.json")) for link in links), links
        assert all(client.get(link).status_code == 200 for link in links)


BAD = [
    # body, status, field, something the answer's allowed holds
    ({"model": "nope"}, 404, "model", "plots"),
    ({"model": "genres"}, 422, "model", "plots"),
    ({"colour": "red"}, 422, "colour", "title"),
    ({"description": "A widow"}, 422, "description", "prime"),
    ({"genres": ["horror", "opera"]}, 422, "genres", "horror"),
    ({"genres": "sci-fi", "rating": 11}, 422, "rating", 10.0),
    ({"rating": "high"}, 422, "rating", 10.0),
    ({"title": 7}, 422, "title", "a string"),
    ({"title": "Ωmega"}, 422, "title", "a string"),
    ({"temperature": 0}, 422, "temperature", "greater than 0"),
    ({"temperature": "hot"}, 422, "temperature", "a number"),
    ({"top_p": 1.5}, 422, "top_p", "(0, 1]"),
    ({"top_k": 0}, 422, "top_k", "at least 1"),
    ({"min_p": 1}, 422, "min_p", "[0, 1)"),
    ({"repetition_penalty": -1}, 422, "repetition_penalty", "greater than 0"),
    ({"max_new_tokens": 301}, 422, "max_new_tokens", 300),
    ({"n": 5}, 422, "n", 4),
    ({"n": 2.5}, 422, "n", "an integer"),
    ({"seed": -1}, 422, "seed", 0),
    ({"stream": "yes"}, 422, "stream", "true or false"),
]


@pytest.mark.parametrize(("body", "status", "field", "allowed"), BAD, ids=[str(b[0]) for b in BAD])
def test_bad_generate_bodies_are_4xx_naming_the_field_and_what_it_may_be(
    client, body, status, field, allowed
):
    answer = client.post("/v1/generate", json=body)
    assert answer.status_code == status, answer.text
    refusal = answer.json()
    assert set(refusal) == {"error", "field", "allowed"} and refusal["field"] == field
    assert "\n" not in refusal["error"] and len(refusal["error"]) < 400
    shown = refusal["allowed"]
    values = shown.values() if isinstance(shown, dict) else shown if isinstance(shown, list) else [shown]
    assert any(allowed == value or (isinstance(value, str) and str(allowed) in value) for value in values)


def test_broken_bodies_and_predict_misuse_are_4xx_json(client):
    cases = [
        (client.post("/v1/generate", content=b'{"title": "x",', headers={"content-type": "application/json"}),
         400, "not valid JSON"),
        (client.post("/v1/generate", content=b"[1, 2]", headers={"content-type": "application/json"}),
         400, "JSON object"),
        (client.post("/v1/generate", content=b'{"title": "x"}'), 400, "Content-Type: application/json"),
        (client.post("/v1/generate", json={"title": "x" * 5000}), 413, "4096 bytes"),
        (client.post("/v1/generate", content=(b"{}" for _ in range(1)),
                     headers={"content-type": "application/json"}), 200, ""),
        (client.post("/v1/generate", content=(b" " * 1000 for _ in range(5)),
                     headers={"content-type": "application/json"}), 413, "limit"),
        (client.post("/v1/predict", json={"model": "plots", "text": PLOT}), 422, "/v1/generate"),
        (client.post("/v1/predict", json={"text": "   "}), 422, "text is empty"),
        (client.post("/v1/predict", json={"text": PLOT, "genres": ["x"]}), 422, "unknown field"),
        (client.post("/v1/predict", json={}), 422, "text is required"),
        (client.get("/v1/nothing"), 404, "Not Found"),
        (client.delete("/v1/models"), 405, "Method Not Allowed"),
    ]  # fmt: skip
    for answer, status, words in cases:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json", (status, answer.text)
        if status != 200:
            assert words in answer.json()["error"] and set(answer.json()) == {"error", "field", "allowed"}


def test_with_an_api_key_every_v1_request_needs_the_bearer_token(models):
    key = "s3cret-key-for-tests"
    with TestClient(create_app(models, replace(OPTIONS, api_key=key))) as keyed:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            answer = keyed.get("/v1/models", headers=headers)
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
            assert answer.json()["field"] == "Authorization"
        refused = keyed.post("/v1/generate", json={"max_new_tokens": 3})
        assert refused.status_code == 401
        good = {"Authorization": f"Bearer {key}"}
        assert keyed.get("/v1/models", headers=good).status_code == 200
        assert keyed.post("/v1/generate", json={"max_new_tokens": 3}, headers=good).status_code == 200
        assert keyed.post("/v1/predict", json={"text": PLOT}, headers=good).status_code == 200
        assert keyed.get("/healthz").status_code == 200 and keyed.get("/").status_code == 200


# requests of different prompt lengths (none, a title, title and prime), conditions, limits and n
CONCURRENT = [
    {
        "title": "Paper Lanterns",
        "genres": ["drama", "romance"],
        "rating": 8.0,
        "max_new_tokens": 120,
        "seed": 1,
    },
    {"max_new_tokens": 40, "seed": 2},
    {"title": "Kessler Station", "prime": "A night guard", "n": 2, "max_new_tokens": 150, "seed": 3},
    {"title": "Up", "rating": 2.0, "max_new_tokens": 4, "seed": 4},
    {"title": "The Salt Orchard of the Long Winter", "genres": ["horror"], "max_new_tokens": 200, "seed": 5},
    {"title": "Cafe Nino", "n": 4, "max_new_tokens": 90, "temperature": 1.2, "seed": 6},
]
CONCURRENT_ROWS = sum(body.get("n", 1) for body in CONCURRENT)  # 10: more than max_batch


def test_concurrent_requests_decode_in_one_batch_and_give_the_texts_of_sequential_ones(client, models):
    scheduler = models["plots"].scheduler
    sequential = [client.post("/v1/generate", json=body).json()["texts"] for body in CONCURRENT]
    with ThreadPoolExecutor(len(CONCURRENT)) as pool:
        with scheduler.held():  # decoding waits until every request has queued its rows
            futures = [pool.submit(client.post, "/v1/generate", json=body) for body in CONCURRENT]
            deadline = time.monotonic() + 30
            while scheduler.waiting_rows < CONCURRENT_ROWS and time.monotonic() < deadline:
                time.sleep(0.01)
            assert scheduler.waiting_rows == CONCURRENT_ROWS
        concurrent = [future.result().json()["texts"] for future in futures]
    assert concurrent == sequential
    assert scheduler.max_rows_together == MAX_BATCH  # full: the last rows joined as others left
    rows = [(t, body) for texts, body in zip(concurrent, CONCURRENT, strict=True) for t in texts]
    stopped = [t for t, body in rows if not t["cut_off"] and t["new_tokens"] < body["max_new_tokens"]]
    cut = [t for t, _ in rows if t["cut_off"]]
    assert stopped and cut  # some rows ended at the stop, others at their limit, in one batch
    assert len({t["new_tokens"] for t, _ in rows}) >= 4


def test_the_scheduler_fails_only_the_jobs_in_a_broken_step_and_goes_on(models):
    sampler = models["plots"].loaded.sampler
    broken = {"left": 1}

    class BreaksOnce:
        """The real sampler whose decoder's first advance raises, as a NaN model would."""

        def __getattr__(self, name):
            return getattr(sampler, name)

        def decoder(self, use_cache=True):
            decoder = sampler.decoder(use_cache)
            advance = decoder.advance

            def failing(tokens):
                if broken["left"]:
                    broken["left"] -= 1
                    raise MovielabError("the model's next-token scores are not finite")
                return advance(tokens)

            decoder.advance = failing
            return decoder

    scheduler = DecodingScheduler(BreaksOnce(), max_batch=4, name="broken").start()
    try:
        settings = SamplingSettings(max_new_tokens=10)
        requests = requests_for({"title": "Up"}, settings, 0, 2)
        prompts = [sampler.prepare(r.prompt) for r in requests]
        got: list = []
        done = threading.Event()

        def deliver(item):
            got.append(item)
            if isinstance(item, BaseException) or any(isinstance(e, RowFinished) for e in item):
                done.set()

        scheduler.submit(requests, prompts, deliver)
        assert done.wait(30)
        assert isinstance(got[-1], DecodingFailed) and "not finite" in str(got[-1])
        results = []
        finished = threading.Event()

        def collect(item):
            results.extend(e for e in item if isinstance(e, RowFinished))
            if len(results) == 2:
                finished.set()

        scheduler.submit(requests, prompts, collect)
        assert finished.wait(30)
        assert sorted(len(r.result.text) > 0 for r in results) == [True, True]
    finally:
        scheduler.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """uvicorn serving the app on a free loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_until(condition, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_client_that_hangs_up_stops_its_rows(models):
    scheduler = models["plots"].scheduler
    body = {"title": "Up", "n": 4, "max_new_tokens": 300, "seed": 9}
    with LiveServer(create_app(models, OPTIONS)) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        # rows still waiting: a streaming client that leaves takes them out of the queue
        before, tokens = scheduler.cancelled_rows, scheduler.tokens
        with scheduler.held():
            with http.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
                assert response.status_code == 200
                assert wait_until(lambda: scheduler.waiting_rows == 4)
            assert wait_until(lambda: scheduler.cancelled_rows == before + 4)
            assert scheduler.waiting_rows == 0
        assert scheduler.tokens == tokens  # none of them was decoded

        # rows decoding: held once they write, they leave the batch when the client goes
        before = scheduler.cancelled_rows
        with contextlib.ExitStack() as holding:
            with http.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
                lines = response.iter_lines()
                while '"prompt": false' not in next(lines):
                    pass
                holding.enter_context(scheduler.held())
                assert scheduler.active_rows > 0
            assert wait_until(lambda: scheduler.cancelled_rows > before)
        assert wait_until(lambda: scheduler.active_rows == 0)

        # a client waiting for a plain (not streamed) answer that gives up
        before = scheduler.cancelled_rows
        with scheduler.held():
            with pytest.raises(httpx.ReadTimeout):
                http.post("/v1/generate", json=body, timeout=httpx.Timeout(30, read=0.5))
            assert wait_until(lambda: scheduler.cancelled_rows == before + 4)
        assert http.get("/healthz").json()["models"]["plots"]["waiting_rows"] == 0


def test_checkpoints_are_named_after_their_runs_and_only_those_are_served(tmp_path, checkpoints):
    paths = [
        Path("/r/2026-01-01_10-00/checkpoints/last.ckpt"),
        Path("/r/2026-01-02_09-00/checkpoints/last.ckpt"),
        Path("/r/2026-01-02_09-00/checkpoints/best-step000040.ckpt"),
    ]
    assert model_names(paths) == [
        "2026-01-01_10-00",
        "2026-01-02_09-00:last",
        "2026-01-02_09-00:best-step000040",
    ]
    named = checkpoints_to_serve(None, {"titles": str(checkpoints["plots"])})
    assert named == {"titles": checkpoints["plots"]}
    with pytest.raises(MovielabError, match="checkpoint not found"):
        checkpoints_to_serve(str(tmp_path / "missing.ckpt"), None)
    with pytest.raises(MovielabError, match="not both"):
        checkpoints_to_serve("a", ["b"])
    with pytest.raises(MovielabError, match="name the checkpoints"):
        checkpoints_to_serve(None, None)


def test_the_serve_config_gives_the_servers_options_and_refuses_bad_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("MOVIELAB_API_KEY", raising=False)
    options = serve_options(compose_config(tmp_path, ["ckpt=x", "max_n=3"], config_name="serve"))
    assert (options.max_n, options.max_new_tokens_limit, options.api_key) == (3, 1000, None)
    defaults = compose_config(tmp_path, ["ckpt=x"], config_name="serve")
    assert (defaults.host, defaults.max_batch) == ("127.0.0.1", 32)  # loopback unless told otherwise
    assert (options.sampling.temperature, options.sampling.top_p, options.sampling.max_new_tokens) == (
        0.8,
        0.95,
        400,
    )
    monkeypatch.setenv("MOVIELAB_API_KEY", "0123e456789")  # read as text, never as a number
    assert serve_options(compose_config(tmp_path, ["ckpt=x"], config_name="serve")).api_key == "0123e456789"
    for bad, message in [
        ("max_batch=0", "max_batch=0 must be an integer of at least 1"),
        ("max_new_tokens_limit=100", "sampling.max_new_tokens=400 is above max_new_tokens_limit=100"),
        ("sampling.top_p=2", "top_p=2 must be in"),
        ("api_key=short", "api_key must be at least 8 characters"),
    ]:
        with pytest.raises(MovielabError, match=re.escape(message)):
            serve_options(compose_config(tmp_path, ["ckpt=x", bad], config_name="serve"))


def test_the_command_reports_a_missing_checkpoint_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["movielab-serve", f"ckpt={tmp_path / 'none.ckpt'}"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        serve_main()
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: ckpt: checkpoint not found: {tmp_path / 'none.ckpt'}"]


# every option of conf/serve.yaml (read from the file, so a new one needs a row) -> bad values
SERVE_BAD = {
    "ckpt": [3, "missing.ckpt"],
    "ckpts": [{"a": "missing.ckpt"}, ["missing.ckpt"], "x", {}],
    "host": ["", 3],
    "port": [0, 70000, "http"],
    "api_key": ["short"],
    "device": ["quantum"],
    "max_batch": [0, 2.5],
    "max_n": [0],
    "max_new_tokens_limit": [0, 100],  # 100: below sampling.max_new_tokens=400
    "max_body_bytes": [0],
    "use_cache": ["yes"],
    "torch_threads": [0, "many"],
    "thread_switch_ms": [0, "fast"],
    "log_level": ["loud"],
    "sampling.temperature": [0, "hot"],
    "sampling.top_k": [0],
    "sampling.top_p": [2],
    "sampling.min_p": [1],
    "sampling.repetition_penalty": [-1],
    "sampling.no_repeat_ngram_size": [0],
    "sampling.max_new_tokens": [0, 1001],
}


def serve_config_options() -> list[str]:
    def leaves(node, prefix=""):
        for key, value in node.items():
            if key in ("defaults", "hydra"):
                continue
            yield from leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]

    return list(leaves(yaml.safe_load((CONF_DIR / "serve.yaml").read_text(encoding="utf-8"))))


def test_every_serve_option_has_bad_values_tried():
    assert sorted(serve_config_options()) == sorted(SERVE_BAD)


@pytest.mark.parametrize(
    ("option", "value"),
    [(option, value) for option, values in SERVE_BAD.items() for value in values],
    ids=[f"{option}={value!r}" for option, values in SERVE_BAD.items() for value in values],
)
def test_a_bad_serve_option_is_one_line_naming_it_before_anything_loads(tmp_path, monkeypatch, option, value):
    monkeypatch.delenv("MOVIELAB_API_KEY", raising=False)
    cfg = compose_config(tmp_path, ["ckpt=x"] if option not in ("ckpt", "ckpts") else [], config_name="serve")
    with open_dict(cfg):
        OmegaConf.update(cfg, option, value, merge=False)
    loaded = []
    monkeypatch.setattr("movielab.serve.served.load_served", lambda *a, **k: loaded.append(a) or {})
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MovielabError) as raised:
        serve(cfg)
    message = str(raised.value)
    assert "\n" not in message and option in message and not loaded, message
