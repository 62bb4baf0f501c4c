"""Plots with genres: each source format read from small inline files, genre names normalised, the
genre vocabulary built from the training split and stored in the token cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra.utils import instantiate

from movielab.data.genres import GenreVocabulary, normalize_genres
from movielab.data.preparation import prepare_token_data
from movielab.data.readers.cmu_summaries import CmuSummaryReader
from movielab.data.templates import Template
from movielab.data.tokenizers import TokenizerSpec
from movielab.errors import MovielabError
from tests.conftest import compose_config, shared_file


def reader_of(tmp_path, data_config: str):
    """The reader exactly as conf/data/<data_config>.yaml builds it."""
    return instantiate(compose_config(tmp_path, [f"data={data_config}"]).data.reader)


def test_genre_names_are_normalised_across_sources():
    assert normalize_genres(["Sci-Fi"]) == normalize_genres(["science fiction"]) == ("science fiction",)
    assert normalize_genres(["Science-Fiction", " SCI FI "]) == ("science fiction",)
    assert normalize_genres(["Romance Film", "Comedy film"]) == ("romance", "comedy")
    assert normalize_genres(["Action/Adventure", "crime fiction"]) == ("action", "adventure", "crime")
    assert normalize_genres(["comedy, drama", "Drama", "unknown", "N/A", ""]) == ("comedy", "drama")
    assert normalize_genres(["Film-Noir"]) == ("film noir",)  # a leading "film" stays


def test_vocabulary_comes_from_training_lists_and_ignores_unknown_genres():
    vocabulary = GenreVocabulary.from_genre_lists([["Drama", "Sci-Fi"], ["drama"], ["Western"]], min_count=1)
    assert vocabulary.names == ("drama", "science fiction", "western")
    frequent = GenreVocabulary.from_genre_lists([["Drama", "Sci-Fi"], ["drama"], ["Western"]], min_count=2)
    assert frequent.names == ("drama",)
    hot = vocabulary.multi_hot([["Science Fiction", "Horror"], [], ["western", "DRAMA"]])
    assert hot.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 1]]  # horror is unknown: ignored


def test_unknown_requested_genre_is_one_line_listing_the_known_ones():
    vocabulary = GenreVocabulary(("comedy", "drama", "horror"))
    assert vocabulary.require_known(["Horror", "comedy"]) == ("horror", "comedy")
    with pytest.raises(
        MovielabError, match=r"^genres: unknown genre\(s\) musical; this model knows: comedy, drama, horror$"
    ):
        vocabulary.require_known(["horror", "musical"])


def test_imdb1000_csv(tmp_path):
    path = tmp_path / "IMDB-Movie-Data.csv"
    path.write_text(
        "Rank,Title,Genre,Description,Director,Actors,Year,Runtime (Minutes),Rating,Votes,"
        "Revenue (Millions),Metascore\n"
        '1,Orbit Nine,"Action,Adventure,Sci-Fi","A pilot, a thief and a ""robot"" steal a moon.",'
        'A B,"C D, E F",2014,121,8.1,7,3.1,76\n'
        '2,Quiet Hours,Drama,"Two sisters wait,\nand wait.",G H,I J,2012,124,,8,,\n'
        "3,No Genre,,A film with no listed genre.,K L,M N,2010,90,5.5,9,1.0,40\n",
        encoding="utf-8",
    )
    records = list(reader_of(tmp_path, "imdb1000_plots").read(path, required=("title", "description")))
    assert [r.title for r in records] == ["Orbit Nine", "Quiet Hours", "No Genre"]
    assert records[0].genres == ("Action", "Adventure", "Sci-Fi")
    assert records[0].description == 'A pilot, a thief and a "robot" steal a moon.'
    assert records[0].rating == 8.1 and records[0].year == 2014
    assert records[1].description == "Two sisters wait,\nand wait." and records[1].rating is None
    assert records[2].genres == ()


def test_imdb5000_csv_strips_the_non_breaking_space(tmp_path):
    path = tmp_path / "movie_metadata.csv"
    path.write_text(
        "color,movie_title,genres,plot_keywords,imdb_score,title_year\n"
        "Color,Orbit Nine\u00a0,Action|Adventure|Sci-Fi,moon|robot|heist,7.9,2009\n"
        "Color,Quiet Hours\u00a0,Drama,,6.1,\n",
        encoding="utf-8",
    )
    records = list(reader_of(tmp_path, "imdb5000_keywords").read(path, required=("title",)))
    assert records[0].title == "Orbit Nine"
    assert records[0].genres == ("Action", "Adventure", "Sci-Fi")
    assert records[0].description == "moon|robot|heist" and records[0].rating == 7.9
    assert records[1].description is None and records[1].year is None


def test_wikipedia_plots_csv(tmp_path):
    path = tmp_path / "wiki_movie_plots_deduped.csv"
    path.write_text(
        "Release Year,Title,Origin/Ethnicity,Director,Cast,Genre,Wiki Page,Plot\n"
        '1999,Orbit Nine,American,A B,"C D, E F",science fiction/comedy,https://x,'
        '"A pilot, a thief.\n\nThen a robot."\n'
        "2001,Quiet Hours,British,G H,,unknown,https://y,Two sisters wait.\n"
        "2003,Missing Plot,American,I J,,drama,https://z,\n",
        encoding="utf-8",
    )
    records = list(reader_of(tmp_path, "wiki_plots").read(path, required=("title", "description")))
    assert records[0].description == "A pilot, a thief.\n\nThen a robot." and records[0].year == 1999
    assert normalize_genres(records[0].genres) == ("science fiction", "comedy")
    assert normalize_genres(records[1].genres) == ()
    assert records[2].description is None


def _write_cmu(folder, metadata_rows, summaries):
    (folder / "movie.metadata.tsv").write_text(
        "".join("\t".join(r) + "\n" for r in metadata_rows), encoding="utf-8"
    )
    (folder / "plot_summaries.txt").write_text(summaries, encoding="utf-8")
    return folder / "plot_summaries.txt"


def _metadata_row(wiki_id, name, date, genres):
    return [wiki_id, "/m/0x", name, date, "", "98.0", "{}", "{}", genres]


def test_cmu_summaries_joined_with_metadata(tmp_path):
    path = _write_cmu(
        tmp_path,
        [
            _metadata_row(
                "11",
                "Orbit Nine",
                "2001-08-24",
                json.dumps({"/m/1": "Science Fiction", "/m/2": "Romance Film"}),
            ),
            _metadata_row("12", "Quiet Hours", "", "{}"),
        ],
        '11\tA pilot steals a moon, and "robots" follow.\n12\tTwo sisters wait.\n\n13\tNo metadata for me.\n',
    )
    records = list(reader_of(tmp_path, "cmu_plots").read(path, required=("description",)))
    assert [r.title for r in records] == ["Orbit Nine", "Quiet Hours", None]
    assert records[0].genres == ("Science Fiction", "Romance Film") and records[0].year == 2001
    assert normalize_genres(records[0].genres) == ("science fiction", "romance")
    assert records[0].description == 'A pilot steals a moon, and "robots" follow.'
    assert records[1].genres == () and records[1].year is None
    assert records[2].description == "No metadata for me." and records[2].line == 4


def test_cmu_bad_genre_json_and_missing_metadata_name_the_file(tmp_path):
    path = _write_cmu(tmp_path, [_metadata_row("11", "Orbit Nine", "2001", "{not json")], "11\tA plot.\n")
    with pytest.raises(MovielabError, match=r"movie.metadata.tsv:1: the genres column is not a JSON map"):
        list(CmuSummaryReader().read(path))
    (tmp_path / "movie.metadata.tsv").unlink()
    with pytest.raises(MovielabError, match=r"plot_summaries.txt: the CMU metadata file .* is missing"):
        list(CmuSummaryReader().read(path))


def test_imdb_tsv_genres_reach_the_vocabulary(tmp_path):
    basics = tmp_path / "title.basics.tsv"
    basics.write_text(
        "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n"
        'tt0000001\tmovie\t"Orbit" Nine\tOrbit Nine\t0\t2001\t\\N\t98\tAction,Sci-Fi\n'
        "tt0000002\tmovie\tQuiet Hours\tQuiet Hours\t0\t\\N\t\\N\t\\N\t\\N\n",
        encoding="utf-8",
    )
    (tmp_path / "title.ratings.tsv").write_text(
        "tconst\taverageRating\tnumVotes\ntt0000001\t7.1\t10\ntt0000002\t6.0\t5\n", encoding="utf-8"
    )
    records = list(reader_of(tmp_path, "imdb_tsv").read(basics, required=("title",)))
    assert records[0].title == '"Orbit" Nine' and records[1].genres == ()
    hot = GenreVocabulary(("action", "drama", "science fiction")).multi_hot([r.genres for r in records])
    assert hot.tolist() == [[1, 0, 1], [0, 0, 0]]


@pytest.mark.parametrize("data_config", ["imdb1000_plots", "imdb5000_keywords", "wiki_plots", "cmu_plots"])
def test_bundled_samples_prepare_with_a_genre_vocabulary(tmp_path, data_config):
    cfg = compose_config(tmp_path, [f"data={data_config}", "data.genre_min_count=2"])
    datamodule = instantiate(cfg.data)
    data = datamodule.prepare()
    names = datamodule.genre_vocabulary.names
    assert len(names) >= 5 and list(names) == sorted(names)
    for split in (data.train, data.val):
        assert split.values["genres"].shape == (split.n_records, len(names))
    assert data.train.values["genres"].sum(axis=0).min() >= 2  # min_count counts training records


def test_genre_vocabulary_is_the_training_splits_and_is_cached(tmp_path):
    path = tmp_path / "films.csv"
    rows = [f'Film {i},"Drama{",Western" if i == 3 else ""}",Plot number {i}.,7.{i},200{i}' for i in range(8)]
    path.write_text("Title,Genre,Description,Rating,Year\n" + "\n".join(rows) + "\n", encoding="utf-8")
    reader = instantiate(compose_config(tmp_path, ["data=imdb1000_plots"]).data.reader)

    def prepare(split_seed):
        return prepare_token_data(
            path, reader, Template("{title}\n{description}\n", stop=None), TokenizerSpec("char"),
            val_fraction=0.25, split_seed=split_seed, cache_dir=tmp_path / "cache",
        )  # fmt: skip

    for seed in range(20):  # find a split that puts the one western in validation
        data = prepare(seed)
        if "western" not in data.stats["genres"]:
            break
    assert data.stats["genres"] == ["drama"]
    assert np.all(data.val.values["genres"] == 1) and data.val.values["genres"].shape[1] == 1
    again = prepare(seed)  # from the cache
    assert again.stats["genres"] == ["drama"]
    assert np.array_equal(again.val.values["genres"], data.val.values["genres"])


def test_real_imdb1000_has_twenty_genres(tmp_path):
    path = shared_file("imdb1000/IMDB-Movie-Data.csv")
    records = list(reader_of(tmp_path, "imdb1000_plots").read(path, required=("title", "description")))
    vocabulary = GenreVocabulary.from_genre_lists([r.genres for r in records])
    assert len(records) == 1000 and len(vocabulary) == 20 and "science fiction" in vocabulary.names
