"""A text GAN's two networks: a noise-driven causal transformer generator and a transformer critic.

The generator writes a sentence position by position from noise: uniform noise goes through a
StyleGAN-like mapping network into a global noise sequence that every block cross-attends to;
each block also adds its own per-position noise. Its output at each position is a distribution
over the vocabulary, and the vector fed back as the next input is either that softmax (the
reference) or a straight-through Gumbel-softmax sample. The critic reads vocabulary-sized vectors
(one-hot real sentences, the generator's soft outputs), so its gradients reach the generator.

Attention is written out (softmax(QK^T)V) rather than through scaled_dot_product_attention: the
gradient penalty differentiates the critic twice, which the fused CPU kernel does not support.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from movielab.decoding import RowByRowDecoder
from movielab.errors import MovielabError

# picks the vector fed back as the next input from one position's logits (batch, vocab)
ChooseNext = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TextGANConfig:
    vocab_size: int
    max_length: int = 64  # positions the generator writes (sentence + <end> + <pad>s)
    n_embd: int = 64
    n_head: int = 4
    generator_layers: int = 2
    discriminator_layers: int = 2
    noise_dim: int = 64  # width of the uniform noise vectors
    noise_length: int = 8  # length of the global noise sequence the generator cross-attends to
    mapping_layers: int = 4  # linear layers of the mapping network (StyleGAN uses 8)

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "max_length",
            "n_embd",
            "n_head",
            "generator_layers",
            "discriminator_layers",
            "noise_dim",
            "noise_length",
            "mapping_layers",
        ):
            if getattr(self, name) < 1:
                raise MovielabError(f"model.net.config.{name}={getattr(self, name)} must be at least 1")
        if self.n_embd % self.n_head:
            raise MovielabError(
                f"model.net.config.n_embd={self.n_embd} must be divisible by n_head={self.n_head}"
            )


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/width)), PE[p, 2i+1] = cos(same): one row per position."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : width // 2]
    return table


class Attention(nn.Module):
    """Multi-head attention of queries from `x` over keys/values from a context."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_embd, n_embd)
        self.key_value = nn.Linear(n_embd, 2 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        return x.view(batch, length, self.n_head, channels // self.n_head).transpose(1, 2)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.key_value(context).chunk(2, dim=-1)
        return self._heads(keys), self._heads(values)

    def attend(
        self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, first_position: int | None = None
    ) -> torch.Tensor:
        """With `first_position` set, x holds positions first_position.. and each sees keys up to its own."""
        batch, length, channels = x.shape
        q = self._heads(self.query(x))
        scores = q @ keys.transpose(-2, -1) / math.sqrt(q.size(-1))
        if first_position is not None:
            query_pos = torch.arange(first_position, first_position + length, device=x.device)
            visible = torch.arange(keys.size(2), device=x.device)[None, :] <= query_pos[:, None]
            scores = scores.masked_fill(~visible, float("-inf"))
        y = scores.softmax(dim=-1) @ values
        return self.proj(y.transpose(1, 2).reshape(batch, length, channels))


class MLP(nn.Module):
    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class SelfAttentionCache:
    """Keys and values of the positions written so far (kept as tensors in the autograd graph,
    so a free-running rollout can be backpropagated through)."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is not None:
            keys, values = torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], dim=2)
        self.keys, self.values = keys, values
        return keys, values


class GeneratorBlock(nn.Module):
    """Causal self-attention, cross-attention to the global noise sequence, per-position noise
    scaled per channel (StyleGAN's noise inputs, starting at zero strength), then an MLP."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_self = nn.LayerNorm(n_embd)
        self.self_attn = Attention(n_embd, n_head)
        self.ln_cross = nn.LayerNorm(n_embd)
        self.cross_attn = Attention(n_embd, n_head)
        self.noise_strength = nn.Parameter(torch.zeros(n_embd))
        self.ln_mlp = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)

    def forward(
        self,
        x: torch.Tensor,
        memory: tuple[torch.Tensor, torch.Tensor],
        noise: torch.Tensor,
        first_position: int = 0,
        cache: SelfAttentionCache | None = None,
    ) -> torch.Tensor:
        h = self.ln_self(x)
        keys, values = self.self_attn.keys_values(h)
        if cache is not None:
            keys, values = cache.extend(keys, values)
        x = x + self.self_attn.attend(h, keys, values, first_position=first_position)
        x = x + self.cross_attn.attend(self.ln_cross(x), *memory)
        x = x + self.noise_strength * noise
        return x + self.mlp(self.ln_mlp(x))


class MappingNetwork(nn.Module):
    """Uniform noise -> the global noise sequence, through a stack of linear layers (StyleGAN)."""

    def __init__(self, noise_dim: int, n_embd: int, n_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(noise_dim, n_embd)]
        for _ in range(n_layers - 1):
            layers += [nn.LeakyReLU(0.2), nn.Linear(n_embd, n_embd)]
        self.layers = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.layers(latent)


@dataclass
class GeneratorNoise:
    """Everything random about one batch of generated sentences."""

    latent: torch.Tensor  # (batch, noise_length, noise_dim), uniform in [-1, 1]
    per_position: torch.Tensor  # (batch, generator_layers, max_length, 1), standard normal


class TextGenerator(nn.Module):
    """Noise -> a sequence of per-position vocabulary distributions, one position at a time."""

    def __init__(self, config: TextGANConfig) -> None:
        super().__init__()
        self.config = config
        self.mapping = MappingNetwork(config.noise_dim, config.n_embd, config.mapping_layers)
        self.start = nn.Parameter(torch.randn(config.n_embd) * 0.02)  # the input at position 0
        self.embed = nn.Linear(config.vocab_size, config.n_embd, bias=False)  # vocab vectors -> inputs
        self.register_buffer(
            "positions", sinusoidal_positions(config.max_length, config.n_embd), persistent=False
        )
        self.blocks = nn.ModuleList(
            GeneratorBlock(config.n_embd, config.n_head) for _ in range(config.generator_layers)
        )
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size)
        nn.init.normal_(self.embed.weight, std=0.02)

    def sample_noise(
        self, batch_size: int, device: torch.device | str, generator: torch.Generator | None = None
    ) -> GeneratorNoise:
        c = self.config
        latent = torch.rand(batch_size, c.noise_length, c.noise_dim, device=device, generator=generator)
        per_position = torch.randn(
            batch_size, c.generator_layers, c.max_length, 1, device=device, generator=generator
        )
        return GeneratorNoise(latent * 2 - 1, per_position)

    def _memory(self, noise: GeneratorNoise) -> list[tuple[torch.Tensor, torch.Tensor]]:
        memory = self.mapping(noise.latent)
        return [block.cross_attn.keys_values(memory) for block in self.blocks]

    def forward(self, previous: torch.Tensor, noise: GeneratorNoise) -> torch.Tensor:
        """Logits for every position at once, given the vectors fed back at positions 1..
        (`previous`: (batch, length - 1, vocab), one-hot for teacher forcing). Causal: position t
        sees only previous[:, :t]. The same blocks as `rollout`, without the step loop."""
        batch, length = previous.size(0), previous.size(1) + 1
        start = self.start.expand(batch, 1, -1)
        x = torch.cat([start, self.embed(previous)], dim=1) + self.positions[:length]
        for i, (block, memory) in enumerate(zip(self.blocks, self._memory(noise), strict=True)):
            x = block(x, memory, noise.per_position[:, i, :length], first_position=0)
        return self.head(self.ln_f(x))

    def rollout(
        self, noise: GeneratorNoise, choose: ChooseNext, length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `length` positions from noise, feeding back `choose(logits)` at each step.

        Returns (logits, chosen), both (batch, length, vocab). Training and sampling both come
        through here; only `choose` differs (softmax or Gumbel-softmax vs a sampled one-hot).
        """
        length = length or self.config.max_length
        batch = noise.latent.size(0)
        memories = self._memory(noise)
        caches = [SelfAttentionCache() for _ in self.blocks]
        x = self.start.expand(batch, 1, -1)
        all_logits, all_chosen = [], []
        for t in range(length):
            logits = self.position_logits(x, t, noise, memories, caches)
            chosen = choose(logits)
            all_logits.append(logits)
            all_chosen.append(chosen)
            x = self.embed(chosen)[:, None]
        return torch.stack(all_logits, dim=1), torch.stack(all_chosen, dim=1)

    def position_logits(
        self,
        x: torch.Tensor,
        t: int,
        noise: GeneratorNoise,
        memories: list[tuple[torch.Tensor, torch.Tensor]],
        caches: list[SelfAttentionCache],
    ) -> torch.Tensor:
        """Position t's logits (batch, vocab) from the vector fed back into it (batch, 1, n_embd)."""
        h = x + self.positions[t]
        for i, block in enumerate(self.blocks):
            h = block(h, memories[i], noise.per_position[:, i, t : t + 1], first_position=t, cache=caches[i])
        return self.head(self.ln_f(h))[:, 0]

    def decoder(self, feedback: str) -> RowByRowDecoder:
        """Sentences written row by row from each row's own noise: what is fed back at a position
        is the softmax of the previous one ("soft") or the sampled token's one-hot ("gumbel"),
        as in training; the written tokens are the ones the sampling loop draws."""
        return RowByRowDecoder(
            lambda ids, prefix, generator: _GeneratorRow.started(self, feedback, generator)
        )


class _GeneratorRow:
    def __init__(self, net: TextGenerator, feedback: str, generator: torch.Generator) -> None:
        self.net, self.feedback = net, feedback
        device = net.start.device
        self.noise = net.sample_noise(1, device, generator)
        self.memories = net._memory(self.noise)
        self.caches = [SelfAttentionCache() for _ in net.blocks]
        self.t = 0
        self.logits = net.position_logits(
            net.start.expand(1, 1, -1), 0, self.noise, self.memories, self.caches
        )

    @classmethod
    def started(cls, net: TextGenerator, feedback: str, generator: torch.Generator) -> tuple:
        row = cls(net, feedback, generator)
        return row.logits[0], row

    def feed(self, token: int) -> torch.Tensor:
        if self.feedback == "soft":
            fed = self.logits.softmax(dim=-1)
        else:
            fed = F.one_hot(torch.tensor([token], device=self.logits.device), self.logits.size(-1)).to(
                self.logits.dtype
            )
        self.t += 1
        x = self.net.embed(fed)[:, None]
        self.logits = self.net.position_logits(x, self.t, self.noise, self.memories, self.caches)
        return self.logits[0]


class TextDiscriminator(nn.Module):
    """The critic: vocabulary-sized vectors (batch, length, vocab) -> one score per sentence."""

    def __init__(self, config: TextGANConfig) -> None:
        super().__init__()
        self.config = config
        self.project = nn.Linear(config.vocab_size, config.n_embd, bias=False)
        self.register_buffer(
            "positions", sinusoidal_positions(config.max_length, config.n_embd), persistent=False
        )
        self.blocks = nn.ModuleList(
            CriticBlock(config.n_embd, config.n_head) for _ in range(config.discriminator_layers)
        )
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.score = nn.Linear(config.n_embd, 1)
        nn.init.normal_(self.project.weight, std=0.02)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.score_embedded(self.project(vectors))

    def score_embedded(self, embedded: torch.Tensor) -> torch.Tensor:
        """Scores of already projected inputs (batch, length, n_embd): the layers after `project`."""
        x = embedded + self.positions[: embedded.size(1)]
        for block in self.blocks:
            x = block(x)
        return self.score(self.ln_f(x).mean(dim=1)).squeeze(-1)


class CriticBlock(nn.Module):
    """A pre-LayerNorm transformer layer seeing the whole sentence (no mask: it judges it all)."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head)
        self.ln_mlp = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_attn(x)
        x = x + self.attn.attend(h, *self.attn.keys_values(h))
        return x + self.mlp(self.ln_mlp(x))


class TextGAN(nn.Module):
    """The pair trained against each other; one module so checkpoints and `model.net` hold both."""

    def __init__(self, config: TextGANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = TextGenerator(config)
        self.discriminator = TextDiscriminator(config)
