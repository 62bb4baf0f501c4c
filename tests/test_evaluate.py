"""The generated-text evaluation on hand-computed cases: fields from the template, copy rates,
novelty, diversity, genre recognition, and sample files in both formats."""

from __future__ import annotations

import pytest
import torch

from movielab.cli.generate import sample_titles, save_samples
from movielab.data.records import Record
from movielab.data.templates import Template
from movielab.evaluation.generated_text import FieldReader, GenreJudge, ReferenceTexts, text_metrics
from movielab.evaluation.sample_files import read_sample_file
from movielab.generation import GeneratedText

TEMPLATE = Template("{title}\n{description}\nEND_OF_MOVIE\n", stop="END_OF_MOVIE")


def test_fields_are_read_back_through_the_template():
    reader = FieldReader(TEMPLATE)
    assert reader.fields("The Cellar\nA family moves in.\nThey leave.") == {
        "title": "The Cellar",
        "description": "A family moves in.\nThey leave.",
    }
    assert reader.body("just one line") == "just one line"  # does not fit: the whole text
    quoted = FieldReader(
        Template("The description of the movie named '{title}' is:\n{description}\nEND\n", "END")
    )
    assert quoted.title("The description of the movie named 'Up' is:\nA house flies.") == "Up"


def test_text_metrics_by_hand():
    references = ReferenceTexts(
        FieldReader(TEMPLATE),
        training=["Orbit\na pilot steals a moon", "Harvest\ntwo sisters wait for rain"],
        heldout=["Quiet\na pilot waits for rain"],
        heldout_genres=[("drama",)],
    )
    samples = ["Orbit\na pilot steals a moon", "Orbit\na pilot waits", "Nightfall\nrain rain rain"]
    metrics = text_metrics(samples, references, n=2)
    assert metrics["samples"] == 3
    assert metrics["copy_rate"] == pytest.approx(1 / 3)  # the first sample is a training record
    assert metrics["title_copy_rate"] == pytest.approx(2 / 3)  # "Orbit" twice
    # bigrams: a-pilot, pilot-steals, steals-a, a-moon (known) | a-pilot (known), pilot-waits (new)
    # | rain-rain x2 (new): 3 new of 8
    assert metrics["novelty_2gram"] == pytest.approx(3 / 8)
    # words: a pilot steals a moon a pilot waits rain rain rain -> {a, pilot, steals, moon, waits, rain}
    assert metrics["distinct_1"] == pytest.approx(6 / 11)
    assert metrics["words"] == pytest.approx(11 / 3)
    assert 0.0 < metrics["bleu_2"] < 1.0 and 0.0 < metrics["self_bleu_2"] < 1.0


class FixedProbabilities:
    """Stands in for a trained classifier: the same probabilities for whatever it reads."""

    genres = ("comedy", "drama", "horror")
    threshold = 0.5

    def __init__(self, probs: list[list[float]]) -> None:
        self.probs = torch.tensor(probs)

    def probabilities(self, records):
        return self.probs[: len(records)]


def test_genre_recognition_by_hand():
    probs = [[0.9, 0.6, 0.1], [0.2, 0.3, 0.4], [0.1, 0.2, 0.7]]
    judge = GenreJudge(FixedProbabilities(probs))
    records = [Record(description=f"plot {i}") for i in range(3)]
    # sample 0 asks comedy+horror: comedy found (0.9), horror not; top genre comedy is asked
    # sample 1 asks drama: not found (0.3); top genre horror is not asked
    # sample 2 asks Horror and an unknown genre: horror found (0.7), top genre horror is asked
    result = judge.recognition(records, [["comedy", "horror"], ["drama"], ["Horror", "western"]])
    assert result["genre_recall"] == pytest.approx(2 / 4)
    assert result["genre_top1"] == pytest.approx(2 / 3)


def test_sample_files_in_generate_format_and_one_per_line(tmp_path):
    texts = ["The Cellar\nA family moves in.\n\nThey leave.", "Orbit\nA pilot."]
    header = "# ckpt=/runs/x/last.ckpt title='The Cellar' genres=['horror', 'science fiction'] seed=3\n"
    results = [GeneratedText(texts[0], False, 3, 9), GeneratedText(texts[1], True, 4, 9)]
    path = save_samples(tmp_path, header, texts, sample_titles(results, "cut off"))
    assert "=== sample 1 ===\n" in path.read_text() and "=== sample 2 (cut off) ===\n" in path.read_text()
    sample_file = read_sample_file(path)
    assert sample_file.samples == texts  # the cut-off note stays in the marker, out of the sample
    assert sample_file.ckpt == "/runs/x/last.ckpt"
    assert sample_file.genres == ["horror", "science fiction"]
    plain = tmp_path / "plain.txt"
    plain.write_text("# my samples\nfirst sample\n\nsecond sample\n", encoding="utf-8")
    assert read_sample_file(plain).samples == ["first sample", "second sample"]
    assert read_sample_file(plain).ckpt is None
