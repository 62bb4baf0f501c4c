"""Condition prefixes: the GPT with a prefix decodes as its full forward, ratings map to the right
buckets, bad ratings get one-line errors, and the condition reaches the model."""

from __future__ import annotations

import math

import pytest
import torch

from movielab.errors import MovielabError
from movielab.generation import Request, generate_texts
from movielab.models.conditioning import RatingPrefix, RatingPrefixConfig
from movielab.models.gpt import GPT, GPTConfig, GPTDecoder
from movielab.models.next_token import logits_and_targets
from movielab.sampling import SamplingSettings
from tests.builders import VOCAB, char_sampler, tiny_language_model


def _tiny_gpt(block_size: int = 24) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=17, block_size=block_size, n_layer=2, n_head=2, n_embd=16, dropout=0.0))


def _rating(scale=(0.0, 10.0), **options) -> RatingPrefix:
    return RatingPrefix(RatingPrefixConfig(8, scale=scale, **options))


def _conditioned(scale=(0.0, 10.0), **config):
    return tiny_language_model(
        conditions={"rating": ("rating_prefix", {"scale": list(scale)})}, vocab_size=VOCAB, **config
    )


def test_prefix_logits_start_at_the_last_prefix_position_and_match_cached_decoding():
    model = _tiny_gpt().eval()
    tokens = torch.randint(0, 17, (3, 10), generator=torch.Generator().manual_seed(1))
    prefix = torch.randn(3, 2, 16, generator=torch.Generator().manual_seed(2))
    full = model(tokens, prefix=prefix)
    assert full.shape == (3, 11, 17)
    decoder = GPTDecoder(model)
    first = [decoder.add(tokens[i, :0], prefix[i]) for i in range(3)]  # the prefix alone predicts token 0
    steps = [decoder.advance(tokens[:, i]) for i in range(10)]
    torch.testing.assert_close(torch.stack(first), full[:, 0])
    torch.testing.assert_close(torch.stack(steps, dim=1), full[:, 1:])
    # the prefix changes what follows, and without one the GPT is the plain GPT
    assert not torch.allclose(full[:, 1:], model(tokens))


def test_prefixed_sampling_past_the_context_is_the_same_cached_and_uncached_until_the_restart():
    sampler = char_sampler(_conditioned(block_size=12))
    requests = [
        Request({"rating": r}, SamplingSettings(temperature=1.0, max_new_tokens=30), 5 + i)
        for i, r in enumerate((2.0, 9.0))
    ]
    cached = generate_texts(sampler, requests, use_cache=True)
    uncached = generate_texts(sampler, requests, use_cache=False)
    assert all(r.new_tokens == 30 or not r.cut_off for r in cached)  # past the window: prefix fed again
    assert [r.text[:10] for r in cached] == [r.text[:10] for r in uncached]


def test_batched_rows_with_different_ratings_write_their_one_at_a_time_texts():
    sampler = char_sampler(_conditioned(block_size=32))
    settings = SamplingSettings(temperature=1.0, max_new_tokens=25)
    requests = [
        Request(p, settings, 3 + i)
        for i, p in enumerate(({"rating": 1.0}, {"rating": 9.5}, {}, {"rating": 5, "title": "ab"}))
    ]
    together = [r.text for r in generate_texts(sampler, requests)]
    alone = [generate_texts(sampler, [r])[0].text for r in requests]
    assert together == alone and len(set(together)) == 4


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
    encoder = _rating(scale).eval()
    assert encoder.buckets(torch.tensor([rating])).item() == bucket
    assert encoder.buckets(torch.tensor([math.nan])).item() == encoder.unknown


def test_ratings_0_and_10_generate_and_bad_ratings_get_one_line_errors():
    sampler = char_sampler(_conditioned())
    settings = SamplingSettings(max_new_tokens=5)
    for rating in (0.0, 10.0, 10):
        assert len(generate_texts(sampler, [Request({"rating": rating}, settings, 0)])) == 1
    for bad, message in [
        (10.01, r"rating=10\.01 is outside this model's rating scale \[0, 10\]"),
        (-1, r"rating=-1 is outside"),
        ("abc", r"rating='abc' is not a number; give one in \[0, 10\], e\.g\. rating=5$"),
        (True, r"rating=True is not a number"),
        (float("nan"), r"rating=nan is not a number"),
        ([1.0, 2.0], r"rating=\[1.0, 2.0\] is not a number"),
    ]:
        with pytest.raises(MovielabError, match=message) as error:
            generate_texts(sampler, [Request({"rating": bad}, settings, 0)])
        assert "\n" not in str(error.value)
    with pytest.raises(
        MovielabError, match="does not take genres; its prompt fields are title, prime, rating"
    ):
        generate_texts(sampler, [Request({"genres": ["drama"]}, settings, 0)])


def test_a_bad_rating_on_a_star_scale_gets_an_example_inside_that_scale():
    with pytest.raises(MovielabError, match=r"give one in \[0\.5, 5\], e\.g\. rating=2\.75$"):
        _rating((0.5, 5.0)).value("four stars")


def test_the_rating_reaches_the_model_and_its_gradient_reaches_the_rating_embedding():
    model = _conditioned()
    batch = {
        "inputs": torch.tensor([[3, 4, 5], [3, 4, 5]]),
        "targets": torch.tensor([[4, 5, 6], [4, 5, 6]]),
        "rating": torch.tensor([2.0, 9.0]),
    }
    logits, targets = logits_and_targets(model.net, model.conditions, batch)
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
    encoder = _rating((0, 10), drop_prob=0.5)
    torch.manual_seed(0)
    buckets = encoder.buckets(torch.full((1000,), 5.0))
    assert 400 < (buckets == encoder.unknown).sum() < 600
    encoder(torch.tensor([3.5, math.nan, 8.25]))
    assert encoder.seen_range.tolist() == [3.5, 8.25]
    encoder.eval()
    assert (encoder.buckets(torch.full((100,), 5.0)) == 50).all()  # no dropping outside training
    with pytest.raises(MovielabError, match=r"data.rating_scale=\[5, 1\] must be \[low, high\]"):
        _rating((5, 1))
