"""Condition prefixes: the GPT with a prefix agrees cached and uncached, ratings map to the right
buckets, bad ratings get one-line errors, and the condition reaches the model."""

from __future__ import annotations

import math

import pytest
import torch

from movielab.errors import MovielabError
from movielab.models.conditioning import PrefixedDecoder, RatingPrefix
from movielab.models.gpt import GPT, GPTConfig
from movielab.models.language_model import CausalLanguageModel
from movielab.sampling import SamplingSettings, generate_tokens


def _tiny_gpt(block_size: int = 24) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=17, block_size=block_size, n_layer=2, n_head=2, n_embd=16, dropout=0.0))


def _conditioned_model(scale=(0.0, 10.0)) -> CausalLanguageModel:
    net = _tiny_gpt()
    model = CausalLanguageModel(
        net, optimizer=torch.optim.AdamW, conditions={"rating": RatingPrefix(16, scale=scale)}
    )
    return model.eval()


def test_prefix_logits_start_at_the_last_prefix_position_and_match_cached_decoding():
    model = _tiny_gpt().eval()
    tokens = torch.randint(0, 17, (3, 10), generator=torch.Generator().manual_seed(1))
    prefix = torch.randn(3, 2, 16, generator=torch.Generator().manual_seed(2))
    full = model(tokens, prefix=prefix)
    assert full.shape == (3, 11, 17)
    decoder = PrefixedDecoder(model, prefix)
    decoder.begin_decoding(3)
    first = decoder.decode_step(tokens[:, :0], 0)  # the prefix alone predicts the first token
    steps = [decoder.decode_step(tokens[:, i : i + 1], i) for i in range(10)]
    decoder.end_decoding()
    torch.testing.assert_close(first, full[:, 0])
    torch.testing.assert_close(torch.stack(steps, dim=1), full[:, 1:])
    # the prefix changes what follows, and without one the GPT is the plain GPT
    assert not torch.allclose(full[:, 1:], model(tokens))


def test_prefixed_sampling_from_an_empty_prompt_is_the_same_cached_and_uncached():
    model = _tiny_gpt(block_size=12).eval()
    prefix = torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(0))
    outputs = []
    for use_cache in (True, False):
        settings = SamplingSettings(temperature=1.0, max_new_tokens=30, use_cache=use_cache)
        decoder = PrefixedDecoder(model, prefix)
        empty = torch.zeros(2, 0, dtype=torch.long)
        outputs.append(generate_tokens(decoder, empty, settings, generator=torch.Generator().manual_seed(5)))
    assert outputs[0].shape == (2, 30)  # past the context window: the prefix is fed again
    assert torch.equal(outputs[0][:, :10], outputs[1][:, :10])


@pytest.mark.parametrize(
    ("scale", "rating", "bucket"),
    [
        ((0, 10), 0.0, 0),
        ((0, 10), 10.0, 100),
        ((0, 10), 7.8, 78),
        ((0.5, 5.0), 5.0, 100),
        ((0.5, 5.0), 0.5, 0),
    ],
)
def test_ratings_map_to_tenths_of_the_scale(scale, rating, bucket):
    encoder = RatingPrefix(8, scale=scale).eval()
    assert encoder.buckets(torch.tensor([rating])).item() == bucket
    assert encoder.buckets(torch.tensor([math.nan])).item() == encoder.unknown


def test_ratings_0_and_10_generate_and_bad_ratings_get_one_line_errors():
    model = _conditioned_model()
    from movielab.data.templates import Template
    from movielab.data.tokenizers import CharTokenizer

    tokenizer = CharTokenizer(list("abcdefghijklmno"))
    template = Template("{title}.", stop=".")
    settings = SamplingSettings(max_new_tokens=5)
    for rating in (0.0, 10.0, 10, [0.0, 10.0]):
        texts = model.generate_text(tokenizer, template, 2, settings, rating=rating)
        assert len(texts) == 2
    for bad, message in [
        (10.01, r"rating=10\.01 is outside this model's rating scale \[0, 10\]"),
        (-1, r"rating=-1 is outside"),
        ("abc", r"rating='abc' is not a number"),
        (True, r"rating=True is not a number"),
        (float("nan"), r"rating=nan is not a number"),
        ([1.0, 2.0, 3.0], r"rating has 3 values: give one, or one per sample \(num_samples=2\)"),
    ]:
        with pytest.raises(MovielabError, match=message) as error:
            model.generate_text(tokenizer, template, 2, settings, rating=bad)
        assert "\n" not in str(error.value)
    with pytest.raises(MovielabError, match="does not take genres; .* its conditions are rating"):
        model.generate_text(tokenizer, template, 2, settings, genres=["drama"])


def test_the_rating_reaches_the_model_and_its_gradient_reaches_the_rating_embedding():
    model = _conditioned_model()
    batch = {
        "inputs": torch.tensor([[3, 4, 5], [3, 4, 5]]),
        "targets": torch.tensor([[4, 5, 6], [4, 5, 6]]),
        "rating": torch.tensor([2.0, 9.0]),
    }
    logits, targets = model._logits_and_targets(batch)
    assert targets[:, 0].tolist() == [3, 3]  # the prefix's position predicts the first token
    first_token = logits[:, 0].softmax(-1)
    assert (first_token[0] - first_token[1]).abs().max() > 1e-4
    model.train()
    loss, count = model._loss(batch)
    assert count == 8
    loss.backward()
    grad = model.conditions["rating"].embedding.weight.grad
    assert grad[20].abs().sum() > 0 and grad[90].abs().sum() > 0 and grad[50].abs().sum() == 0


def test_unknown_and_dropped_ratings_use_the_unknown_embedding_and_training_tracks_the_range():
    encoder = RatingPrefix(8, scale=(0, 10), drop_prob=0.5)
    torch.manual_seed(0)
    buckets = encoder.buckets(torch.full((1000,), 5.0))
    assert 400 < (buckets == encoder.unknown).sum() < 600
    encoder(torch.tensor([3.5, math.nan, 8.25]))
    assert encoder.seen_range.tolist() == [3.5, 8.25]
    encoder.eval()
    assert (encoder.buckets(torch.full((100,), 5.0)) == 50).all()  # no dropping outside training
    with pytest.raises(MovielabError, match=r"data.rating_scale=\[5, 1\] must be \[low, high\]"):
        RatingPrefix(8, scale=(5, 1))
