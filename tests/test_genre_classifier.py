"""Genre classifier: weighted BCE weights, scores by hand, bidirectional attention, a tiny run, predict."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from movielab.checkpoint import SECTION, read_checkpoint
from movielab.cli.predict import predict
from movielab.cli.train import train
from movielab.models.genre_classifier import best_threshold, multilabel_scores
from movielab.models.gpt import CausalSelfAttention, GPTConfig
from movielab.models.spec import positive_weights
from movielab.models.transformer_encoder import TransformerEncoder, TransformerEncoderConfig
from tests.conftest import compose_config

TINY_CLASSIFIER = [
    "experiment=genre_classifier",
    "model.net.config.n_layer=1",
    "model.net.config.n_head=2",
    "model.net.config.n_embd=32",
    "model.net.config.block_size=128",
    "model.net.config.dropout=0.0",
    "model.scheduler.warmup_steps=10",
    "model.optimizer.lr=3e-3",
    "data.batching.batch_size=16",
    "trainer.accelerator=cpu",
    "trainer.max_steps=60",
    "trainer.val_check_interval=30",
    "trainer.log_every_n_steps=1",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "logger=csv",
]


def test_positive_weights_are_negatives_over_positives_of_labelled_records():
    labels = np.array(
        [
            [1, 0, 0],
            [1, 1, 0],
            [1, 0, 0],
            [0, 1, 0],
            [0, 0, 0],  # no known genre: not a labelled record, not counted
        ]
    )
    # 4 labelled records: genre 0 has 3 positives (1 negative), genre 1 has 2 (2), genre 2 none
    assert positive_weights(labels) == pytest.approx([1 / 3, 1.0, 1.0])
    rare = np.array([[1, 0]] * 99 + [[1, 1]])
    assert positive_weights(rare, max_weight=50.0) == pytest.approx([0.0, 50.0])  # 99/1, capped


def test_scores_by_hand_and_threshold_choice():
    probs = torch.tensor([[0.9, 0.4], [0.6, 0.2], [0.3, 0.7]])
    labels = torch.tensor([[1, 1], [0, 0], [1, 1]])
    scores = multilabel_scores(probs, labels, threshold=0.5)
    # genre 0: predicted rows {0, 1}, true {0, 2}: tp 1, fp 1, fn 1
    # genre 1: predicted rows {2}, true {0, 2}: tp 1, fn 1
    assert scores["precision"].tolist() == pytest.approx([0.5, 1.0])
    assert scores["recall"].tolist() == pytest.approx([0.5, 0.5])
    assert scores["f1"].tolist() == pytest.approx([0.5, 2 / 3])
    assert float(scores["f1_micro"]) == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))  # tp 2, fp 1, fn 2
    assert float(scores["f1_macro"]) == pytest.approx((0.5 + 2 / 3) / 2)
    p, r = 2 / 3, 2 / 4
    assert float(scores["f2_micro"]) == pytest.approx(5 * p * r / (4 * p + r))
    # at 0.35 every true label is found and only one false positive remains: the best F1
    assert best_threshold(probs, labels, [0.35, 0.5, 0.65]) == 0.35


def test_attention_is_causal_by_default_and_bidirectional_with_a_padding_mask():
    torch.manual_seed(0)
    attention = CausalSelfAttention(GPTConfig(vocab_size=5, n_embd=8, n_head=2, dropout=0.0)).eval()
    x = torch.randn(1, 4, 8)
    changed_last = x.clone()
    changed_last[0, 3] += 1.0
    real = torch.ones(1, 4, dtype=torch.bool)
    assert torch.allclose(attention(x)[0, 0], attention(changed_last)[0, 0])  # causal: 0 cannot see 3
    assert not torch.allclose(
        attention(x, attend_to=real)[0, 0], attention(changed_last, attend_to=real)[0, 0]
    )


def test_encoder_ignores_padding():
    torch.manual_seed(0)
    encoder = TransformerEncoder(
        TransformerEncoderConfig(
            vocab_size=9, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0, n_outputs=3
        )
    )
    encoder.eval()
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    padded = torch.tensor([[3, 1, 4, 1, 5, 7, 7, 7]])
    mask = torch.tensor([[True] * 5 + [False] * 3])
    assert torch.allclose(encoder(ids), encoder(padded, mask), atol=1e-5)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier")
    train(compose_config(root, TINY_CLASSIFIER))
    return root / "run"


def test_tiny_classifier_loss_falls_and_reports_per_genre_scores(classifier_run):
    with open(classifier_run / "csv" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 50
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3  # ~1.2 (constant guess) to ~0.6
    validations = [r for r in rows if r.get("val/f1_micro")]
    assert len(validations) == 2 and "val/f1/drama" in validations[-1]
    assert 0.0 <= float(validations[-1]["val/f1_micro"]) <= 1.0
    report = (classifier_run / "genre_report.md").read_text(encoding="utf-8")
    assert "| drama |" in report and "| micro average |" in report and "threshold" in report


def test_checkpoint_holds_the_genre_vocabulary(classifier_run):
    checkpoint = read_checkpoint(classifier_run / "checkpoints" / "last.ckpt")
    model = checkpoint[SECTION]["model"]
    genres = model["options"]["genres"]
    assert "drama" in genres and "science fiction" in genres and genres == sorted(genres)
    assert model["net"]["config"]["n_outputs"] == len(genres) == len(model["options"]["pos_weight"])
    assert checkpoint["state_dict"]["pos_weight"].tolist() == pytest.approx(model["options"]["pos_weight"])
    assert max(model["options"]["pos_weight"]) > 1  # rarer genres weigh more


def test_predict_gives_a_probability_per_genre(classifier_run, tmp_path, capsys):
    ckpt = classifier_run / "checkpoints" / "last.ckpt"
    text = "A family moves into an old farmhouse where the cellar door will not stay shut."
    cfg = compose_config(tmp_path, [f"ckpt={ckpt}", f"text='{text}'"], config_name="predict")
    probabilities = predict(cfg)
    genres = read_checkpoint(ckpt)[SECTION]["model"]["options"]["genres"]
    assert sorted(probabilities) == sorted(genres)
    assert all(0.0 <= p <= 1.0 for p in probabilities.values())
    assert list(probabilities.values()) == sorted(probabilities.values(), reverse=True)
    assert "genre probabilities" in capsys.readouterr().out
    assert not math.isnan(sum(probabilities.values()))
