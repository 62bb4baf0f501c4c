"""The GPT decodes rows at their own positions exactly as a full forward; sampling settings behave."""

from __future__ import annotations

import random

import pytest
import torch

from movielab.data.templates import Template
from movielab.errors import MovielabError
from movielab.generation import Request, RowFinished, TextPiece, generate, generate_texts, held_back
from movielab.models.gpt import GPT, GPTConfig, GPTDecoder
from movielab.sampling import (
    SamplingSettings,
    draw_tokens,
    filter_logits,
    next_token_scores,
    penalize_repeats,
    repeated_ngram_tokens,
)
from tests.builders import VOCAB, char_sampler, tiny_language_model


def _tiny_gpt(block_size: int = 24) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=17, block_size=block_size, n_layer=2, n_head=2, n_embd=16, dropout=0.0))
    return model.eval()


def test_rows_at_different_positions_decode_the_logits_of_a_full_forward():
    model = _tiny_gpt()
    tokens = torch.randint(0, 17, (3, 20), generator=torch.Generator().manual_seed(1))
    full = model(tokens)
    decoder = GPTDecoder(model)
    prompt_lengths = [3, 8, 5]  # three rows, each prefilled with a prompt of its own length
    firsts = [decoder.add(tokens[i, :n], None) for i, n in enumerate(prompt_lengths)]
    for i, n in enumerate(prompt_lengths):
        torch.testing.assert_close(firsts[i], full[i, n - 1])
    for step in range(10):  # then one token a step, every row at its own position
        fed = torch.tensor([tokens[i, n + step] for i, n in enumerate(prompt_lengths)])
        logits = decoder.advance(fed)
        for i, n in enumerate(prompt_lengths):
            torch.testing.assert_close(logits[i], full[i, n + step])
    decoder.remove([1])  # the rows left go on with their own caches
    logits = decoder.advance(torch.tensor([tokens[0, 13], tokens[2, 15]]))
    torch.testing.assert_close(logits[0], full[0, 13])
    torch.testing.assert_close(logits[1], full[2, 15])


def test_rows_joining_together_and_leaving_anywhere_keep_the_logits_of_a_full_forward():
    """Rows prefilled together are padded to the longest; a row that leaves frees its cache slot
    for another row to move into: every row's logits stay those of a full forward of its own."""
    model = _tiny_gpt()
    rng = random.Random(3)
    texts = torch.randint(0, 17, (40, 22), generator=torch.Generator().manual_seed(2))
    full = model(texts)
    decoder, rows, fed = GPTDecoder(model), [], []  # rows: which text each decoder row writes
    for _ in range(30):
        joining = [t for t in range(40) if t not in rows][: rng.randint(0, 3)]
        lengths = [rng.randint(1, 10) for _ in joining]
        if joining:
            firsts = decoder.add_rows(
                [(texts[t, :n], None, None) for t, n in zip(joining, lengths, strict=True)]
            )
            for first, t, n in zip(firsts, joining, lengths, strict=True):
                torch.testing.assert_close(first, full[t, n - 1])
            rows, fed = rows + joining, fed + lengths
        leaving = sorted(rng.sample(range(len(rows)), k=min(len(rows), rng.randint(0, 2))))
        if leaving:
            decoder.remove(leaving)
            rows = [t for i, t in enumerate(rows) if i not in leaving]
            fed = [f for i, f in enumerate(fed) if i not in leaving]
        if rows:
            logits = decoder.advance(torch.tensor([texts[t, f] for t, f in zip(rows, fed, strict=True)]))
            for i, (t, f) in enumerate(zip(rows, fed, strict=True)):
                torch.testing.assert_close(logits[i], full[t, f])
            fed = [f + 1 for f in fed]
            done = [i for i, f in enumerate(fed) if f >= 22]
            if done:
                decoder.remove(done)
                rows = [t for i, t in enumerate(rows) if i not in done]
                fed = [f for i, f in enumerate(fed) if i not in done]


