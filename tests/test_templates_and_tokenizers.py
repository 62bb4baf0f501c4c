"""Templates render and prompt; the char tokenizer round-trips and handles unseen characters."""

from __future__ import annotations

import json

import pytest

from movielab.data.records import Record
from movielab.data.templates import Template
from movielab.data.tokenizers import CharTokenizer, TokenizerSpec, tokenizer_from_state
from movielab.errors import MovielabError


def test_description_template_renders_the_reference_format():
    text = Template().render(Record(title="Up", description="A house flies."))
    assert text == "The description of the movie named 'Up' is:\nA house flies.\nEND_OF_MOVIE\n"


def test_prompt_stops_at_first_missing_field():
    template = Template()
    assert template.prompt(title="Up") == "The description of the movie named 'Up' is:\n"
    assert template.prompt() == "The description of the movie named '"
    assert Template("{title} ({year:d})").prompt(title="Up", year=2009) == "Up (2009)"


def test_template_rejects_unknown_fields():
    with pytest.raises(MovielabError, match=r"unknown field\(s\) \['plot'\]"):
        Template("{plot}")


def test_char_tokenizer_round_trip_and_unknown():
    tokenizer = CharTokenizer.train(["hello world", "Café"])
    text = "hello Café"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert len(ids) == len(text)
    unseen = tokenizer.encode("hez!")
    assert unseen[2] == 0 and unseen[3] == 0 and unseen[0] != 0
    assert tokenizer.decode(unseen) == "he\ufffd\ufffd"


def test_tokenizer_state_survives_json(tmp_path):
    tokenizer = TokenizerSpec("char").train(["abc\n'é"])
    tokenizer.save(tmp_path / "tokenizer.json")
    restored = tokenizer_from_state(json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8")))
    assert restored.vocab_size == tokenizer.vocab_size
    assert (restored.encode("cab'é\n") == tokenizer.encode("cab'é\n")).all()


def test_unknown_tokenizer_kind():
    with pytest.raises(MovielabError, match="unknown tokenizer kind 'bytes'"):
        TokenizerSpec("bytes")
