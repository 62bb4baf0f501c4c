"""Readers on the formats users bring: quoting, multi-line fields, empty values, bad bytes."""

from __future__ import annotations

import pytest

from movielab.data.readers import CsvReader, TextFileReader
from movielab.errors import MovielabError
from tests.conftest import MOVIES, shared_file

LETTERBOXD_COLUMNS = {
    "title": "name",
    "description": "description",
    "tagline": "tagline",
    "year": "date",
    "rating": "rating",
}
TITLE_AND_PLOT = {"title": "name", "description": "description"}


def test_csv_reader_reads_letterboxd_format(movies_csv):
    records = list(CsvReader(LETTERBOXD_COLUMNS).read(movies_csv, required=("title", "description")))
    assert [r.title for r in records] == [m[0] for m in MOVIES]
    assert records[1].description == 'A night guard, "Moth", hears trains that stopped running in 1961.'
    assert records[2].description == "Two sisters mail a lantern across the sea,\nand wait for an answer."
    assert records[0].rating == 3.5 and records[1].rating is None
    assert records[0].year == 1987
    assert records[1].tagline is None
    assert records[3].description is None  # empty description: kept as missing, filtered later
    assert records[4].title == "Café Niño"
    # record line numbers point at the start of each row (row 3 spans two lines)
    assert [r.line for r in records] == [2, 3, 4, 6, 7]


def test_missing_required_column_names_file_and_column(tmp_path):
    path = tmp_path / "films.csv"
    path.write_text("title,plot\nA,B\n", encoding="utf-8")
    with pytest.raises(
        MovielabError, match=r"films.csv: required column 'name' .*columns found: title, plot"
    ):
        list(CsvReader(LETTERBOXD_COLUMNS).read(path, required=("title",)))


def test_a_text_file_read_as_csv_is_said_to_be_no_csv_and_a_wide_header_is_cut(tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("jerry: " + "so what is the deal with airline food, " * 5 + "\n\nelaine: no.\n")
    with pytest.raises(MovielabError) as refused:
        list(CsvReader(LETTERBOXD_COLUMNS).read(script, required=("title",)))
    message = str(refused.value)
    assert "none that look like a CSV header (its first line begins 'jerry: so what" in message
    assert "data=text" in message and "airline food, so" not in message and "\n" not in message
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"column_{i}" for i in range(30)) + "\n" + ",".join("x" * 30) + "\n")
    with pytest.raises(MovielabError, match=r"column_0, column_1, .*column_19 and 10 more; map"):
        list(CsvReader(LETTERBOXD_COLUMNS).read(wide, required=("title",)))


def test_a_mapped_column_the_file_lacks_is_an_error_even_when_not_required(tmp_path):
    path = tmp_path / "films.csv"
    path.write_text("name,description,score\nA,B,3\n", encoding="utf-8")
    reader = CsvReader({"title": "name", "description": "description", "rating": "rating"})
    with pytest.raises(
        MovielabError,
        match=r"^\S*films.csv: data.reader.columns.rating='rating' names no column of the file; "
        r"columns found: name, description, score; .*data.reader.columns.rating=null",
    ):
        list(reader.read(path, required=("title", "description")))


def test_an_unmapped_or_optional_column_may_be_absent(tmp_path):
    path = tmp_path / "films.csv"
    path.write_text("name,description\nA,B\n", encoding="utf-8")
    unmapped = CsvReader({"title": "name", "description": "description", "rating": None})
    (record,) = unmapped.read(path, required=("title", "description"))
    assert record.rating is None and record.description == "B"
    optional = CsvReader(LETTERBOXD_COLUMNS, optional=("tagline", "year", "rating"))
    (record,) = optional.read(path, required=("title", "description"))
    assert record.rating is None and record.tagline is None and record.title == "A"
    with pytest.raises(MovielabError, match="unknown record field"):
        CsvReader(LETTERBOXD_COLUMNS, optional=("plot",))


def test_non_utf8_input_names_file_and_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,description\nA,fine\nB,caf\xe9\n".encode("latin-1"))
    with pytest.raises(MovielabError, match=r"latin.csv:3: byte 0xe9 .* not valid UTF-8"):
        list(CsvReader(TITLE_AND_PLOT).read(path, required=("title",)))


def test_bad_rating_names_line(tmp_path):
    path = tmp_path / "films.csv"
    path.write_text("name,rating\nA,4.5\nB,great\n", encoding="utf-8")
    with pytest.raises(MovielabError, match=r"films.csv:3: rating 'great' is not a number"):
        list(CsvReader({"title": "name", "rating": "rating"}).read(path))


def test_unknown_record_field_in_columns():
    with pytest.raises(MovielabError, match="unknown record field"):
        CsvReader({"plot": "description"})


def test_text_reader_paragraphs_and_lines(tmp_path):
    path = tmp_path / "script.txt"
    path.write_text("ann: hi.\n\nbob: hello,\nthere.\n\n\ncat: bye\n", encoding="utf-8")
    paragraphs = list(TextFileReader("paragraph").read(path))
    assert [r.text for r in paragraphs] == ["ann: hi.", "bob: hello,\nthere.", "cat: bye"]
    assert [r.line for r in paragraphs] == [1, 3, 7]
    lines = list(TextFileReader("line").read(path))
    assert [r.text for r in lines] == ["ann: hi.", "bob: hello,", "there.", "cat: bye"]


def test_letterboxd_reader_reads_every_real_movie():
    path = shared_file("letterboxd/movies.csv")
    records = list(CsvReader(LETTERBOXD_COLUMNS).read(path, required=("title", "description")))
    assert len(records) == 10_599
    assert all(r.title for r in records)
    fight_club = next(r for r in records if r.title == "Fight Club")
    assert fight_club.year == 1999 and fight_club.rating == 4.27
    assert '"fight clubs"' in fight_club.description  # a doubled quote inside a quoted field