@pytest.mark.parametrize("vocab", [17, 97, 1000])
def test_batched_draws_are_the_tokens_torch_multinomial_draws_row_by_row(vocab):
    rows = 7
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(vocab)) * 3
    settings = [SamplingSettings(temperature=t) for t in (0.5, 1.0, 1.0, 2.0, 1.0, 0.7, 1.0)]
    settings[2] = SamplingSettings(repetition_penalty=1.3)  # a row filtered on its own
    histories = [[1, 2, 3]] * rows
    for trial in range(20):
        seeds = [100 * trial + row for row in range(rows)]
        drawn = draw_tokens(logits, histories, settings, [torch.Generator().manual_seed(s) for s in seeds])
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        one_by_one = [
            int(
                torch.multinomial(
                    next_token_scores(logits[i : i + 1], histories[i], settings[i]).softmax(-1),
                    1,
                    generator=generators[i],
                )
            )
            for i in range(rows)
        ]
        assert drawn == one_by_one


def _requests(prompts: list[dict], **settings) -> list[Request]:
    options = {"temperature": 1.0, "max_new_tokens": 40, **settings}
    return [Request(p, SamplingSettings(**options), 10 + i) for i, p in enumerate(prompts)]


def test_several_prompts_in_one_batch_give_each_row_its_one_at_a_time_text():
    sampler = char_sampler(tiny_language_model(vocab_size=VOCAB, block_size=32))
    requests = _requests([{"title": "a"}, {"title": "the long title"}, {}, {"title": "b", "prime": "zz"}])
    together = generate_texts(sampler, requests)
    alone = [generate_texts(sampler, [r])[0] for r in requests]
    assert [r.text for r in together] == [r.text for r in alone]
    assert len({r.text for r in together}) == 4
    assert together[1].text.startswith("the long title: ")
    assert together[3].text.startswith("b: zz")
    # a batch of two rows at a time, rows joining as others finish, changes nothing either
    assert [r.text for r in generate_texts(sampler, requests, max_batch=2)] == [r.text for r in alone]


def test_cached_and_uncached_generation_write_the_same_texts_past_the_context_window():
    sampler = char_sampler(tiny_language_model(vocab_size=VOCAB, block_size=12))
    requests = _requests([{"title": "ab"}, {"title": "a much longer title"}], max_new_tokens=30)
    cached = generate_texts(sampler, requests, use_cache=True)
    uncached = generate_texts(sampler, requests, use_cache=False)
    assert all(r.new_tokens == 30 or not r.cut_off for r in cached)
    # uncached re-runs the last 12 tokens each step, the cache restarts from the last 6: they agree
    # until the first restart, 12 tokens in
    assert [r.text[:14] for r in cached] == [r.text[:14] for r in uncached]


def test_streamed_pieces_add_up_to_each_final_text_and_never_show_the_stop():
    sampler = char_sampler(
        tiny_language_model(vocab_size=VOCAB), Template("{title}: {description}qq", stop="qq")
    )
    streamed: dict[int, str] = {}
    finished = {}
    for event in generate(sampler, _requests([{"title": "x"}, {"title": "yy"}, {}], max_new_tokens=60)):
        if isinstance(event, TextPiece):
            streamed[event.row] = streamed.get(event.row, "") + event.text
        elif isinstance(event, RowFinished):
            finished[event.row] = event.result.text
    assert streamed == finished and "qq" not in "".join(finished.values())


def test_generation_stops_at_the_stop_and_marks_what_was_cut_off():
    module = tiny_language_model(vocab_size=VOCAB)
    sampler = char_sampler(module)
    [period] = sampler.stop_ids()
    assert sampler.tokenizer.decode([period]) == "."

    class AlwaysStop(torch.nn.Module):
        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(*hidden.shape[:-1], VOCAB)
            logits[..., period] = 100.0
            return logits

    module.net.lm_head = AlwaysStop()
    [stopped] = generate_texts(sampler, _requests([{"title": "a"}]))
    assert stopped.text == "a: " and not stopped.cut_off and stopped.new_tokens == 1
    module.net.lm_head = torch.nn.Linear(16, VOCAB, bias=False)
    with torch.no_grad():
        module.net.lm_head.weight.zero_()
        module.net.lm_head.weight[period] = -100.0  # never the stop
    [cut] = generate_texts(sampler, _requests([{"title": "a"}], max_new_tokens=7))
    assert cut.cut_off and cut.new_tokens == 7


