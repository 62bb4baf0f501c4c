"""Checkpoints written before checkpoints became plain data (format 1, by commit 620c59e) load with
today's code and sample exactly the texts that code sampled from them for the same seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from movielab.checkpoint import load_model
from movielab.data.records import Record
from movielab.generation import Request, generate_texts
from movielab.sampling import SamplingSettings

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_v1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
WRITERS = [kind for kind in EXPECTED["kinds"] if kind != "genre_classifier"]


@pytest.mark.parametrize("kind", WRITERS)
def test_a_format_1_checkpoint_samples_what_it_sampled_then(kind):
    if kind == "hf_causal_lm":
        pytest.importorskip("transformers")
    expected = EXPECTED["kinds"][kind]
    model = load_model(FIXTURES / f"{kind}.ckpt")
    settings = SamplingSettings(**expected["settings"])
    requests = [Request(expected["prompt"], settings, sample["seed"]) for sample in expected["samples"]]
    results = generate_texts(model.sampler, requests)  # the three seeds in one batch
    assert [r.text for r in results] == [s["text"] for s in expected["samples"]]
    assert [r.cut_off for r in results] == [s["cut_off"] for s in expected["samples"]]


def test_a_format_1_genre_classifier_reads_the_same_probabilities():
    expected = EXPECTED["kinds"]["genre_classifier"]
    model = load_model(FIXTURES / "genre_classifier.ckpt")
    text = expected["text"]
    ranked = dict(model.predictor.ranked(Record(title="", description=text, text=text, tagline="")))
    assert ranked.keys() == expected["probabilities"].keys()
    assert all(abs(ranked[g] - p) < 1e-6 for g, p in expected["probabilities"].items())


def test_a_format_1_checkpoint_becomes_a_plain_description():
    model = load_model(FIXTURES / "title_transformer.ckpt")
    assert model.spec.task == "language_model" and model.spec.net.kind == "gpt"
    assert model.spec.conditions["rating"].kind == "rating_prefix"
    assert "_target_" not in json.dumps(model.spec.to_data())
    assert model.training_index is not None and len(model.training_index) > 100  # its callback state
