"""The GPT: cached and uncached decoding agree; sampling filters and settings behave."""

from __future__ import annotations

import pytest
import torch

from movielab.errors import MovielabError
from movielab.models.gpt import GPT, GPTConfig
from movielab.sampling import SamplingSettings, filter_logits, generate_tokens


def _tiny_gpt(block_size: int = 24) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=17, block_size=block_size, n_layer=2, n_head=2, n_embd=16, dropout=0.0))
    return model.eval()


def test_cached_decoding_gives_the_same_logits_as_a_full_forward():
    model = _tiny_gpt()
    tokens = torch.randint(0, 17, (3, 20), generator=torch.Generator().manual_seed(1))
    full = model(tokens)
    model.begin_decoding(batch_size=3)
    prefill = model.decode_step(tokens[:, :8], start=0)
    steps = [model.decode_step(tokens[:, i : i + 1], start=i) for i in range(8, 20)]
    chunk_model = _tiny_gpt()
    chunk_model.begin_decoding(batch_size=3)
    chunk_model.decode_step(tokens[:, :5], start=0)
    chunked = chunk_model.decode_step(tokens[:, 5:12], start=5)  # several new tokens at once
    model.end_decoding()
    torch.testing.assert_close(prefill, full[:, 7])
    torch.testing.assert_close(torch.stack(steps, dim=1), full[:, 8:20])
    torch.testing.assert_close(chunked, full[:, 11])


def test_cached_and_uncached_generation_sample_the_same_tokens():
    model = _tiny_gpt()
    prompt = torch.tensor([[1, 2, 3, 4]]).expand(2, -1)
    outputs = []
    for use_cache in (True, False):
        settings = SamplingSettings(temperature=1.0, max_new_tokens=16, use_cache=use_cache)
        outputs.append(generate_tokens(model, prompt, settings, generator=torch.Generator().manual_seed(5)))
    assert outputs[0].shape == (2, 16)
    assert torch.equal(outputs[0], outputs[1])


def test_generation_continues_past_the_context_window():
    model = _tiny_gpt(block_size=8)
    settings = SamplingSettings(max_new_tokens=30)
    out = generate_tokens(
        model, torch.tensor([[1, 2, 3]]), settings, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (1, 30)


def test_generation_stops_when_every_row_emitted_the_stop_sequence():
    model = _tiny_gpt()

    class AlwaysSeven(torch.nn.Module):
        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(*hidden.shape[:-1], 17)
            logits[..., 7] = 100.0
            return logits

    model.lm_head = AlwaysSeven()
    out = generate_tokens(
        model, torch.tensor([[1, 2], [3, 4]]), SamplingSettings(max_new_tokens=50), stop=[7, 7]
    )
    assert out.shape == (2, 2) and (out == 7).all()


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept_k = filter_logits(logits, SamplingSettings(temperature=1.0, top_k=2)).isfinite()
    assert kept_k.tolist() == [[True, True, False, False]]
    kept_p = filter_logits(logits, SamplingSettings(temperature=1.0, top_p=0.8)).isfinite()
    assert kept_p.tolist() == [[True, True, False, False]]
    kept_p_small = filter_logits(logits, SamplingSettings(temperature=1.0, top_p=0.1)).isfinite()
    assert kept_p_small.tolist() == [[True, False, False, False]]


def test_temperature_sharpens():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    cold = filter_logits(logits, SamplingSettings(temperature=0.5)).softmax(-1)
    hot = filter_logits(logits, SamplingSettings(temperature=2.0)).softmax(-1)
    assert cold[0, 0] > logits.softmax(-1)[0, 0] > hot[0, 0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": 0.0}, "temperature=0.0 must be greater than 0"),
        ({"temperature": -1.0}, "temperature=-1.0 must be greater than 0"),
        ({"top_p": 0.0}, r"top_p=0.0 must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p=1.5 must be in \(0, 1\]"),
        ({"top_k": 0}, "top_k=0 must be at least 1"),
    ],
)
def test_bad_sampling_settings(options, message):
    with pytest.raises(MovielabError, match=message):
        SamplingSettings(**options)


def test_n_embd_must_divide_by_n_head():
    with pytest.raises(MovielabError, match="n_embd=100 must be divisible by n_head=3"):
        GPTConfig(vocab_size=10, n_embd=100, n_head=3)


def test_weights_are_tied():
    model = _tiny_gpt()
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