def test_top_k_and_top_p_and_min_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept_k = filter_logits(logits, SamplingSettings(temperature=1.0, top_k=2)).isfinite()
    assert kept_k.tolist() == [[True, True, False, False]]
    kept_p = filter_logits(logits, SamplingSettings(temperature=1.0, top_p=0.8)).isfinite()
    assert kept_p.tolist() == [[True, True, False, False]]
    kept_p_small = filter_logits(logits, SamplingSettings(temperature=1.0, top_p=0.1)).isfinite()
    assert kept_p_small.tolist() == [[True, False, False, False]]
    kept_min_p = filter_logits(logits, SamplingSettings(temperature=1.0, min_p=0.5)).isfinite()
    assert kept_min_p.tolist() == [[True, True, False, False]]  # 0.15 < 0.5 x 0.5


def test_repetition_penalty_and_no_repeat_ngrams_as_hugging_face_define_them():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    penalized = penalize_repeats(logits, torch.tensor([[0, 1]]), 2.0)
    assert penalized.tolist() == [[1.0, -2.0, 0.5, 3.0]]  # positive / 2, negative x 2, others kept
    assert sorted(repeated_ngram_tokens([1, 2, 3, 1, 2], 3)) == [3]  # "1 2" was followed by 3
    assert repeated_ngram_tokens([1, 2, 3], 3) == []
    assert sorted(repeated_ngram_tokens([4, 5, 4], 1)) == [4, 5]


def test_no_repeat_ngram_size_keeps_every_ngram_of_a_sample_unique():
    sampler = char_sampler(tiny_language_model(vocab_size=VOCAB, block_size=64))
    requests = _requests([{"title": "aa"}] * 3, max_new_tokens=50, no_repeat_ngram_size=2)
    for result in generate_texts(sampler, requests):
        ids = sampler.tokenizer.encode(result.text).tolist()
        pairs = list(zip(ids, ids[1:], strict=False))
        assert len(pairs) == len(set(pairs)), result.text


def test_temperature_sharpens():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    cold = filter_logits(logits, SamplingSettings(temperature=0.5)).softmax(-1)
    hot = filter_logits(logits, SamplingSettings(temperature=2.0)).softmax(-1)
    assert cold[0, 0] > logits.softmax(-1)[0, 0] > hot[0, 0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": 0.0}, "temperature=0 must be greater than 0"),
        ({"temperature": -1.0}, "temperature=-1 must be greater than 0"),
        ({"temperature": "abc"}, "temperature='abc' must be a finite number"),
        ({"temperature": float("nan")}, "temperature=nan must be a finite number"),
        ({"top_p": 0.0}, r"top_p=0 must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p=1.5 must be in \(0, 1\]"),
        ({"top_k": 0}, "top_k=0 must be at least 1"),
        ({"top_k": 2.5}, "top_k=2.5 must be an integer"),
        ({"top_k": True}, "top_k=True must be an integer"),
        ({"min_p": 1.0}, r"min_p=1 must be in \[0, 1\)"),
        ({"repetition_penalty": 0}, "repetition_penalty=0 must be greater than 0"),
        ({"no_repeat_ngram_size": 0}, "no_repeat_ngram_size=0 must be at least 1"),
        ({"max_new_tokens": 0}, "max_new_tokens=0 must be at least 1"),
    ],
)
def test_bad_sampling_settings(options, message):
    with pytest.raises(MovielabError, match=message) as error:
        SamplingSettings(**options)
    assert "\n" not in str(error.value)


def test_n_embd_must_divide_by_n_head():
    with pytest.raises(MovielabError, match="n_embd=100 must be divisible by n_head=3"):
        GPTConfig(vocab_size=10, n_embd=100, n_head=3)


def test_weights_are_tied():
    model = _tiny_gpt()
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()


def test_the_beginning_of_the_stop_is_held_back_until_the_stop_is_known():
    assert held_back("a story q", "qq") == 1
    assert held_back("a story", "qq") == 0
    assert held_back("caf\ufffd", None) == 1  # half a character
    module = tiny_language_model(vocab_size=VOCAB)
    sampler = char_sampler(module, Template("{title}: {description}qq", stop="qq"))
    [q] = sampler.tokenizer.encode("q").tolist()

    class AlwaysQ(torch.nn.Module):
        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(*hidden.shape[:-1], VOCAB)
            logits[..., q] = 100.0
            return logits

    module.net.lm_head = AlwaysQ()
    pieces = [e.text for e in generate(sampler, _requests([{"title": "x"}])) if isinstance(e, TextPiece)]
    assert "".join(pieces) == "x: " and not any("q" in piece for piece in pieces)
