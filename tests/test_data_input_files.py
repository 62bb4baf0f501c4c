"""Bad bytes in input files: NUL bytes and invalid UTF-8 are one-line errors naming file:line,
other control characters are removed and counted in one warning line, for every reader."""

from __future__ import annotations

import logging

import pytest

from movielab.data.readers import CsvReader, FortunesReader, ImdbTsvReader, TextFileReader
from movielab.data.readers import lines as lines_module
from movielab.data.readers.lines import iter_text_lines
from movielab.errors import MovielabError

COLUMNS = {"title": "name", "description": "description"}
TSV_HEADER = (
    "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n"
)


def _csv(tmp_path, body: bytes):
    path = tmp_path / "films.csv"
    path.write_bytes(b"name,description\n" + body)
    return path


def test_a_nul_byte_names_file_line_and_column(tmp_path):
    path = _csv(tmp_path, b'A,fine\nB,"two\nlines"\nC,bro\x00ken\n')
    with pytest.raises(MovielabError, match=r"^\S*films.csv:5: NUL byte at column 6; .*binary or damaged"):
        list(CsvReader(COLUMNS).read(path))


def test_a_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "films.csv"
    path.write_bytes("name,description\nA,B\n".encode("utf-16"))
    with pytest.raises(MovielabError, match=r"films.csv:1: .* the file is UTF-16: save it as UTF-8"):
        list(CsvReader(COLUMNS).read(path))


def test_invalid_utf8_after_the_first_block_names_the_right_line(tmp_path, monkeypatch):
    monkeypatch.setattr(lines_module, "BLOCK_SIZE", 16)  # many blocks, lines longer than a block
    path = _csv(
        tmp_path, b"".join(b"Film %d,a plot that is long enough\n" % i for i in range(20)) + b"X,caf\xe9\n"
    )
    with pytest.raises(MovielabError, match=r"films.csv:22: byte 0xe9 is not valid UTF-8 at column 6"):
        list(CsvReader(COLUMNS).read(path))


@pytest.mark.parametrize("block_size", [16, 1 << 20])
def test_lines_are_the_same_whatever_the_block_size(tmp_path, monkeypatch, block_size):
    monkeypatch.setattr(lines_module, "BLOCK_SIZE", block_size)
    text = '\ufeffname,description\r\nCafé Niño,"a\nb"\r\n' + "x" * 50 + "\nlast line without end"
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8", newline="")
    assert list(iter_text_lines(path)) == [
        "name,description\r\n",
        'Café Niño,"a\n',
        'b"\r\n',
        "x" * 50 + "\n",
        "last line without end",
    ]


def test_control_characters_are_removed_and_counted_in_one_line(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(lines_module, "BLOCK_SIZE", 32)
    body = "A,tab\tstays\nB,bell\x07 and escape\x1b[0m\nC,clean\nD,it\x92s a quote\x7f\n".encode()
    path = _csv(tmp_path, body)
    with caplog.at_level(logging.WARNING):
        records = list(CsvReader(COLUMNS).read(path))
    assert [r.description for r in records] == ["tab\tstays", "bell and escape[0m", "clean", "its a quote"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        "films.csv: removed 4 control characters (U+0007 x1, U+001B x1, U+007F x1, U+0092 x1) " in warnings[0]
    )
    assert "from 2 lines, the first at line 3" in warnings[0] and "Windows-1252" in warnings[0]


def test_a_clean_file_logs_no_warning(tmp_path, caplog):
    path = _csv(tmp_path, "A,Café\u00a0Niño © 1999\n".encode())  # non-breaking space and © are text
    with caplog.at_level(logging.WARNING):
        (record,) = CsvReader(COLUMNS).read(path)
    assert record.description == "Café\u00a0Niño © 1999" and not caplog.records


def test_every_reader_applies_the_policy(tmp_path, caplog):
    text = tmp_path / "script.txt"
    text.write_bytes(b"ann: hi\x0c there\n\nbob: bye\n")
    with caplog.at_level(logging.WARNING):
        assert [r.text for r in TextFileReader().read(text)] == ["ann: hi there", "bob: bye"]
    assert "script.txt: removed 1 control characters (U+000C x1)" in caplog.text
    fortunes = tmp_path / "fortunes"
    fortunes.write_bytes(b"One.\n%\nTw\x00o.\n")
    with pytest.raises(MovielabError, match=r"fortunes:3: NUL byte at column 3"):
        list(FortunesReader().read(fortunes))
    basics = tmp_path / "title.basics.tsv"
    basics.write_bytes(TSV_HEADER.encode() + b"tt0000001\tmovie\tCaf\xe9\tX\t0\t2001\t\\N\t90\tDrama\n")
    (tmp_path / "title.ratings.tsv").write_text("tconst\taverageRating\tnumVotes\ntt0000001\t7.0\t10\n")
    with pytest.raises(MovielabError, match=r"title.basics.tsv:2: byte 0xe9 is not valid UTF-8"):
        list(ImdbTsvReader().read(basics))


def test_a_non_numeric_vote_count_names_the_line(tmp_path):
    basics = tmp_path / "title.basics.tsv"
    basics.write_text(TSV_HEADER + "tt0000001\tmovie\tA\tA\t0\t2001\t\\N\t90\tDrama\n", encoding="utf-8")
    (tmp_path / "title.ratings.tsv").write_text("tconst\taverageRating\tnumVotes\ntt0000001\t7.0\tmany\n")
    with pytest.raises(MovielabError, match=r"title.ratings.tsv:2: numVotes 'many' is not a whole number"):
        list(ImdbTsvReader().read(basics))


def test_csv_the_csv_module_cannot_parse_is_one_line(tmp_path):
    path = _csv(tmp_path, b"A,B\nC,a lone\rcarriage return\n")
    with pytest.raises(MovielabError, match=r"films.csv:3: not readable as CSV \(new-line character seen"):
        list(CsvReader(COLUMNS).read(path))
    with pytest.raises(MovielabError, match=r"data.reader.delimiter='ab' must be one character"):
        CsvReader(COLUMNS, delimiter="ab")
