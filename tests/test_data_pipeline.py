"""Filtering, the split by record, the token cache, and batches drawn as a function of the step."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from movielab.data import token_cache
from movielab.data.batching import RecordBatching, WindowBatching
from movielab.data.preparation import prepare_token_data
from movielab.data.readers import CsvReader
from movielab.data.split import split_indices
from movielab.data.templates import Template
from movielab.data.token_cache import TokenSplit
from movielab.data.tokenizers import CharTokenizer, TokenizerSpec
from movielab.errors import MovielabError
from tests.test_readers import LETTERBOXD_COLUMNS


def _prepare(path, cache_dir, template=None, reader=None):
    return prepare_token_data(
        path,
        reader or CsvReader(LETTERBOXD_COLUMNS),
        template or Template(),
        TokenizerSpec("char"),
        val_fraction=0.25,
        split_seed=0,
        cache_dir=cache_dir,
    )


def test_rows_without_description_are_skipped_and_counted(movies_csv, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        data = _prepare(movies_csv, tmp_path / "cache")
    assert "skipped 1 of 5 records with no description" in caplog.text
    assert data.train.n_records + data.val.n_records == 4
    assert data.stats["records_skipped"] == {"description": 1}


def test_split_decodes_to_whole_records(movies_csv, tmp_path):
    data = _prepare(movies_csv, tmp_path / "cache")
    texts = [
        data.tokenizer.decode(split.record_tokens(i))
        for split in (data.train, data.val)
        for i in range(split.n_records)
    ]
    assert all(
        t.startswith("The description of the movie named '") and t.endswith("END_OF_MOVIE\n") for t in texts
    )
    assert len(set(texts)) == 4


def test_split_is_by_record_and_deterministic():
    train, val = split_indices(100, 0.1, seed=7)
    assert len(val) == 10 and not set(train) & set(val) and len(set(train) | set(val)) == 100
    again_train, again_val = split_indices(100, 0.1, seed=7)
    assert (train == again_train).all() and (val == again_val).all()
    assert not (split_indices(100, 0.1, seed=8)[1] == val).all()


def test_second_run_reads_the_cache_without_tokenizing(movies_csv, tmp_path, monkeypatch):
    first = _prepare(movies_csv, tmp_path / "cache")

    def refuse(*args, **kwargs):
        raise AssertionError("tokenized again although the cache holds these tokens")

    monkeypatch.setattr(CharTokenizer, "learner", classmethod(refuse))
    monkeypatch.setattr(CharTokenizer, "encode_texts", refuse)
    second = _prepare(movies_csv, tmp_path / "cache")
    assert isinstance(second.train.tokens, np.memmap)
    assert (np.asarray(second.train.tokens) == np.asarray(first.train.tokens)).all()
    assert second.fingerprint == first.fingerprint


def test_cache_key_follows_content_and_template(movies_csv, tmp_path):
    base = _prepare(movies_csv, tmp_path / "cache").fingerprint
    other_template = _prepare(
        movies_csv, tmp_path / "cache", Template("{title}: {description}\n")
    ).fingerprint
    movies_csv.write_text(
        movies_csv.read_text(encoding="utf-8") + "9,Extra,2000,,New plot.,90,3\n", encoding="utf-8"
    )
    other_content = _prepare(movies_csv, tmp_path / "cache").fingerprint
    assert len({base, other_template, other_content}) == 3


def test_content_digest_names_the_tokens_not_the_cache_format_or_the_file_path(
    movies_csv, tmp_path, monkeypatch
):
    base = _prepare(movies_csv, tmp_path / "cache")
    moved = tmp_path / "elsewhere" / "films.csv"
    moved.parent.mkdir()
    shutil.copy(movies_csv, moved)
    monkeypatch.setattr(token_cache, "CACHE_FORMAT", token_cache.CACHE_FORMAT + 1)
    rebuilt = _prepare(moved, tmp_path / "cache")  # a new format: a new cache folder, the same tokens
    assert rebuilt.fingerprint != base.fingerprint
    assert rebuilt.content_digest == base.content_digest
    other_template = _prepare(movies_csv, tmp_path / "cache", Template("{title}: {description}\n"))
    assert other_template.content_digest != base.content_digest


def test_empty_dataset_after_filtering(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("name,description\nA,\nB,\n", encoding="utf-8")
    with pytest.raises(MovielabError, match=r"empty.csv: no records left after filtering .*description"):
        _prepare(path, tmp_path / "cache", reader=CsvReader({"title": "name", "description": "description"}))


def test_one_record_left_is_refused_with_what_was_read(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("name,description\nA,a plot\nB,\n", encoding="utf-8")
    with pytest.raises(MovielabError, match=r"one.csv: 1 record kept of 2 read, .* need at least 2"):
        _prepare(path, tmp_path / "cache", reader=CsvReader({"title": "name", "description": "description"}))


def _stream(n: int = 500) -> TokenSplit:
    tokens = (np.arange(n) % 50).astype(np.uint16)
    return TokenSplit(tokens, np.array([0, n]), {"rating": np.array([np.nan], dtype=np.float32)})


def test_batches_are_a_function_of_seed_and_step():
    batching = WindowBatching(block_size=16, batch_size=4)
    loader = batching.train_loader(_stream(), seed=3)
    first = [b["inputs"] for b in loader]
    again = [b["inputs"] for b in batching.train_loader(_stream(), seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])
    other_seed = next(iter(batching.train_loader(_stream(), seed=4)))["inputs"]
    assert not torch.equal(first[0], other_seed)
    batch = first[0]
    assert batch.shape == (4, 16)


def test_targets_are_inputs_shifted_by_one():
    batch = next(iter(WindowBatching(block_size=16, batch_size=4).train_loader(_stream(), seed=0)))
    assert torch.equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])


def test_restored_loader_continues_with_the_next_step():
    batching = WindowBatching(block_size=8, batch_size=2, steps_per_epoch=6)
    one_loader = batching.train_loader(_stream(), seed=1)
    uninterrupted = [b["inputs"] for _ in range(2) for b in one_loader][:10]
    loader = batching.train_loader(_stream(), seed=1)
    seen = [b["inputs"] for _, b in zip(range(4), loader, strict=False)]
    resumed = batching.train_loader(_stream(), seed=1)
    resumed.load_state_dict(loader.state_dict())
    seen += [b["inputs"] for b in resumed]  # rest of the first epoch
    seen += [b["inputs"] for b in resumed][:4]  # the next epoch
    assert len(seen) == 10
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, seen, strict=True))


def test_validation_windows_are_fixed_and_disjoint():
    batching = WindowBatching(block_size=16, batch_size=4)
    batches = list(batching.val_loader(_stream(200)))
    starts = torch.cat([b["inputs"][:, 0] for b in batches])
    assert sum(b["inputs"].size(0) for b in batches) == (200 - 1) // 16
    assert torch.equal(starts, torch.tensor([(16 * i) % 50 for i in range(len(starts))]))


def test_split_too_short_for_a_window():
    with pytest.raises(MovielabError, match="fewer than block_size"):
        WindowBatching(block_size=64, batch_size=2).train_loader(_stream(30), seed=0)


def _records(lengths: list[int]) -> TokenSplit:
    tokens = np.concatenate([np.arange(1, n + 1) + 100 * i for i, n in enumerate(lengths)]).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ratings = np.arange(len(lengths), dtype=np.float32)
    return TokenSplit(tokens, offsets, {"rating": ratings})


def test_record_batches_pad_mask_and_carry_values():
    split = _records([3, 5, 2])
    batch = next(iter(RecordBatching(batch_size=3).val_loader(split)))  # sorted by length: 2, 0, 1
    assert batch["inputs"].tolist() == [[201, 202, 0, 0], [1, 2, 3, 0], [101, 102, 103, 104]]
    assert batch["targets"].tolist() == [[202, -100, -100, -100], [2, 3, -100, -100], [102, 103, 104, 105]]
    assert batch["padding_mask"].tolist() == [
        [True, True, False, False],
        [True, True, True, False],
        [True, True, True, True],
    ]
    assert batch["rating"].tolist() == [2.0, 0.0, 1.0]


def test_record_epochs_cover_every_record_once_in_length_sorted_batches():
    lengths = list(np.random.default_rng(0).integers(2, 30, size=200))
    split = _records(lengths)
    batching = RecordBatching(batch_size=10, pool_batches=5)
    loader = batching.train_loader(split, seed=1)
    assert len(loader) == 20
    batches = list(loader)
    seen = np.concatenate([b["rating"].numpy() for b in batches]).astype(int)
    assert sorted(seen) == list(range(200))
    padding = sum(int((~b["padding_mask"]).sum()) for b in batches)
    unsorted = sum(
        max(lengths[i] for i in chunk) * 10 - sum(lengths[i] for i in chunk)
        for chunk in np.array_split(np.random.default_rng(2).permutation(200), 20)
    )
    assert padding < unsorted / 2  # bucketing saves most of the padding a random batching has
    again = [b["inputs"] for b in batching.train_loader(split, seed=1)]
    assert all(torch.equal(a["inputs"], b) for a, b in zip(batches, again, strict=True))
    next_epoch = list(loader)
    assert not torch.equal(next_epoch[0]["inputs"], batches[0]["inputs"])


def test_record_batches_shard_across_ranks():
    split = _records([4] * 40)
    batching = RecordBatching(batch_size=5)
    per_rank = [
        np.concatenate(
            [b["rating"].numpy() for b in batching.train_loader(split, seed=0, rank=r, world_size=2)]
        )
        for r in (0, 1)
    ]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert len(set(per_rank[0]) | set(per_rank[1])) == 40
