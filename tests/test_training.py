"""End to end on the bundled sample: loss falls, checkpoints describe themselves, resume is exact."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from movielab.checkpoint import SECTION, load_model, read_checkpoint, require_same_data
from movielab.cli.generate import generate_samples
from movielab.cli.train import train
from movielab.data import token_cache
from movielab.data.tokenizers import tokenizer_from_state
from movielab.errors import MovielabError
from movielab.evaluation.sample_files import read_sample_file
from movielab.generation import Request, generate_texts
from movielab.models.language_sampler import LanguageModelSampler
from movielab.sampling import SamplingSettings
from tests.conftest import TINY, compose_config


class CrashAtStep(L.Callback):
    """Simulates a killed run: raises once `step` optimizer steps are done (after their checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt  # Lightning's own interrupt path, as with Ctrl-C


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One tiny run on the bundled Letterboxd sample, shared by the tests below."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_config(
        root, [*TINY, "trainer.max_steps=150", "trainer.val_check_interval=50", "logger=[csv,tensorboard]"]
    )
    best = train(cfg)
    assert best is not None and math.isfinite(best)
    return root / "run"


def _metric_rows(run: Path, name: str) -> list[tuple[int, float]]:
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        return [(int(row["step"]), float(row[name])) for row in csv.DictReader(handle) if row.get(name)]


def test_loss_falls_on_the_bundled_sample(trained_run):
    train_loss = _metric_rows(trained_run, "train/loss")
    val_loss = [value for _, value in _metric_rows(trained_run, "val/loss")]
    section = read_checkpoint(trained_run / "checkpoints" / "last.ckpt")[SECTION]
    vocab = section["model"]["net"]["config"]["vocab_size"]
    assert len(val_loss) == 3
    assert train_loss[0][1] > math.log(vocab) - 0.5  # starts near uniform guessing
    assert val_loss[0] > val_loss[-1]
    assert val_loss[-1] < math.log(vocab) - 1.0  # learned well beyond uniform guessing
    assert train_loss[-1][1] < train_loss[0][1] - 1.0


def test_run_folder_holds_config_checkpoints_and_logs(trained_run):
    assert (trained_run / "tokenizer.json").exists()
    assert (trained_run / "checkpoints" / "last.ckpt").exists()
    assert list((trained_run / "checkpoints").glob("best-step*.ckpt"))
    assert (trained_run / "csv" / "metrics.csv").exists()


