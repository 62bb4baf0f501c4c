"""Title data: the IMDb TSV join, the IMDB 5000 CSV, the sentencepiece tokenizer and its cache."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from movielab.data.datamodule import TextDataModule
from movielab.data.preparation import prepare_token_data
from movielab.data.readers import CsvReader, ImdbTsvReader
from movielab.data.templates import Template
from movielab.data.text_data import bundled_sample
from movielab.data.tokenizers import SentencePieceTokenizer, TokenizerSpec, tokenizer_from_state
from movielab.errors import MovielabError
from tests.conftest import shared_file

BASICS = [
    "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres",
    'tt0000010\tmovie\tThe "Salt" Orchard\tLe Verger\t0\t1987\t\\N\t95\tDrama,Romance',
    "tt0000011\tmovie\tKessler Station\tKessler Station\t0\t\\N\t\\N\t\\N\t\\N",
    "tt0000012\tshort\tPaper Lanterns\tPaper Lanterns\t0\t2019\t\\N\t9\tShort",
    "tt0000013\tmovie\tNobody Rated This\tNobody Rated This\t0\t2001\t\\N\t90\tComedy",
    "tt0000014\tmovie\tFew Votes\tFew Votes\t0\t2002\t\\N\t90\tHorror",
    "tt0000015\tmovie\t\\N\t\\N\t0\t2003\t\\N\t90\tDrama",
]
RATINGS = [
    "tconst\taverageRating\tnumVotes",
    "tt0000015\t5.0\t300",
    "tt0000014\t2.1\t4",
    "tt0000012\t7.7\t1200",
    "tt0000011\t10.0\t150",
    "tt0000010\t6.4\t2500",
]


@pytest.fixture
def imdb_tsv(tmp_path):
    (tmp_path / "title.basics.tsv").write_text("\n".join(BASICS) + "\n", encoding="utf-8")
    (tmp_path / "title.ratings.tsv").write_text("\n".join(RATINGS) + "\n", encoding="utf-8")
    return tmp_path / "title.basics.tsv"


def test_tsv_join_keeps_rated_movies_and_reads_nulls(imdb_tsv, caplog):
    with caplog.at_level(logging.INFO):
        records = list(ImdbTsvReader(min_votes=10).read(imdb_tsv))
    assert [(r.title, r.year, r.rating, r.genres) for r in records] == [
        ('The "Salt" Orchard', 1987, 6.4, ("Drama", "Romance")),  # quotes are text: no CSV quoting
        ("Kessler Station", None, 10.0, ()),  # \N year and genres
        (None, 2003, 5.0, ("Drama",)),  # \N title: left for the template filter to count
    ]
    assert records[0].line == 2
    assert "skipped 2 titles (no rating with at least data.reader.min_votes=10 votes)" in caplog.text
    assert "skipped 1 titles (titleType not in data.reader.title_types=['movie'])" in caplog.text
    assert len(list(ImdbTsvReader().read(imdb_tsv))) == 4  # Few Votes is back without min_votes
    shorts = list(ImdbTsvReader(title_types=["short"], title_column="originalTitle").read(imdb_tsv))
    assert [(r.title, r.rating) for r in shorts] == [("Paper Lanterns", 7.7)]
    unrated = list(ImdbTsvReader(require_rating=False).read(imdb_tsv))
    assert ("Nobody Rated This", None) in [(r.title, r.rating) for r in unrated]


def test_tsv_errors_name_the_file_and_line(imdb_tsv, tmp_path):
    (tmp_path / "title.ratings.tsv").unlink()
    with pytest.raises(MovielabError, match="ratings file not found: .*title.ratings.tsv"):
        list(ImdbTsvReader().read(imdb_tsv))
    bad = tmp_path / "bad.tsv"
    bad.write_text(BASICS[0] + "\ntt1\tmovie\tCut Short\n", encoding="utf-8")
    (tmp_path / "title.ratings.tsv").write_text("\n".join(RATINGS) + "\n", encoding="utf-8")
    with pytest.raises(MovielabError, match=r"bad.tsv:2: 3 tab-separated fields, the header has 9"):
        list(ImdbTsvReader().read(bad))


def test_the_ratings_file_is_part_of_the_cache_key(imdb_tsv, tmp_path):
    def fingerprint():
        return prepare_token_data(
            imdb_tsv,
            ImdbTsvReader(),
            Template("{title}<end>", "<end>"),
            TokenizerSpec("char"),
            0.3,
            0,
            tmp_path,
        ).fingerprint

    before = fingerprint()
    (tmp_path / "title.ratings.tsv").write_text("\n".join([*RATINGS[:-1], "tt0000010\t6.5\t2500"]) + "\n")
    assert fingerprint() != before


def test_the_shared_imdb_tsv_pair_loads():
    basics = shared_file("imdb/title.basics.tsv")
    movies = list(ImdbTsvReader().read(basics))
    assert len(movies) >= 1 and all(r.title and 0 <= r.rating <= 10 for r in movies)
    shorts = list(ImdbTsvReader(title_types=["short"]).read(basics))
    assert len(shorts) > 100 and all(r.title and r.rating is not None for r in shorts)


def test_imdb5000_titles_lose_their_trailing_non_breaking_space():
    reader = CsvReader({"title": "movie_title", "rating": "imdb_score", "genres": "genres"})
    sample = list(reader.read(bundled_sample("imdb_titles_sample.csv")))
    assert len(sample) >= 300 and all(r.title == r.title.strip() for r in sample)
    assert len({round(r.rating) for r in sample}) >= 5  # ratings vary across the scale
    real = list(reader.read(shared_file("imdb/movie_metadata.csv")))
    assert len(real) == 5043 and not any(r.title.endswith("\xa0") for r in real)
    assert min(r.rating for r in real) >= 1.0 and real[0].genres


TITLES = [
    f"{a} {b}<end>"
    for a in ("The Salt", "Paper", "Kessler", "Café")
    for b in ("Orchard", "Lanterns", "Station")
]


def test_sentencepiece_round_trip_and_state_are_plain_json():
    tokenizer = TokenizerSpec("sentencepiece", {"vocab_size": 60, "user_defined_symbols": ["<end>"]}).train(
        TITLES
    )
    assert tokenizer.vocab_size <= 60
    for text in ["The Salt Orchard<end>", "Café Lanterns<end>", "Paper Station"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    end = tokenizer.encode("<end>")
    assert len(end) == 1 and tokenizer.encode("Paper Orchard<end>")[-1] == end[0]  # one stop token
    state = json.loads(json.dumps(tokenizer.to_state()))
    again = tokenizer_from_state(state)
    assert isinstance(again, SentencePieceTokenizer)
    assert (again.encode("Kessler Orchard<end>") == tokenizer.encode("Kessler Orchard<end>")).all()
    unigram = TokenizerSpec("sentencepiece", {"vocab_size": 40, "model_type": "unigram"}).train(TITLES)
    assert unigram.decode(unigram.encode("Paper Station")) == "Paper Station"
    with pytest.raises(MovielabError, match="model_type='wordpiece' is not one of bpe, unigram"):
        TokenizerSpec("sentencepiece", {"model_type": "wordpiece"}).train(TITLES)


def test_a_second_prepare_reuses_the_trained_sentencepiece_model(tmp_path, monkeypatch):
    def datamodule():
        return TextDataModule(
            reader=CsvReader({"title": "movie_title", "rating": "imdb_score"}),
            template=Template("{title}<end>", "<end>"),
            tokenizer=TokenizerSpec("sentencepiece", {"vocab_size": 300, "user_defined_symbols": ["<end>"]}),
            batching=None,
            sample="imdb_titles_sample.csv",
            cache_dir=str(tmp_path),
            rating_scale=[0, 10],
        )

    seen = []
    original = SentencePieceTokenizer._train_model.__func__

    def recording(cls, texts, *args):
        seen.extend(texts)
        return original(cls, texts, *args)

    monkeypatch.setattr(SentencePieceTokenizer, "_train_model", classmethod(recording))
    first = datamodule().prepare()
    assert len(seen) == first.stats["train_records"]  # trained on the training split only

    def refuse(*args, **kwargs):
        raise AssertionError("trained sentencepiece again although the cache holds its model")

    monkeypatch.setattr(SentencePieceTokenizer, "learner", classmethod(refuse))
    second = datamodule().prepare()
    assert second.fingerprint == first.fingerprint
    assert second.tokenizer.to_state() == first.tokenizer.to_state()
    assert np.array_equal(np.asarray(second.train.tokens), np.asarray(first.train.tokens))
    assert first.stats["train_records"] > 300 and first.stats["val_records"] >= 30


def test_ratings_outside_the_stated_scale_are_an_error(tmp_path):
    path = tmp_path / "titles.csv"
    path.write_text(
        "title,score\nThe Salt Orchard,7\nPaper Lanterns,85\nKessler Station,3\n", encoding="utf-8"
    )
    module = TextDataModule(
        reader=CsvReader({"title": "title", "rating": "score"}),
        template=Template("{title}<end>", "<end>"),
        tokenizer=TokenizerSpec("char"),
        batching=None,
        path=str(path),
        cache_dir=str(tmp_path / "cache"),
        rating_scale=[0, 10],
        val_fraction=0.34,
    )
    with pytest.raises(MovielabError, match=r"titles.csv: rating 85 is outside data.rating_scale=\[0, 10\]"):
        module.prepare()


def test_letterboxd_titles_use_the_star_scale(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    cfg = compose_config(tmp_path, ["experiment=title_transformer", "data=letterboxd_titles"])
    assert cfg.data.rating_scale == [0.5, 5.0]  # the model's scale is bound from it
    data = instantiate(cfg.data).prepare()
    ratings = np.concatenate([data.train.values["rating"], data.val.values["rating"]])
    assert np.nanmin(ratings) >= 0.5 and np.nanmax(ratings) <= 5.0
    assert data.tokenizer.kind == "sentencepiece"
