"""Each bad input gets one line on stderr naming the file/option and what is expected, exit code 2."""

from __future__ import annotations

import sys

import pytest
import torch

from movielab.cli import command, evaluate, generate, predict, serve, train
from movielab.data.fitting_configs import data_options_fitting

CHECKPOINT_COMMANDS = {"generate": generate, "predict": predict, "evaluate": evaluate, "serve": serve}
# what each needs besides a checkpoint; predict's plot holds a comma and an apostrophe, which reach
# Hydra only when the free text is quoted
REQUIRED = {"predict": ["text=A heist, in Rome's rain"]}


def run_cli(entry, argv, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["movielab", *argv])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        entry()
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2, stderr
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and stderr.rstrip().endswith(error_lines[0]), stderr
    return error_lines[0]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_missing_data_file_says_where_real_data_comes_from(in_tmp, monkeypatch, capsys):
    line = run_cli(train.main, ["data.path=nowhere/movies.csv"], monkeypatch, capsys)
    assert "data file not found: nowhere/movies.csv" in line and "Letterboxd" in line


def test_missing_required_column(in_tmp, monkeypatch, capsys):
    (in_tmp / "films.csv").write_text("title,plot\nA,B\n", encoding="utf-8")
    line = run_cli(train.main, ["data.path=films.csv"], monkeypatch, capsys)
    assert "films.csv: required column 'name'" in line
    assert "fit data=" not in line  # no bundled option reads a title,plot file


def test_a_csv_given_to_the_wrong_data_option_is_pointed_at_the_one_its_columns_fit(
    in_tmp, monkeypatch, capsys
):
    header = "Rank,Title,Genre,Description,Director,Actors,Year,Runtime (Minutes),Rating,Votes"
    (in_tmp / "films.csv").write_text(f'{header}\n1,A,"Drama,War",B,C,D,2001,90,7.1,10\n', encoding="utf-8")
    line = run_cli(train.main, ["data=letterboxd", "data.path=films.csv"], monkeypatch, capsys)
    assert line.endswith(
        "required column 'name' (for title) is missing; columns found: "
        + header.replace(",", ", ")
        + "; map yours with data.reader.columns.title=<column>; the file's columns fit data=imdb1000_plots"
    )


def test_the_data_options_a_header_fits_outside_a_hydra_command():
    letterboxd = ["movie_id", "name", "date", "tagline", "description", "minute", "rating"]
    assert data_options_fitting(letterboxd) == ["letterboxd", "letterboxd_titles"]
    assert data_options_fitting(["name", "description"]) == ["letterboxd"]  # its other columns are optional
    assert data_options_fitting(["movie_title", "imdb_score"]) == ["imdb_titles"]
    assert data_options_fitting(["Title", "Plot"]) == []  # wiki_plots also needs Genre and Release Year


def test_empty_dataset_after_filtering(in_tmp, monkeypatch, capsys):
    (in_tmp / "films.csv").write_text("name,description\nA,\nB,\n", encoding="utf-8")
    line = run_cli(train.main, ["data.path=films.csv"], monkeypatch, capsys)
    assert "no records left after filtering" in line


def test_non_utf8_input(in_tmp, monkeypatch, capsys):
    (in_tmp / "films.csv").write_bytes("name,description\nCaf\xe9,x\n".encode("latin-1"))
    line = run_cli(train.main, ["data.path=films.csv"], monkeypatch, capsys)
    assert "films.csv:2: byte 0xe9" in line and "UTF-8" in line


def test_n_embd_not_divisible_by_n_head(in_tmp, monkeypatch, capsys):
    argv = ["model.net.config.n_embd=100", "model.net.config.n_head=3", "model.net.config.block_size=16"]
    line = run_cli(train.main, argv, monkeypatch, capsys)
    assert "n_embd=100 must be divisible by n_head=3" in line


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("temperature=0", "temperature=0 must be greater than 0"),
        ("top_p=1.5", "top_p=1.5 must be in (0, 1]"),
        ("top_k=0", "top_k=0 must be at least 1"),
    ],
)
def test_bad_sampling_options(in_tmp, monkeypatch, capsys, option, message):
    line = run_cli(generate.main, ["ckpt=any.ckpt", option], monkeypatch, capsys)
    assert message in line


def test_missing_checkpoint(in_tmp, monkeypatch, capsys):
    line = run_cli(generate.main, ["ckpt=runs/last.ckpt"], monkeypatch, capsys)
    assert "checkpoint not found: runs/last.ckpt" in line