def test_tensorboard_has_scalars_samples_and_hparams(trained_run):
    events = EventAccumulator(str(trained_run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "val/loss",
        "val/ppl",
        "val/loss_best",
        "train/lr/pg1",
        "train/device/items_per_sec",
    }
    assert expected <= scalars
    assert len(events.Scalars("val/loss")) == 3
    samples = events.Tensors("samples/text_summary")
    assert len(samples) == 3  # one set per validation
    assert b"The description of the movie named" in samples[-1].tensor_proto.string_val[0]
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert b"final/loss_best" in hparams["_hparams_/experiment"]
    assert b"model/net/config/n_embd" in hparams["_hparams_/session_start_info"]


def test_checkpoint_is_self_describing_and_weights_only(trained_run):
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    description = checkpoint[SECTION]
    model = description["model"]
    assert model["task"] == "language_model" and model["net"]["kind"] == "gpt"
    assert model["net"]["config"]["n_embd"] == 32
    assert "_target_" not in str(model)  # the model is data, not code to run
    assert description["data_fingerprint"] and description["digest"]
    tokenizer = tokenizer_from_state(description["tokenizer"])
    assert tokenizer.vocab_size == model["net"]["config"]["vocab_size"] == description["data"]["vocab_size"]
    assert description["template"]["stop"] == "END_OF_MOVIE"
    assert description["data"]["train_records"] > 100
    assert len(description["training_fingerprints"]) == description["data"]["train_records"]
    assert checkpoint["global_step"] == 150
    assert description["metrics"]["val/loss"] > 0


def test_generate_needs_only_the_checkpoint(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        tmp_path,
        [f"ckpt={ckpt}", "title=The Last Lighthouse", "num_samples=4", "max_new_tokens=300", "seed=3"],
        config_name="generate",
    )
    texts = [r.text for r in generate_samples(cfg)]
    assert len(texts) == 4
    assert all(t.startswith("The description of the movie named 'The Last Lighthouse' is:\n") for t in texts)
    assert all("END_OF_MOVIE" not in t for t in texts)  # cut at the stop string
    assert [r.text for r in generate_samples(cfg)] == texts  # same seed, same samples
    one = compose_config(
        tmp_path,
        [
            f"ckpt={ckpt}",
            "title=The Last Lighthouse",
            "num_samples=1",
            "max_new_tokens=300",
            "seed=5",
            "save=false",
        ],
        config_name="generate",
    )
    assert generate_samples(one)[0].text == texts[2]  # sample i is seed + i, alone or with others
    saved = sorted((trained_run / "samples").glob("*.txt"))
    assert len(saved) == 2  # the second call did not overwrite the first file
    assert "The Last Lighthouse" in saved[0].read_text(encoding="utf-8")


def test_generate_without_title_invents_one(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        tmp_path,
        [f"ckpt={ckpt}", "num_samples=2", "max_new_tokens=120", "seed=0", "save=false"],
        config_name="generate",
    )
    texts = [r.text for r in generate_samples(cfg)]
    assert all(t.startswith("The description of the movie named '") for t in texts)
    assert all(len(t) > len("The description of the movie named '") for t in texts)


def test_generate_says_which_samples_were_cut_off_before_the_stop(trained_run, tmp_path, capsys):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    before = set((trained_run / "samples").glob("*.txt"))
    short = ["title=The Last Lighthouse", "num_samples=3", "seed=0", f"ckpt={ckpt}"]
    results = generate_samples(compose_config(tmp_path, [*short, "max_new_tokens=5"], config_name="generate"))
    assert [r.cut_off for r in results] == [True] * 3  # 5 characters cannot reach END_OF_MOVIE
    texts = [r.text for r in results]
    out = capsys.readouterr().out
    assert "3 of 3 samples reached max_new_tokens=5 before END_OF_MOVIE" in out
    (saved,) = set((trained_run / "samples").glob("*.txt")) - before
    assert "=== sample 2 (cut off: max_new_tokens=5 reached before END_OF_MOVIE) ===" in saved.read_text()
    assert read_sample_file(saved).samples == list(texts)


class ScriptedSampler(LanguageModelSampler):
    """The trained model's prompts, stop and rendering, but each row writes a fixed text."""

    def __init__(self, sampler: LanguageModelSampler, scripts: list[list[int]]) -> None:
        super().__init__(sampler.net, sampler.conditions, sampler.tokenizer, sampler.template)
        self.scripts = scripts

    def decoder(self, use_cache: bool = True):  # noqa: ANN201
        scripts, vocab = self.scripts, self.tokenizer.vocab_size

        def forced(token: int) -> torch.Tensor:
            logits = torch.full((vocab,), -1e9)
            logits[token] = 0.0
            return logits

        class Decoder:
            rows: list[list[int]] = []

            def add_rows(self, rows):  # noqa: ANN001, ANN201
                self.rows += [list(scripts[len(self.rows) + i]) for i in range(len(rows))]
                return torch.stack([forced(row.pop(0)) for row in self.rows[-len(rows) :]])

            def advance(self, tokens):  # noqa: ANN001, ANN201
                return torch.stack([forced(row.pop(0) if row else 0) for row in self.rows])

            def remove(self, rows):  # noqa: ANN001, ANN201
                self.rows = [r for i, r in enumerate(self.rows) if i not in set(rows)]

        return Decoder()


def test_only_samples_without_the_stop_count_as_cut_off(trained_run):
    model = load_model(trained_run / "checkpoints" / "last.ckpt")
    ends = " A storm.\nEND_OF_MOVIE\nThe"
    runs_on = (" and on" * 10)[: len(ends)]  # characters: one token each, as long as `ends`
    scripts = [model.tokenizer.encode(text).tolist() for text in (runs_on, ends, runs_on)]
    sampler = ScriptedSampler(model.sampler, scripts)
    settings = SamplingSettings(max_new_tokens=len(ends))
    results = generate_texts(sampler, [Request({"title": "Up"}, settings, i) for i in range(3)])
    assert [r.cut_off for r in results] == [True, False, True]
    assert results[1].text.endswith("is:\n A storm.")  # cut where the model wrote the stop
    assert results[1].new_tokens == len(" A storm.\nEND_OF_MOVIE")  # and it stopped there
    assert results[0].text.endswith(runs_on.rstrip())


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    common = [
        *TINY,
        "model.net.config.dropout=0.2",
        "trainer.max_steps=12",
        "trainer.val_check_interval=6",
        "logger=csv",
    ]
    train(compose_config(tmp_path / "full", common))
    crash = ["+callbacks.crash._target_=tests.test_training.CrashAtStep", "+callbacks.crash.step=6"]
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(compose_config(tmp_path / "killed", common + crash))
    halfway = tmp_path / "killed" / "run" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(halfway)["global_step"] == 6
    train(compose_config(tmp_path / "resumed", [*common, f"ckpt_path={halfway}"]))

    full = read_checkpoint(tmp_path / "full" / "run" / "checkpoints" / "last.ckpt")
    resumed = read_checkpoint(tmp_path / "resumed" / "run" / "checkpoints" / "last.ckpt")
    assert full["global_step"] == resumed["global_step"] == 12
    for name, tensor in full["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
    full_moments = full["optimizer_states"][0]["state"]
    resumed_moments = resumed["optimizer_states"][0]["state"]
    assert all(torch.equal(full_moments[k]["exp_avg"], resumed_moments[k]["exp_avg"]) for k in full_moments)
    assert full["lr_schedulers"][0]["_last_lr"] == resumed["lr_schedulers"][0]["_last_lr"]


def test_last_checkpoint_follows_training_after_val_loss_stops_improving(tmp_path):
    # lr 0: val/loss never improves after the first validation, so "best" stays at step 2
    cfg = compose_config(
        tmp_path, [*TINY, "model.optimizer.lr=0", "trainer.max_steps=8", "trainer.val_check_interval=2"]
    )
    train(cfg)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert read_checkpoint(checkpoints / "last.ckpt")["global_step"] == 8
    assert [p.name for p in checkpoints.glob("best-*.ckpt")] == ["best-step000002.ckpt"]


def test_init_from_starts_a_fresh_phase_from_the_checkpoint_weights(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    # lr 0: the new phase cannot move the weights, so they must be the checkpoint's
    train(
        compose_config(
            tmp_path / "phase2",
            [
                *TINY,
                f"init_from={ckpt}",
                "model.optimizer.lr=0",
                "trainer.max_steps=2",
                "trainer.val_check_interval=2",
            ],
        )
    )
    before, after = (
        read_checkpoint(ckpt),
        read_checkpoint(tmp_path / "phase2" / "run" / "checkpoints" / "last.ckpt"),
    )
    assert after["global_step"] == 2  # a fresh step count, not the checkpoint's 150
    for name, tensor in before["state_dict"].items():
        assert torch.equal(tensor, after["state_dict"][name]), name
    wider = compose_config(tmp_path / "wider", [*TINY, f"init_from={ckpt}", "model.net.config.n_embd=48"])
    with pytest.raises(MovielabError, match="another architecture"):
        train(wider)


def test_resume_refuses_other_data(trained_run, tmp_path, movies_csv):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        tmp_path, [*TINY, f"data.path={movies_csv}", "model.net.config.block_size=16", f"ckpt_path={ckpt}"]
    )
    with pytest.raises(MovielabError, match="trained on other data"):
        train(cfg)


def test_a_new_phase_starts_from_a_checkpoint_whose_tokens_sit_in_a_cache_of_another_format(
    trained_run, tmp_path, monkeypatch
):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    before = read_checkpoint(ckpt)[SECTION]
    monkeypatch.setattr(token_cache, "CACHE_FORMAT", token_cache.CACHE_FORMAT + 1)  # a new cache folder
    train(compose_config(tmp_path, [*TINY, "trainer.max_steps=2", f"init_from={ckpt}"]))
    after = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")[SECTION]
    assert after["data_fingerprint"] != before["data_fingerprint"]
    assert after["data_digest"] == before["data_digest"]


def test_same_data_is_judged_by_token_digest_and_by_fingerprint_for_checkpoints_without_one():
    data = SimpleNamespace(fingerprint="new-key", content_digest="tokens-a")
    require_same_data(
        {SECTION: {"data_fingerprint": "old-key", "data_digest": "tokens-a"}}, "ckpt_path=x", data
    )
    with pytest.raises(
        MovielabError, match="ckpt_path=x was trained on other .*token digest tokens-b, now tokens-a"
    ):
        require_same_data(
            {SECTION: {"data_fingerprint": "new-key", "data_digest": "tokens-b"}}, "ckpt_path=x", data
        )
    written_before_digests = {SECTION: {"data_fingerprint": "new-key"}}
    require_same_data(written_before_digests, "init_from=y", data)
    with pytest.raises(
        MovielabError, match="init_from=y was trained on other .*fingerprint old-key, now new-key"
    ):
        require_same_data({SECTION: {"data_fingerprint": "old-key"}}, "init_from=y", data)
    with pytest.raises(MovielabError, match="token digest unreadable, now tokens-a"):  # a crafted section
        require_same_data({SECTION: {"data_digest": torch.zeros(3)}}, "init_from=y", data)
