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
from torchmetrics import MeanMetric, MinMetric

from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.errors import MovielabError
from movielab.models.build import build_net
from movielab.models.spec import ModelSpec
from movielab.models.text_gan import ChooseNext
from movielab.models.text_gan_sampler import TextGANSampler

# purposes of seeded noise, so no two uses of one cycle or batch share random numbers
CRITIC_FAKES, GENERATOR_FAKES, PRETRAIN_NOISE, VAL_NOISE, VAL_FAKES, VAL_SAMPLES, PENALTY_MIX = range(7)


def seeded(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


class TextGANModule(L.LightningModule):
    """`net` holds the generator and the critic; optimizers are factories (Hydra `_partial_`).

    feedback: "soft" feeds back (and shows the critic) the softmax at each position, as the
    reference does; "gumbel" a straight-through Gumbel-softmax sample (one-hot forward, softmax
    gradients). real_smoothing: real one-hot vectors become (1 - e) one-hot + e / vocab.
    """

    def __init__(
        self,
        spec: ModelSpec,
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        generator_optimizer: Callable[..., torch.optim.Optimizer],
        pretrain_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    ) -> None:
        super().__init__()
        self.net, self.spec = build_net(spec)
        options = self.spec.task_options()
        if options.pretrain_steps and pretrain_optimizer is None:
            raise MovielabError("model.pretrain_steps > 0 needs model.pretrain_optimizer")
        if options.pad_id is None or options.end_id is None:
            raise MovielabError(
                "the text GAN's <pad> and <end> ids are not bound: connect its spec to the data"
            )
        self.automatic_optimization = False
        self.config = self.net.config
        self.critic_optimizer_factory = critic_optimizer
        self.generator_optimizer_factory = generator_optimizer
        self.pretrain_optimizer_factory = pretrain_optimizer
        self.critic_steps = options.critic_steps
        self.gp_weight = options.gp_weight
        self.pretrain_steps = options.pretrain_steps
        self.fake_batch_size = options.fake_batch_size
        self.feedback = options.feedback
        self.gumbel_temperature = options.gumbel_temperature
        self.real_smoothing = options.real_smoothing
        self.pad_id, self.end_id = options.pad_id, options.end_id
        self.seed = options.seed
        # batches trained so far (MLE + critic steps): decides the phase; saved, so resume is exact
        self.register_buffer("batches_trained", torch.zeros((), dtype=torch.long))
        self._fake_pool: tuple[int, torch.Tensor] | None = None
        self.val_nll = MeanMetric()
        self.val_wasserstein = MeanMetric()
        self.val_loss_best = MinMetric()
        self.val_loss_best.persistent(True)

    @property
    def generator(self):  # noqa: ANN201
        return self.net.generator

    @property
    def discriminator(self):  # noqa: ANN201
        return self.net.discriminator

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
        return ids.masked_fill(ids == -100, int(self.pad_id))

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

    def on_validation_epoch_end(self) -> None:
        nll, wasserstein = self.val_nll.compute(), self.val_wasserstein.compute()
        self.val_nll.reset()
        self.val_wasserstein.reset()
        if self.trainer.sanity_checking:
            return
        self.val_loss_best.update(nll)
        self.log("val/loss", nll, prog_bar=True)  # the generator's held-out NLL per token
        self.log("val/ppl", nll.exp())
        self.log("val/loss_best", self.val_loss_best.compute())
        self.log("val/wasserstein", wasserstein, prog_bar=True)

    def text_sampler(self, tokenizer: Tokenizer, template: Template | None = None) -> TextGANSampler:
        """The generator as it writes sentences (use it in eval mode: movielab.models.modes.evaluating)."""
        return TextGANSampler(self.generator, tokenizer, self.pad_id, self.end_id, self.feedback)
