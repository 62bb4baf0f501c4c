"""Streaming preparation: chunked and spilled, it gives exactly what preparing everything in memory
gives (split, vocabulary, tokens, values, drops), whatever the chunk sizes; it reports progress,
notices a file that changes while it is read, and leaves nothing behind but the cache."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from movielab.data import preparation
from movielab.data.genres import GenreVocabulary
from movielab.data.preparation import prepare_token_data
from movielab.data.readers import CsvReader, FortunesReader
from movielab.data.readers import lines as lines_module
from movielab.data.readers.base import FileReader
from movielab.data.split import split_indices
from movielab.data.templates import Template
from movielab.data.text_data import bundled_sample
from movielab.data.tokenizers import TokenizerSpec
from movielab.data.tokenizers import sentencepiece as sentencepiece_module
from movielab.errors import MovielabError

LETTERBOXD = CsvReader({"title": "name", "description": "description", "year": "date", "rating": "rating"})
IMDB_TITLES = CsvReader({"title": "movie_title", "rating": "imdb_score", "genres": "genres"})
CASES = {
    "char descriptions": (
        "letterboxd_sample.csv", LETTERBOXD, Template(), TokenizerSpec("char"), 1, None,
    ),
    "word sentences, length drops": (
        "fortunes_sample.txt", FortunesReader(), Template("<start> {text} <end>", "<end>"),
        TokenizerSpec("word", {"min_freq": 2, "specials": ["<pad>", "<start>", "<end>"]}), 1, 12,
    ),
    "sentencepiece titles, genres": (
        "imdb_titles_sample.csv", IMDB_TITLES, Template("{title}<end>", "<end>"),
        TokenizerSpec("sentencepiece", {"vocab_size": 200, "user_defined_symbols": ["<end>"]}), 20, 8,
    ),
}  # fmt: skip


def in_memory_reference(path, reader, template, spec, genre_min_count, max_tokens):
    """Preparation as it was before streaming: every record, text and id array in memory."""
    records = [
        r for r in reader.read(path, required=template.fields) if all(r.has(f) for f in template.fields)
    ]
    train_idx, val_idx = split_indices(len(records), 0.1, 3)
    texts = [template.render(r) for r in records]
    tokenizer = spec.train([texts[i] for i in train_idx])
    genres = GenreVocabulary.from_genre_lists([records[i].genres for i in train_idx], genre_min_count)
    splits = {}
    for name, indices in (("train", train_idx), ("val", val_idx)):
        encoded = [tokenizer.encode(texts[i]) for i in indices]
        keep = [i for i, ids in zip(indices, encoded, strict=True) if 0 < len(ids) <= (max_tokens or 10**9)]
        ids = [tokenizer.encode(texts[i]) for i in keep]
        ratings = np.array([np.nan if records[i].rating is None else records[i].rating for i in keep], "f4")
        splits[name] = (
            np.concatenate(ids),
            np.concatenate([[0], np.cumsum([len(x) for x in ids])]),
            ratings,
            genres.multi_hot([records[i].genres for i in keep]) if genres else None,
        )
    return tokenizer, genres, splits


def _prepare(tmp_path, case, **kwargs):
    sample, reader, template, spec, genre_min_count, max_tokens = CASES[case]
    return prepare_token_data(
        bundled_sample(sample), reader, template, spec, val_fraction=0.1, split_seed=3,
        cache_dir=tmp_path / "cache", genre_min_count=genre_min_count, max_tokens=max_tokens, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("chunked", [False, True])
def test_streamed_preparation_equals_preparing_everything_in_memory(tmp_path, monkeypatch, case, chunked):
    if chunked:  # chunks of a few records, value blocks of 3 records, 64-byte read blocks
        monkeypatch.setattr(preparation, "CHUNK_BYTES", 100)
        monkeypatch.setattr(preparation, "RECORD_BLOCK", 3)
        monkeypatch.setattr(lines_module, "BLOCK_SIZE", 64)
    data = _prepare(tmp_path, case)
    sample, *arguments = CASES[case]
    tokenizer, genres, splits = in_memory_reference(bundled_sample(sample), *arguments)
    assert data.tokenizer.to_state() == tokenizer.to_state()
    assert data.stats["genres"] == list(genres.names)
    for name in ("train", "val"):
        tokens, offsets, ratings, hot = splits[name]
        split = getattr(data, name)
        assert np.array_equal(np.asarray(split.tokens), tokens)
        assert np.array_equal(split.offsets, offsets)
        assert np.array_equal(split.values["rating"], ratings, equal_nan=True)
        if hot is not None:
            assert np.array_equal(split.values["genres"], hot) and hot.any()
        else:
            assert "genres" not in split.values
    if CASES[case][-1]:
        dropped = data.stats["records_dropped"]
        assert sum(dropped["train"].values()) + sum(dropped["val"].values()) > 0


def test_chunk_sizes_do_not_change_the_cache_contents(tmp_path, monkeypatch):
    whole = _prepare(tmp_path / "a", "sentencepiece titles, genres")
    monkeypatch.setattr(preparation, "CHUNK_BYTES", 1)  # one record a chunk
    monkeypatch.setattr(preparation, "RECORD_BLOCK", 1)
    one_by_one = _prepare(tmp_path / "b", "sentencepiece titles, genres")
    assert one_by_one.fingerprint == whole.fingerprint and one_by_one.stats == whole.stats
    names = sorted(os.listdir(tmp_path / "a" / "cache" / whole.fingerprint))
    for name in names:
        if name != "meta.json":
            a = (tmp_path / "a" / "cache" / whole.fingerprint / name).read_bytes()
            assert a == (tmp_path / "b" / "cache" / whole.fingerprint / name).read_bytes(), name


def test_nothing_but_the_cache_folder_is_left(tmp_path):
    data = _prepare(tmp_path, "char descriptions")
    assert os.listdir(tmp_path / "cache") == [data.fingerprint]
    assert sorted(os.listdir(tmp_path / "cache" / data.fingerprint)) == sorted(
        [f"{s}.{f}.bin" for s in ("train", "val") for f in ("tokens", "offsets", "rating")]
        + ["meta.json", "tokenizer.json"]
    )


def test_progress_lines_give_records_per_second_and_stay_quiet_by_default(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="movielab.data.preparation"):
        _prepare(tmp_path / "quiet", "char descriptions")
    quiet = [r.getMessage() for r in caplog.records]
    assert not any("learning the vocabulary" in line or ": encoding" in line for line in quiet)
    assert any("(prepared in " in line and "records/s)" in line for line in quiet)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="movielab.data.preparation"):
        _prepare(tmp_path / "loud", "char descriptions", progress_seconds=0)
    loud = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("letterboxd_sample.csv: learning the vocabulary: 310 of 310 records (")
        for line in loud
    )
    assert any(line.startswith("letterboxd_sample.csv: encoding: 310 of 310 records (") for line in loud)
    assert all(line.endswith(" records/s)") for line in loud if "of 310 records" in line)


def test_a_file_that_changes_while_read_is_an_error(tmp_path):
    path = tmp_path / "films.csv"
    path.write_text(
        "name,description\n" + "".join(f"Film {i},Plot {i}.\n" for i in range(50)), encoding="utf-8"
    )

    class AppendingReader(FileReader):
        """Reads the file while another program appends to it."""

        def read(self, path, required=()):
            for number, record in enumerate(
                CsvReader({"title": "name", "description": "description"}).read(path)
            ):
                if number == 10:
                    with open(path, "a", encoding="utf-8") as handle:
                        handle.write("Late,Written while read.\n")
                yield record

    with pytest.raises(MovielabError, match=r"films.csv changed while it was being read \(\d+ -> \d+ bytes"):
        prepare_token_data(path, AppendingReader(), Template(), TokenizerSpec("char"), 0.1, 0, tmp_path / "c")
    assert os.listdir(tmp_path / "c") == []  # no cache, no staging left


def test_genres_below_min_count_are_counted(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        data = _prepare(tmp_path, "sentencepiece titles, genres")
    stats = data.stats
    below, kept = stats["genres_below_min_count"], len(stats["genres"])
    assert below > 0 and kept > 0 and stats["genre_min_count"] == 20
    assert set(stats["genre_counts"]) == set(stats["genres"]) and min(stats["genre_counts"].values()) >= 20
    assert (
        f"{below} genres fell below genre_min_count=20 (fewer training records) and are left out"
        in caplog.text
    )
    everything = prepare_token_data(
        bundled_sample("imdb_titles_sample.csv"), IMDB_TITLES, Template("{title}<end>", "<end>"),
        TokenizerSpec("char"), 0.1, 3, tmp_path / "all", genre_min_count=1,
    )  # fmt: skip
    assert len(everything.stats["genres"]) == below + kept  # the same training split's genres


def test_sentencepiece_learns_from_a_fixed_bounded_sample(monkeypatch):
    seen: list[list[str]] = []
    monkeypatch.setattr(
        sentencepiece_module.SentencePieceTokenizer,
        "_train_model",
        classmethod(lambda cls, t, *a: seen.append(t)),
    )
    texts = [f"title number {i}" for i in range(50)]
    for _ in range(2):
        learner = TokenizerSpec("sentencepiece", {"input_sentence_size": 7}).learner(len(texts))
        for start in range(0, 50, 6):
            learner.add(texts[start : start + 6])
        learner.finish()
    assert len(seen[0]) == 7 and seen[0] == seen[1] and len(set(seen[0])) == 7
    assert seen[0] != texts[:7]  # drawn from the whole set, not the first ones
    learner = TokenizerSpec("sentencepiece").learner(len(texts))
    learner.add(texts)
    learner.finish()
    assert seen[2] == texts  # fewer texts than the bound: all of them, in order
