"""The text GAN: generator shapes, causality, soft outputs with gradients into the critic, the
gradient penalty, a few WGAN-GP steps end to end, exact resume, and sampling from a checkpoint."""

from __future__ import annotations

import csv
import math
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from movielab.checkpoint import read_checkpoint
from movielab.cli.generate import generate_samples
from movielab.cli.train import train
from movielab.errors import MovielabError, user_errors_reported
from movielab.generation import Request, generate_texts
from movielab.models.spec import ModelSpec, Part
from movielab.models.text_gan import sinusoidal_positions
from movielab.models.text_gan_module import TextGANModule, seeded
from movielab.sampling import SamplingSettings
from tests.conftest import compose_config

VOCAB = 12
PAD, END = 0, 2


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The GAN writes a sentence position by position: many small ops, which two threads on a busy
    two-core machine slow down several-fold instead of speeding up."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_module(**options) -> TextGANModule:
    torch.manual_seed(0)
    config = {
        "vocab_size": VOCAB,
        "max_length": 6,
        "n_embd": 16,
        "n_head": 2,
        "generator_layers": 2,
        "discriminator_layers": 1,
        "noise_dim": 8,
        "noise_length": 3,
        "mapping_layers": 2,
    }
    options = {"fake_batch_size": 4, "pad_id": PAD, "end_id": END, **options}
    adam = partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.9))
    module = TextGANModule(ModelSpec("text_gan", Part("text_gan", config), options=options), adam, adam)
    for block in module.generator.blocks:  # noise strengths start at zero; make the noise matter
        torch.nn.init.normal_(block.noise_strength)
    return module


def real_batch() -> dict[str, torch.Tensor]:
    targets = torch.tensor(
        [[5, 6, 7, END, -100], [8, 9, END, -100, -100], [5, 9, 6, 7, END], [4, END, -100, -100, -100]]
    )
    return {"targets": targets}


def test_generator_writes_a_distribution_per_position():
    module = tiny_module()
    noise = module.generator.sample_noise(3, "cpu", seeded(0, 1))
    logits, chosen = module.generator.rollout(noise, module.training_choice(None))
    assert logits.shape == chosen.shape == (3, 6, VOCAB)
    torch.testing.assert_close(chosen.sum(-1), torch.ones(3, 6))
    assert chosen.min() > 0 and chosen.max() < 1  # soft vectors, not argmax tokens


def test_rollout_is_the_teacher_forced_forward_on_its_own_outputs():
    """One path: the step-by-step rollout computes exactly what the parallel forward computes
    when fed the vectors the rollout fed back."""
    module = tiny_module()
    noise = module.generator.sample_noise(3, "cpu", seeded(0, 2))
    logits, chosen = module.generator.rollout(noise, module.training_choice(None))
    torch.testing.assert_close(module.generator(chosen[:, :-1], noise), logits, atol=1e-5, rtol=1e-5)


def test_generator_attention_is_causal():
    module = tiny_module()
    generator = module.generator
    noise = generator.sample_noise(2, "cpu", seeded(0, 3))
    previous = torch.softmax(torch.randn(2, 5, VOCAB), dim=-1)
    logits = generator(previous, noise)
    changed = previous.clone()
    changed[:, 3] = torch.softmax(torch.randn(2, VOCAB), dim=-1)  # the input of position 4
    after = generator(changed, noise)
    torch.testing.assert_close(after[:, :4], logits[:, :4])
    assert not torch.allclose(after[:, 4:], logits[:, 4:])
    noise.per_position[:, :, 2] += 1.0  # noise at position 2 reaches positions 2.. only
    after = generator(previous, noise)
    torch.testing.assert_close(after[:, :2], logits[:, :2])
    assert not torch.allclose(after[:, 2], logits[:, 2])


