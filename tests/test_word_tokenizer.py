"""The word tokenizer (punctuation table, frequency order, min_freq, specials) and script reading."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from movielab.data.readers import TextFileReader
from movielab.data.templates import Template
from movielab.data.text_data import bundled_sample
from movielab.data.tokenizers import TokenizerSpec, WordTokenizer, tokenizer_from_state
from movielab.errors import MovielabError
from tests.conftest import shared_file

SCRIPT = (
    'kramer: (bursting in) jerry! you got any "artisanal" mustard?\n\n'
    "jerry: no. i have regular mustard, like a regular person; and--\n\n"
    "kramer: regular... okay, okay.\n\n"
)


def test_punctuation_becomes_tokens_as_in_the_reference_table():
    tokenizer = WordTokenizer.train([SCRIPT])
    assert tokenizer.words(SCRIPT)[:10] == [
        "kramer:",
        "||left_parentheses||",
        "bursting",
        "in",
        "||right_parentheses||",
        "jerry",
        "||exclamation_mark||",
        "you",
        "got",
        "any",
    ]
    words = tokenizer.words(SCRIPT)
    for token in ("||quotation_mark||", "||question_mark||", "||return||", "||period||", "||comma||"):
        assert token in words
    assert "||semicolon||" in words and "||dash||" in words
    assert words.count("||return||") == 6  # a blank line after each utterance = two returns
    assert words.count("||period||") == 5  # "..." is three periods


def test_decode_round_trips_to_readable_script_text():
    tokenizer = WordTokenizer.train([SCRIPT])
    ids = tokenizer.encode(SCRIPT)
    assert tokenizer.decode(ids) == SCRIPT
    assert not (ids == tokenizer.unknown_id).any()


def test_any_token_sequence_survives_decode_then_encode():
    tokenizer = WordTokenizer.train([SCRIPT])
    rng = np.random.default_rng(0)
    for _ in range(50):
        ids = rng.integers(0, tokenizer.vocab_size, size=30)
        assert tokenizer.encode(tokenizer.decode(ids)).tolist() == ids.tolist()


def test_vocabulary_is_sorted_by_frequency_and_min_freq_maps_rare_words_to_unknown():
    texts = ["the cat the dog. the cat", "a zebra."]
    tokenizer = WordTokenizer.train(texts, min_freq=2)
    assert tokenizer.vocab == ["<unknown>", "the", "cat", "||period||"]  # ties: first seen first
    assert "zebra" not in tokenizer.vocab and "dog" not in tokenizer.vocab
    ids = tokenizer.encode("the zebra.")
    assert ids.tolist() == [tokenizer.token_id("the"), tokenizer.unknown_id, tokenizer.token_id("||period||")]
    assert tokenizer.decode(ids) == "the <unknown>."
    assert WordTokenizer.train(texts, max_size=3).vocab == ["<unknown>", "the", "cat"]
    with pytest.raises(MovielabError, match="min_freq"):
        WordTokenizer.train(texts, min_freq=0)


def test_special_tokens_come_first_and_encode_from_text():
    specials = ["<pad>", "<start>", "<end>", "<unknown>"]
    tokenizer = WordTokenizer.train(["<start> hello there. <end>"], specials=specials)
    assert tokenizer.vocab[:4] == specials
    assert tokenizer.token_id("<pad>") == 0 and tokenizer.unknown_id == 3
    ids = tokenizer.encode("<start> hello, stranger. <end>")
    assert ids[0] == 1 and ids[-1] == 2
    assert ids[3] == tokenizer.unknown_id  # "stranger" was never seen
    assert tokenizer.vocab.count("<start>") == 1  # seen in the text and special: listed once


def test_lowercase_is_an_option():
    assert WordTokenizer.train(["Hello Newman."]).words("Hello Newman.") == ["hello", "newman", "||period||"]
    cased = WordTokenizer.train(["Hello Newman."], lowercase=False)
    assert cased.decode(cased.encode("Hello Newman.")) == "Hello Newman."


def test_state_is_json_and_rebuilds_the_same_tokenizer():
    spec = TokenizerSpec(kind="word", options={"min_freq": 1, "specials": ["<pad>"]})
    tokenizer = spec.train([SCRIPT])
    rebuilt = tokenizer_from_state(json.loads(json.dumps(tokenizer.to_state())))
    assert isinstance(rebuilt, WordTokenizer)
    assert rebuilt.vocab == tokenizer.vocab and rebuilt.unknown_id == tokenizer.unknown_id
    assert rebuilt.encode(SCRIPT).tolist() == tokenizer.encode(SCRIPT).tolist()


def test_script_reader_groups_consecutive_utterances_and_keeps_every_line(tmp_path):
    path = tmp_path / "script.txt"
    path.write_text("a: one \n\nb: two\n\na: three\n\nb: four\n\nc: five\n", encoding="utf-8")
    records = list(TextFileReader(units_per_record=2).read(path))
    assert [r.text for r in records] == ["a: one \n\nb: two", "a: three\n\nb: four", "c: five"]
    assert [r.line for r in records] == [1, 5, 9]
    with pytest.raises(MovielabError, match="units_per_record"):
        TextFileReader(units_per_record=0)


def _script_stream_matches_file(path):
    """The records rendered with the seinfeld template give back the file's own token stream
    (without its control characters, which every reader removes: readers/lines.py)."""
    template = Template("{text}\n\n", stop=None)
    records = list(TextFileReader(units_per_record=10).read(path))
    text = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", "", path.read_text(encoding="utf-8"))
    tokenizer = WordTokenizer.train([text])
    whole = tokenizer.encode(text)
    rendered = np.concatenate([tokenizer.encode(template.render(r)) for r in records])
    assert rendered.tolist() == whole.tolist()
    return tokenizer, whole


def test_bundled_script_sample_is_read_whole():
    tokenizer, tokens = _script_stream_matches_file(bundled_sample("tv_script_sample.txt"))
    assert tokenizer.vocab[tokens[0]].endswith(":")  # it starts with a speaker


def test_seinfeld_file_is_read_whole_from_its_first_word():
    path = shared_file("seinfeld/Seinfeld_Scripts.txt")
    tokenizer, tokens = _script_stream_matches_file(path)
    assert tokenizer.decode(tokens[:4]) == "jerry: do you know"  # the reference dropped these
    assert len(tokens) > 850_000
    assert "jerry\x92s message" in path.read_text(encoding="utf-8")  # one of 9 removed characters
