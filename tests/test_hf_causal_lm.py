"""model=hf_causal_lm: a tiny randomly initialised GPT-2 saved in the test (no download) fine-tunes
through the same datamodule and template, samples, and its checkpoint needs no pretrained files."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch

from movielab.checkpoint import SECTION
from movielab.cli.evaluate import HELDOUT, evaluate
from movielab.cli.generate import generate_samples
from movielab.cli.train import train
from tests.conftest import compose_config

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A byte-level BPE tokenizer trained on a few invented lines and a 2-layer GPT-2, saved locally."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    lines = [
        "A family moves into an old farmhouse.",
        "A pilot steals a moon. END_OF_MOVIE",
        "Two sisters wait.",
    ]
    tokenizer.train_from_iterator(lines * 20, trainer=trainer)
    wrapped = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")
    wrapped.save_pretrained(folder)
    config = transformers.GPT2Config(
        vocab_size=len(wrapped),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf_run(tiny_gpt2, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        overrides = [
            "data=imdb1000_plots",
            "model=hf_causal_lm",
            f"model.net.config.pretrained={tiny_gpt2}",
            "model.optimizer.lr=3e-3",
            "model.scheduler.warmup_steps=5",
            "data.batching.batch_size=8",
            "data.batching.max_length=128",
            "trainer.accelerator=cpu",
            "trainer.max_steps=40",
            "trainer.val_check_interval=20",
            "trainer.log_every_n_steps=1",
            "++trainer.limit_val_batches=2",
            "++trainer.enable_progress_bar=false",
            "++trainer.enable_model_summary=false",
            "~callbacks.progress_bar",
            "callbacks.text_samples.max_new_tokens=10",
            "logger=csv",
        ]
        train(compose_config(root, overrides))
    return root / "run"


def test_fine_tuning_lowers_the_loss(hf_run):
    with open(hf_run / "csv" / "metrics.csv", newline="") as handle:
        losses = [float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")]
    assert len(losses) >= 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0


def test_checkpoint_is_self_describing_and_samples_without_the_pretrained_files(hf_run, tiny_gpt2, tmp_path):
    ckpt = hf_run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    net = checkpoint[SECTION]["model"]["net"]
    assert net["kind"] == "hf_causal_lm" and net["config"]["architecture"]["n_layer"] == 2
    assert checkpoint[SECTION]["tokenizer"]["kind"] == "hf"
    moved = tmp_path / "gone"
    shutil.move(str(tiny_gpt2), moved)  # the checkpoint alone must do
    try:
        cfg = compose_config(
            tmp_path,
            [
                f"ckpt={ckpt}",
                "title=The Cellar",
                "num_samples=2",
                "max_new_tokens=20",
                "seed=0",
                "save=false",
            ],
            config_name="generate",
        )
        texts = [r.text for r in generate_samples(cfg)]
    finally:
        shutil.move(str(moved), tiny_gpt2)
    assert len(texts) == 2 and all(t.startswith("The Cellar\n") for t in texts)


def test_evaluate_takes_the_hf_model(hf_run, tmp_path):
    options = [
        f"ckpt={hf_run / 'checkpoints' / 'last.ckpt'}",
        "num_samples=3",
        "max_new_tokens=20",
        "temperatures=[1.0]",
        "top_ps=[0.9]",
        f"out_dir={tmp_path}",
    ]
    sets = evaluate(compose_config(tmp_path, options, config_name="evaluate"))
    assert [s.label for s in sets] == ["T=1 top-p=0.9", HELDOUT]
    assert all(0.0 <= s.metrics["distinct_1"] <= 1.0 for s in sets)
