"""The fortune-file reader and the length filter that reports what it drops."""

from __future__ import annotations

import logging

import numpy as np

from movielab.data.preparation import drop_by_length, prepare_token_data
from movielab.data.readers import FortunesReader, TextFileReader
from movielab.data.templates import Template
from movielab.data.token_cache import TokenSplit
from movielab.data.tokenizers import TokenizerSpec
from tests.conftest import shared_file

FORTUNES = """\
Never trust a clock that agrees with you.
%
The kettle never boils
while you are explaining why it should.
    -- Margit Olloway
%
Courage -- mostly -- is finishing the sentence.
%
    -- Nobody At All
%

%
A lamp is a small promise.
  -- Ludo Varn
  -- his cousin
%
"""


def test_entries_are_split_on_percent_lines_and_joined(tmp_path):
    path = tmp_path / "fortunes"
    path.write_text(FORTUNES, encoding="utf-8")
    records = list(FortunesReader().read(path))
    texts = [r.text for r in records]
    assert texts == [
        "Never trust a clock that agrees with you.",
        "The kettle never boils while you are explaining why it should.",
        "Courage -- mostly -- is finishing the sentence.",  # a dash inside a line is text
        None,  # only an attribution: no sentence, counted as skipped by preparation
        None,  # an empty entry
        "A lamp is a small promise.",  # both trailing attribution lines stripped
    ]
    assert [r.line for r in records] == [1, 3, 7, 9, 11, 13]


def test_attribution_and_lines_can_be_kept(tmp_path):
    path = tmp_path / "fortunes"
    path.write_text(FORTUNES, encoding="utf-8")
    records = list(FortunesReader(strip_attribution=False, join_lines=False).read(path))
    assert records[1].text == (
        "The kettle never boils\nwhile you are explaining why it should.\n    -- Margit Olloway"
    )
    assert records[3].text == "    -- Nobody At All"


def test_last_entry_without_a_closing_percent_is_read(tmp_path):
    path = tmp_path / "fortunes"
    path.write_text("One.\n%\nTwo, at the very end.", encoding="utf-8")
    assert [r.text for r in FortunesReader().read(path)] == ["One.", "Two, at the very end."]


def test_line_per_sentence_file_reads_one_record_per_line(tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_text("First sentence.\n\nSecond one.\nThird.\n", encoding="utf-8")
    assert [r.text for r in TextFileReader(unit="line").read(path)] == [
        "First sentence.",
        "Second one.",
        "Third.",
    ]


def test_drop_by_length_keeps_tokens_offsets_and_values_aligned():
    lengths = np.array([3, 0, 5, 2])
    tokens = np.arange(lengths.sum(), dtype=np.uint16)
    split = TokenSplit(tokens, np.concatenate([[0], np.cumsum(lengths)]), {"rating": np.arange(4.0)})
    kept, counts = drop_by_length(split, max_tokens=3)
    assert counts == {"no tokens": 1, "longer than max_tokens=3": 1}
    assert kept.n_records == 2
    assert kept.record_tokens(0).tolist() == [0, 1, 2]
    assert kept.record_tokens(1).tolist() == [8, 9]  # the fourth record, after the dropped ones
    assert kept.values["rating"].tolist() == [0.0, 3.0]
    unchanged, none = drop_by_length(split, max_tokens=None)
    assert unchanged.n_records == 3 and none == {"no tokens": 1}


def test_preparation_reports_what_the_length_filter_dropped(tmp_path, caplog):
    path = tmp_path / "fortunes"
    short = [f"Short fortune number {i}." for i in range(30)]
    long = [" ".join(["word"] * 40) + "." for _ in range(10)]
    path.write_text("%\n".join(f"{text}\n" for text in short + long), encoding="utf-8")

    def prepare(max_tokens):
        return prepare_token_data(
            path,
            FortunesReader(),
            Template("<start> {text} <end>", stop="<end>"),
            TokenizerSpec("word", {"specials": ["<pad>", "<start>", "<end>"]}),
            val_fraction=0.2,
            split_seed=0,
            cache_dir=tmp_path / "cache",
            max_tokens=max_tokens,
        )

    with caplog.at_level(logging.INFO):
        data = prepare(max_tokens=16)
    dropped = data.stats["records_dropped"]
    reason = "longer than max_tokens=16"
    assert dropped["train"].get(reason, 0) + dropped["val"].get(reason, 0) == 10
    assert data.train.n_records + data.val.n_records == 30
    assert data.train.lengths.max() <= 16
    assert "records: longer than max_tokens=16" in caplog.text
    assert prepare(max_tokens=None).train.n_records + prepare(max_tokens=None).val.n_records == 40


def test_real_fortunes_file_reads_thousands_of_sentences_without_attributions():
    records = list(FortunesReader().read(shared_file("fortunes/fortunes.txt")))
    texts = [r.text for r in records if r.text]
    assert len(texts) > 5000
    assert not any(line.strip().startswith("--") for text in texts for line in text.splitlines())
    assert all("\n" not in text for text in texts)