def test_not_a_movielab_checkpoint(in_tmp, monkeypatch, capsys):
    torch.save({"state_dict": {}}, in_tmp / "other.ckpt")
    (in_tmp / "notes.ckpt").write_text("hello", encoding="utf-8")
    line = run_cli(generate.main, ["ckpt=other.ckpt"], monkeypatch, capsys)
    assert "other.ckpt is not a movielab checkpoint" in line
    line = run_cli(generate.main, ["ckpt=notes.ckpt"], monkeypatch, capsys)
    assert "notes.ckpt is not a movielab checkpoint" in line


@pytest.mark.parametrize("name", CHECKPOINT_COMMANDS)
def test_each_checkpoint_command_reports_a_missing_checkpoint_and_an_unknown_option(
    name, in_tmp, monkeypatch, capsys
):
    main, argv = CHECKPOINT_COMMANDS[name].main, ["ckpt=missing.ckpt", *REQUIRED.get(name, [])]
    assert "checkpoint not found: missing.ckpt" in run_cli(main, argv, monkeypatch, capsys)
    line = run_cli(main, [*argv, "tempreature=0.5"], monkeypatch, capsys)
    assert "tempreature" in line and "ckpt" in line  # names the bad key and lists the known ones


@pytest.mark.parametrize("name", CHECKPOINT_COMMANDS)
def test_each_checkpoint_command_is_named_after_itself_in_its_help(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit):
        CHECKPOINT_COMMANDS[name].main()
    assert capsys.readouterr().out.startswith(f"{name} is powered by Hydra.")


def test_titles_with_apostrophes_and_commas_reach_hydra_intact():
    quoted = command.quote_free_text(["title=Schindler's List, Part 2", "num_samples=2", 'title="kept"'])
    assert quoted == ['title="Schindler\'s List, Part 2"', "num_samples=2", 'title="kept"']


def test_full_traceback_on_request(in_tmp, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["movielab", "ckpt=missing.ckpt"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    from movielab.errors import MovielabError

    with pytest.raises(MovielabError):
        generate.main()


def test_prompt_option_the_model_does_not_take():
    from movielab.errors import MovielabError
    from tests.builders import VOCAB, char_sampler, tiny_language_model

    sampler = char_sampler(tiny_language_model(vocab_size=VOCAB))
    with pytest.raises(MovielabError, match="does not take rating; its prompt fields are title, prime"):
        sampler.prepare({"rating": 7.5})


@pytest.mark.parametrize(
    ("entry", "option", "message"),
    [
        (
            train,
            "model.optimizer.lrr=1",
            "error: model.optimizer.lrr is not an option; model.optimizer has: betas, lr, weight_decay",
        ),
        (train, "modle.net.kind=gpt", "error: modle is not an option; the options are: callbacks, ckpt_path"),
        (
            train,
            "model=gtp",
            "error: model=gtp is not a config; the options of model are: genre_classifier, genre_gpt, gpt",
        ),
        (train, "trainer=tpu", "error: trainer=tpu is not a config; the options of trainer are: cpu"),
        (train, "trainer.max_steps=[1,", "error: cannot read the override"),
        (train, "~model.xyz", "error: Could not delete from config. 'model.xyz' does not exist."),
        (
            generate,
            "temprature=0.5",
            "error: temprature is not an option; the options are: avoid_training_titles",
        ),
    ],
)
def test_hydra_errors_are_one_line_naming_what_exists(in_tmp, monkeypatch, capsys, entry, option, message):
    line = run_cli(
        entry.main, ["ckpt=any.ckpt", option] if entry is generate else [option], monkeypatch, capsys
    )
    assert line.startswith(message)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("model.optimizer.lr=-1", "model.optimizer.lr=-1 must be a number of at least 0"),
        ("trainer.val_check_interval=0", "trainer.val_check_interval=0 must be an integer of at least 1"),
        ("trainer.max_steps=0", "trainer.max_steps=0 must be an integer of at least 1"),
        ("data.val_fraction=1.5", "data.val_fraction=1.5 must be a number between 0 and 1"),
    ],
)
def test_bad_training_options_on_the_command_line(in_tmp, monkeypatch, capsys, option, message):
    assert message in run_cli(train.main, [option], monkeypatch, capsys)
    assert not list((in_tmp / "outputs" / "train" / "runs").glob("*/.hydra"))  # refused before Hydra wrote