def test_positional_encoding_is_the_sinusoid_of_the_position():
    table = sinusoidal_positions(10, 8)
    for position, i in [(0, 0), (3, 1), (9, 3)]:
        angle = position / 10000 ** (2 * i / 8)
        assert table[position, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[position, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert torch.cdist(table, table).add(torch.eye(10)).min() > 0.1  # every position distinct


@pytest.mark.parametrize("feedback", ["soft", "gumbel"])
def test_critic_receives_generator_outputs_with_gradients(feedback):
    module = tiny_module(feedback=feedback)
    seen = []
    module.discriminator.project.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    loss = module.generator_loss(4, seeded(0, 4))
    (vectors,) = seen
    assert vectors.shape == (4, 6, VOCAB) and vectors.requires_grad
    if feedback == "soft":
        assert vectors.max() < 1  # softmax outputs, not tokens
    else:
        assert set(vectors.detach().unique().tolist()) == {0.0, 1.0}  # straight-through one-hots
    loss.backward()
    for name, parameter in module.generator.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_gradient_penalty_equals_the_penalty_on_vocabulary_sized_interpolates():
    module = tiny_module(real_smoothing=0.1)
    critic = module.discriminator
    real_ids = module.real_ids(real_batch())
    fake = torch.softmax(torch.randn(4, 6, VOCAB), dim=-1)

    penalty = module.gradient_penalty(module.real_embedded(real_ids), critic.project(fake), seeded(0, 5))
    (fast_grad,) = torch.autograd.grad(penalty, critic.project.weight)

    real = F.one_hot(real_ids, VOCAB).float() * 0.9 + 0.1 / VOCAB
    alpha = torch.rand(4, 1, 1, generator=seeded(0, 5))
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    dense = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
    (dense_grad,) = torch.autograd.grad(dense, critic.project.weight)
    torch.testing.assert_close(penalty, dense, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast_grad, dense_grad, atol=1e-5, rtol=1e-4)


def test_real_sentences_are_padded_targets():
    module = tiny_module()
    ids = module.real_ids(real_batch())
    assert ids.shape == (4, 6)
    assert ids[1].tolist() == [8, 9, END, PAD, PAD, PAD]
    with pytest.raises(MovielabError, match="max_length=6"):
        module.real_ids({"targets": torch.zeros(1, 7, dtype=torch.long)})


class Words:
    """A tokenizer of ids as words w0, w1, ...; w3 is <unknown>."""

    kind = "word"
    unknown_id = 3

    def decode(self, ids):  # noqa: ANN001, ANN201
        return " ".join(f"w{i}" for i in ids)


def test_the_gan_takes_no_prompt():
    sampler = tiny_module().text_sampler(Words())
    with pytest.raises(MovielabError, match="takes no prompt; remove title"):
        generate_texts(sampler, [Request({"title": "Up"}, SamplingSettings(), 0)])


def test_generated_sentences_never_contain_the_unknown_token_and_end_at_end():
    """As the language models: <unknown> is banned from what is written (not from what is fed back)."""
    module = tiny_module().eval()
    with torch.no_grad():
        module.generator.head.bias.fill_(0.0)
        module.generator.head.bias[Words.unknown_id] = 8.0  # <unknown> would be nearly every token
    settings = SamplingSettings(temperature=1.0, top_p=None, max_new_tokens=6)
    results = generate_texts(module.text_sampler(Words()), [Request({}, settings, i) for i in range(16)])
    texts = [r.text for r in results]
    assert texts and all(f"w{Words.unknown_id}" not in text.split() for text in texts)
    assert all(f"w{END}" not in text.split() and f"w{PAD}" not in text.split() for text in texts)
    assert all(r.new_tokens <= 6 and not r.cut_off for r in results)  # max_length ends a sentence


@pytest.mark.parametrize("feedback", ["soft", "gumbel"])
def test_row_by_row_sampling_is_the_training_rollout(feedback):
    """The decoder writes position by position what `rollout` computes in one go, for the noise
    of the row's seed: the same logits at every position, soft or Gumbel feedback."""
    module = tiny_module(feedback=feedback).eval()
    sampler = module.text_sampler(Words())
    decoder = sampler.decoder()
    generator = torch.Generator().manual_seed(4)
    first = decoder.add(torch.zeros(0, dtype=torch.long), None, generator)
    noise = module.generator.sample_noise(1, "cpu", torch.Generator().manual_seed(4))
    tokens = [5, 6, 7, 8, 9]
    if feedback == "soft":
        choose = module.training_choice(None)
    else:
        steps = iter([*tokens, 0])  # rollout also chooses after the last position
        choose = lambda logits: F.one_hot(torch.tensor([next(steps)]), VOCAB).float()  # noqa: E731
    with torch.no_grad():
        logits, _ = module.generator.rollout(noise, choose, 6)
    steps_logits = [first] + [decoder.advance(torch.tensor([t]))[0] for t in tokens]
    torch.testing.assert_close(torch.stack(steps_logits), logits[0], rtol=1e-5, atol=1e-5)


# --- end to end on the bundled sample ---------------------------------------------------------

TINY_GAN = [
    "experiment=text_gan",
    "model.net.config.n_embd=16",
    "model.net.config.n_head=2",
    "model.net.config.generator_layers=1",
    "model.net.config.discriminator_layers=1",
    "model.net.config.noise_dim=8",
    "model.net.config.mapping_layers=2",
    "model.net.config.max_length=16",
    "model.critic_steps=3",
    "model.pretrain_steps=2",
    "callbacks.generated_text_metrics.num_samples=8",
    "data.batching.batch_size=8",
    "trainer.max_steps=10",  # 2 MLE steps, then 2 cycles of 3 critic steps + 1 generator step
    "trainer.val_check_interval=4",  # batches: the first checkpoint falls inside a cycle
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "~callbacks.throughput",
    "logger=csv",
]


class InitialWeights(L.Callback):
    """Keeps the weights a run started from (class-level: train() builds the instance)."""

    weights: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        InitialWeights.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


class CrashAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gan")
    train(compose_config(root, [*TINY_GAN, "+callbacks.initial._target_=tests.test_text_gan.InitialWeights"]))
    return root / "run"


def test_a_few_gan_steps_run_without_nan_and_train_both_networks(gan_run):
    with open(gan_run / "csv" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = {name for row in rows for name, value in row.items() if value}
    for name in ("train/mle_loss", "train/critic_loss", "train/gradient_penalty", "train/wasserstein"):
        assert name in logged, name
    values = [float(v) for row in rows for k, v in row.items() if v and k.startswith(("train/", "val/"))]
    assert values and all(math.isfinite(v) for v in values)

    checkpoint = read_checkpoint(gan_run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 10
    final, initial = checkpoint["state_dict"], InitialWeights.weights
    for network in ("net.generator.", "net.discriminator."):
        names = [k for k in final if k.startswith(network) and final[k].is_floating_point()]
        assert names and any(not torch.equal(final[k], initial[k]) for k in names), network
    assert int(final["batches_trained"]) == 8  # 2 MLE + 6 critic steps


def test_generate_command_samples_sentences_from_the_gan(gan_run, tmp_path):
    ckpt = gan_run / "checkpoints" / "last.ckpt"
    options = [f"ckpt={ckpt}", "num_samples=5", "seed=3", "save=false"]
    texts = [r.text for r in generate_samples(compose_config(tmp_path, options, config_name="generate"))]
    assert len(texts) == 5 and all(isinstance(t, str) for t in texts)
    assert not any(token in t for t in texts for token in ("<pad>", "<end>", "<start>"))
    again = generate_samples(compose_config(tmp_path, options, config_name="generate"))
    assert [r.text for r in again] == texts
    greedy = generate_samples(compose_config(tmp_path, [*options, "top_k=1"], config_name="generate"))
    assert len(greedy) == 5
    with pytest.raises(MovielabError, match="takes no prompt"):
        generate_samples(compose_config(tmp_path, [*options, "title=Up"], config_name="generate"))


def test_gan_resumed_mid_cycle_matches_an_uninterrupted_run(gan_run, tmp_path):
    """The checkpoint after 4 batches falls inside a critic cycle: the resumed run must rewrite
    that cycle's fakes and continue exactly (weights and both optimizers' moments)."""
    crash = ["+callbacks.crash._target_=tests.test_text_gan.CrashAtStep", "+callbacks.crash.step=4"]
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(compose_config(tmp_path / "killed", [*TINY_GAN, *crash]))
    halfway = tmp_path / "killed" / "run" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(halfway)["global_step"] == 4
    train(compose_config(tmp_path / "resumed", [*TINY_GAN, f"ckpt_path={halfway}"]))

    full = read_checkpoint(gan_run / "checkpoints" / "last.ckpt")
    resumed = read_checkpoint(tmp_path / "resumed" / "run" / "checkpoints" / "last.ckpt")
    assert full["global_step"] == resumed["global_step"] == 10
    for name, tensor in full["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
    for full_optimizer, resumed_optimizer in zip(
        full["optimizer_states"], resumed["optimizer_states"], strict=True
    ):
        for key, moments in full_optimizer["state"].items():
            assert torch.equal(moments["exp_avg"], resumed_optimizer["state"][key]["exp_avg"])


def test_lightning_gradient_clipping_is_refused_in_one_line(tmp_path, capsys):
    cfg = compose_config(tmp_path, ["model=text_gan", "data=fortunes", "trainer.gradient_clip_val=1.0"])
    with pytest.raises(SystemExit) as exit_, user_errors_reported():
        train(cfg)
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: Automatic gradient clipping is not supported")
