"""Readers turn a file in a real-world format into typed Records."""

from movielab.data.readers.cmu_summaries import CmuSummaryReader
from movielab.data.readers.csv_reader import CsvReader
from movielab.data.readers.fortunes import FortunesReader
from movielab.data.readers.imdb_tsv import ImdbTsvReader
from movielab.data.readers.text_file import TextFileReader

__all__ = ["CmuSummaryReader", "CsvReader", "FortunesReader", "ImdbTsvReader", "TextFileReader"]
