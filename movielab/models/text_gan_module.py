"""WGAN-GP training of the text GAN: manual optimisation of a critic and a generator, optional MLE
pre-training of the generator, and sampling through the generator's training path.

Batch k of the run (a fresh padded batch of real sentences) drives one optimizer step:
k < pretrain_steps: an MLE step of the generator; afterwards every batch is one critic step and
every `critic_steps`-th critic step is followed by one generator step. Lightning counts every
optimizer step in `trainer.global_step` (and so in `trainer.max_steps`): a GAN cycle of 6 critic
steps and 1 generator step is 7 steps.

All noise is drawn from generators seeded by (seed, cycle or batch, purpose), so a resumed run
writes the same fake sentences as an uninterrupted one: the fakes of one cycle's critic steps
are written in one batch at the cycle's first step (the generator does not change within a
cycle), and rewritten identically when a run resumes mid-cycle.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from movielab import metrics
from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.errors import MovielabError
from movielab.models.text_gan import ChooseNext, TextGAN
from movielab.sampling import GeneratedTexts, SamplingSettings, sample_next

FEEDBACKS = ("soft", "gumbel")
# purposes of seeded noise, so no two uses of one cycle or batch share random numbers
CRITIC_FAKES, GENERATOR_FAKES, PRETRAIN_NOISE, VAL_NOISE, VAL_FAKES, VAL_SAMPLES, PENALTY_MIX = range(7)


def seeded(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def special_token_id(tokenizer: Tokenizer, token: str) -> int:
    """The id of a special token; the GAN needs a tokenizer that has them (the word tokenizer)."""
    token_id = getattr(tokenizer, "token_id", None)
    if token_id is None:
        raise MovielabError(
            f"the text GAN needs a tokenizer with a '{token}' token (data.tokenizer.kind=word with "
            f"options.specials); the {tokenizer.kind} tokenizer has none"
        )
    return int(token_id(token))


class TextGANModule(L.LightningModule):
    """`net` holds the generator and the critic; optimizers are factories (Hydra `_partial_`).

    feedback: "soft" feeds back (and shows the critic) the softmax at each position, as the
    reference does; "gumbel" a straight-through Gumbel-softmax sample (one-hot forward, softmax
    gradients). real_smoothing: real one-hot vectors become (1 - e) one-hot + e / vocab.
    """

    def __init__(
        self,
        net: TextGAN,
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        generator_optimizer: Callable[..., torch.optim.Optimizer],
        pretrain_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        critic_steps: int = 6,
        gp_weight: float = 10.0,
        pretrain_steps: int = 0,
        fake_batch_size: int = 64,
        feedback: str = "soft",
        gumbel_temperature: float = 1.0,
        real_smoothing: float = 0.0,
        pad_token: str = "<pad>",
        end_token: str = "<end>",
        val_samples: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if feedback not in FEEDBACKS:
            raise MovielabError(f"model.feedback='{feedback}' is not one of {', '.join(FEEDBACKS)}")
        if critic_steps < 1 or fake_batch_size < 1 or pretrain_steps < 0:
            raise MovielabError(
                "model.critic_steps and model.fake_batch_size must be at least 1, "
                "model.pretrain_steps at least 0"
            )
        if not 0.0 <= real_smoothing < 1.0:
            raise MovielabError(f"model.real_smoothing={real_smoothing} must be in [0, 1)")
        if pretrain_steps and pretrain_optimizer is None:
            raise MovielabError("model.pretrain_steps > 0 needs model.pretrain_optimizer")
        self.automatic_optimization = False
        self.net = net
        self.config = net.config
        self.critic_optimizer_factory = critic_optimizer
        self.generator_optimizer_factory = generator_optimizer
        self.pretrain_optimizer_factory = pretrain_optimizer
        self.critic_steps = critic_steps
        self.gp_weight = gp_weight
        self.pretrain_steps = pretrain_steps
        self.fake_batch_size = fake_batch_size
        self.feedback = feedback
        self.gumbel_temperature = gumbel_temperature
        self.real_smoothing = real_smoothing
        self.pad_token, self.end_token = pad_token, end_token
        self.val_samples = val_samples
        self.seed = seed
        # batches trained so far (MLE + critic steps): decides the phase; saved, so resume is exact
        self.register_buffer("batches_trained", torch.zeros((), dtype=torch.long))
        # <pad> and <end> ids, from the tokenizer at fit start; saved so a checkpoint has them
        self.register_buffer("special_ids", torch.full((2,), -1, dtype=torch.long))
        self.register_buffer("val_loss_best", torch.tensor(float("inf")))
        self._fake_pool: tuple[int, torch.Tensor] | None = None
        self.val_nll = MeanMetric()
        self.val_wasserstein = MeanMetric()
        self._val_references: list[str] = []

    @property
    def generator(self):  # noqa: ANN201
        return self.net.generator

    @property
    def discriminator(self):  # noqa: ANN201
        return self.net.discriminator

    def set_special_tokens(self, tokenizer: Tokenizer) -> None:
        ids = [special_token_id(tokenizer, self.pad_token), special_token_id(tokenizer, self.end_token)]
        self.special_ids.copy_(torch.tensor(ids))

    @property
    def pad_id(self) -> int:
        pad = int(self.special_ids[0])
        if pad < 0:
            raise RuntimeError("the <pad> id is not set: call set_special_tokens(tokenizer) first")
        return pad

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            self.set_special_tokens(datamodule.tokenizer)

    # --- data ---------------------------------------------------------------------------------
    def real_ids(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The sentences the generator should write: next-token targets, <pad> after the end,
        padded to max_length (batch, max_length)."""
        targets = batch["targets"]
        length = self.config.max_length
        if targets.size(1) > length:
            raise MovielabError(
                f"a batch holds sentences of {targets.size(1)} tokens, more than model.net.config."
                f"max_length={length}; set data.batching.max_length (and data.max_tokens) to it"
            )
        ids = F.pad(targets, (0, length - targets.size(1)), value=-100)
        return ids.masked_fill(ids == -100, self.pad_id)

    def real_embedded(self, ids: torch.Tensor) -> torch.Tensor:
        """The critic's projection of (smoothed) one-hot real sentences, without building the one-hots:
        W((1 - e) onehot + e / V) = (1 - e) W[:, id] + e * mean(W)."""
        weight = self.discriminator.project.weight  # (embedding, vocab)
        embedded = F.embedding(ids, weight.t())
        if self.real_smoothing:
            embedded = (1 - self.real_smoothing) * embedded + self.real_smoothing * weight.mean(dim=1)
        return embedded

    # --- the generator's one path ------------------------------------------------------------
    def training_choice(self, generator: torch.Generator | None) -> ChooseNext:
        if self.feedback == "soft":
            return lambda logits: logits.softmax(dim=-1)
        tau = self.gumbel_temperature

        def gumbel(logits: torch.Tensor) -> torch.Tensor:
            uniform = torch.rand(logits.shape, device=logits.device, generator=generator)
            gumbels = -torch.log(-torch.log(uniform.clamp_min(1e-10)))
            soft = ((logits + gumbels) / tau).softmax(dim=-1)
            hard = F.one_hot(soft.argmax(dim=-1), soft.size(-1)).to(soft.dtype)
            return hard - soft.detach() + soft  # straight-through: one-hot forward, soft gradients

        return gumbel

    def generate_vectors(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Fake sentences as the critic sees them (batch, max_length, vocab)."""
        noise = self.generator.sample_noise(batch_size, self.device, generator)
        _, chosen = self.generator.rollout(noise, self.training_choice(generator))
        return chosen

    # --- losses ------------------------------------------------------------------------------
    def gradient_penalty(
        self,
        real_embedded: torch.Tensor,
        fake_embedded: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """E[(||grad_x D(x)|| - 1)^2] at random points between real and fake sentences (Gulrajani
        et al.), the gradient taken with respect to the vocabulary-sized input x.

        The critic's first layer is linear (e = W x), so grad_x = W^T grad_e and
        ||grad_x||^2 = sum over positions of grad_e^T (W W^T) grad_e: the same penalty, computed in
        the embedding space without materialising vocabulary-sized interpolates. Both inputs come
        projected: W x_real and W x_fake, so W x_mixed is their mix.
        """
        critic = self.discriminator
        n = min(real_embedded.size(0), fake_embedded.size(0))
        alpha = torch.rand(n, 1, 1, device=real_embedded.device, generator=generator).to(real_embedded.dtype)
        mixed = alpha * real_embedded[:n] + (1 - alpha) * fake_embedded[:n]
        scores = critic.score_embedded(mixed)
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        gram = critic.project.weight @ critic.project.weight.t()  # (embedding, embedding)
        squared_norm = ((grad @ gram) * grad).sum(dim=(1, 2))
        return ((squared_norm + 1e-12).sqrt() - 1).pow(2).mean()

    def critic_losses(
        self, real_ids: torch.Tensor, fake_vectors: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        critic = self.discriminator
        real_embedded = self.real_embedded(real_ids)
        fake_embedded = critic.project(fake_vectors)
        scores = critic.score_embedded(torch.cat([real_embedded, fake_embedded]))  # one pass for both
        wasserstein = scores[: real_ids.size(0)].mean() - scores[real_ids.size(0) :].mean()
        penalty = self.gradient_penalty(real_embedded, fake_embedded, generator)
        return {
            "critic_loss": -wasserstein + self.gp_weight * penalty,
            "gradient_penalty": penalty,
            "wasserstein": wasserstein,
        }

    def generator_loss(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return -self.discriminator(self.generate_vectors(batch_size, generator)).mean()

    def teacher_forced_logits(self, real_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = self.generator.sample_noise(real_ids.size(0), self.device, generator)
        previous = F.one_hot(real_ids[:, :-1], self.config.vocab_size).float()
        return self.generator(previous, noise)

    # --- training ----------------------------------------------------------------------------
    def configure_optimizers(self):  # noqa: ANN201
        optimizers = [
            self.critic_optimizer_factory(self.discriminator.parameters()),
            self.generator_optimizer_factory(self.generator.parameters()),
        ]
        if self.pretrain_optimizer_factory is not None:
            optimizers.append(self.pretrain_optimizer_factory(self.generator.parameters()))
        return optimizers

    def _step(self, optimizer, loss: torch.Tensor) -> None:  # noqa: ANN001 (a LightningOptimizer)
        self.toggle_optimizer(optimizer)  # only this network's parameters take gradients
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.untoggle_optimizer(optimizer)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        step = int(self.batches_trained)
        real_ids = self.real_ids(batch)
        if step < self.pretrain_steps:
            noise = seeded(self.seed, step, PRETRAIN_NOISE, device=self.device)
            logits = self.teacher_forced_logits(real_ids, noise)
            loss = F.cross_entropy(logits.flatten(0, 1), real_ids.flatten())
            self._step(optimizers[2], loss)
            self.log("train/mle_loss", loss, prog_bar=True)
        else:
            cycle, slot = divmod(step - self.pretrain_steps, self.critic_steps)
            fakes = self._cycle_fakes(cycle)
            fake = fakes[slot * self.fake_batch_size : (slot + 1) * self.fake_batch_size]
            self.toggle_optimizer(optimizers[0])
            losses = self.critic_losses(
                real_ids, fake, seeded(self.seed, step, PENALTY_MIX, device=self.device)
            )
            optimizers[0].zero_grad(set_to_none=True)
            self.manual_backward(losses["critic_loss"])
            optimizers[0].step()
            self.untoggle_optimizer(optimizers[0])
            for name, value in losses.items():
                self.log(f"train/{name}", value, prog_bar=name == "wasserstein")
            if slot == self.critic_steps - 1:
                noise = seeded(self.seed, cycle, GENERATOR_FAKES, device=self.device)
                loss = self.generator_loss(self.fake_batch_size, noise)
                self._step(optimizers[1], loss)
                self.log("train/generator_loss", loss)
        self.batches_trained += 1

    def _cycle_fakes(self, cycle: int) -> torch.Tensor:
        """The fake sentences of every critic step of a cycle, written at once (one batch)."""
        if self._fake_pool is None or self._fake_pool[0] != cycle:
            self._fake_pool = None  # free the previous cycle's fakes first
            generator = seeded(self.seed, cycle, CRITIC_FAKES, device=self.device)
            with torch.no_grad():
                fakes = self.generate_vectors(self.critic_steps * self.fake_batch_size, generator)
            self._fake_pool = (cycle, fakes)
        return self._fake_pool[1]

    # --- validation --------------------------------------------------------------------------
    def _tokenizer(self) -> Tokenizer | None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return None if datamodule is None else datamodule.tokenizer

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        real_ids = self.real_ids(batch)
        targets = F.pad(batch["targets"], (0, real_ids.size(1) - batch["targets"].size(1)), value=-100)
        logits = self.teacher_forced_logits(
            real_ids, seeded(self.seed, batch_idx, VAL_NOISE, device=self.device)
        )
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        self.val_nll.update(nll, weight=(targets != -100).sum())
        fake = self.generate_vectors(
            real_ids.size(0), seeded(self.seed, batch_idx, VAL_FAKES, device=self.device)
        )
        critic = self.discriminator
        wasserstein = critic.score_embedded(self.real_embedded(real_ids)).mean() - critic(fake).mean()
        self.val_wasserstein.update(wasserstein, weight=real_ids.size(0))
        tokenizer = self._tokenizer()
        if tokenizer is not None and self.val_samples:
            self._val_references += [self.ids_to_text(tokenizer, row) for row in real_ids.tolist()]

    def on_validation_epoch_end(self) -> None:
        nll, wasserstein = self.val_nll.compute(), self.val_wasserstein.compute()
        self.val_nll.reset()
        self.val_wasserstein.reset()
        references, self._val_references = self._val_references, []
        if self.trainer.sanity_checking:
            return
        self.val_loss_best = torch.minimum(self.val_loss_best, nll.detach())
        self.log("val/loss", nll, prog_bar=True)  # the generator's held-out NLL per token
        self.log("val/ppl", nll.exp())
        self.log("val/loss_best", self.val_loss_best)
        self.log("val/wasserstein", wasserstein, prog_bar=True)
        tokenizer = self._tokenizer()
        if tokenizer is None or not self.val_samples or not references:
            return
        samples = self.generate_text(
            tokenizer,
            None,
            self.val_samples,
            SamplingSettings(temperature=1.0, max_new_tokens=self.config.max_length),
            seeded(self.seed, 0, VAL_SAMPLES, device=self.device),
        )
        self.log("val/bleu_3", metrics.bleu(samples, references, n=3))
        self.log("val/self_bleu_3", metrics.self_bleu(samples, n=3))
        self.log("val/distinct_2", metrics.distinct_n(samples, 2))

    # --- sampling ----------------------------------------------------------------------------
    def ids_to_text(self, tokenizer: Tokenizer, ids: list[int]) -> str:
        """A written sentence: everything before the first <end>, without <pad>s."""
        pad, end = (int(i) for i in self.special_ids)
        if end in ids:
            ids = ids[: ids.index(end)]
        return tokenizer.decode([i for i in ids if i != pad])

    @torch.inference_mode()
    def generate_text(
        self,
        tokenizer: Tokenizer,
        template: Template | None,
        num_samples: int,
        settings: SamplingSettings,
        generator: torch.Generator | None = None,
        **fields: object,
    ) -> GeneratedTexts:
        """Sentences from noise, through the training path (`rollout` with the training feedback).

        With soft feedback the written token at each position is drawn from that position's
        distribution (temperature, top_k and top_p apply to it); with Gumbel feedback it is the
        token fed back, drawn with the settings (temperature 1 and no filtering = training).
        """
        given = sorted(name for name, value in fields.items() if value is not None)
        if given:
            raise MovielabError(
                f"the text GAN writes sentences from noise and takes no prompt; remove {', '.join(given)}"
            )
        if int(self.special_ids[0]) < 0:
            self.set_special_tokens(tokenizer)
        settings = settings.never_unknown(tokenizer)
        was_training = self.training
        self.eval()
        try:
            noise = self.generator.sample_noise(num_samples, self.device, generator)
            length = min(self.config.max_length, settings.max_new_tokens)
            if self.feedback == "soft":
                logits, _ = self.generator.rollout(noise, self.training_choice(generator), length)
                tokens = sample_next(logits.flatten(0, 1), settings, generator).view(num_samples, length)
            else:
                _, chosen = self.generator.rollout(noise, self._sampled_one_hot(settings, generator), length)
                tokens = chosen.argmax(dim=-1)
        finally:
            self.train(was_training)
        # sentences end at <end> or max_length: none is ever cut off before a stop
        return GeneratedTexts(self.ids_to_text(tokenizer, row) for row in tokens.tolist())

    def _sampled_one_hot(self, settings: SamplingSettings, generator: torch.Generator | None) -> ChooseNext:
        def choose(logits: torch.Tensor) -> torch.Tensor:
            token = sample_next(logits, settings, generator)[:, 0]
            return F.one_hot(token, logits.size(-1)).to(logits.dtype)

        return choose
