"""A pretrained Hugging Face causal LM (GPT-2 family) as a movielab net, fine-tuned by the same
LanguageModel module, datamodule, templates, sampling and evaluation as movielab's own GPT.

Needs the optional extra: pip install -e ".[hf]". The net takes condition prefixes (`prefix=`) as
input embeddings, so genre or rating conditions work too, and decodes rows one by one with the
model's own key-value cache.

Checkpoints stay plain data: the model's architecture (its config, JSON) is stored in the
checkpoint's description, so loading one builds the model from it and never reads the
pretrained folder (nor anything else a checkpoint could name).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from movielab.decoding import RowByRowDecoder
from movielab.errors import MovielabError


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MovielabError(
            'model=hf_causal_lm needs the Hugging Face extra: pip install -e ".[hf]"'
        ) from None
    return transformers


@dataclass
class HFCausalLMConfig:
    """`pretrained`: a local folder or a hub name, read when training starts; `architecture`: the
    model's config as JSON, filled from it and what a checkpoint is rebuilt from."""

    pretrained: str | None = None
    vocab_size: int | None = None
    architecture: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.architecture is None and not self.pretrained:
            raise MovielabError(
                "model.net.config.pretrained is required: a local folder (save_pretrained) or a hub name"
            )
        if self.architecture is not None:
            if not isinstance(self.architecture.get("model_type"), str):
                raise MovielabError("the Hugging Face architecture has no model_type")
            if "auto_map" in self.architecture:
                raise MovielabError("the Hugging Face architecture names remote code (auto_map): refused")


class HFCausalLM(nn.Module):
    """Built from `config.architecture` when given (a checkpoint), else from the pretrained files."""

    def __init__(self, config: HFCausalLMConfig) -> None:
        super().__init__()
        transformers = _transformers()
        if config.architecture is not None:
            fields = dict(config.architecture)
            model_type = fields.pop("model_type")
            try:
                hf_config = transformers.AutoConfig.for_model(model_type, **fields)
            except ValueError as exc:
                raise MovielabError(f"unknown Hugging Face model_type '{model_type}': {exc}") from None
            self.model = transformers.AutoModelForCausalLM.from_config(hf_config)
        else:
            try:
                self.model = transformers.AutoModelForCausalLM.from_pretrained(config.pretrained)
            except (OSError, ValueError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise MovielabError(
                    f"cannot load model.net.config.pretrained={config.pretrained}: {reason[:200]}"
                ) from None
            self.model.train()  # from_pretrained returns eval mode, which would switch dropout off
        if (
            config.vocab_size is not None
            and config.vocab_size > self.model.get_input_embeddings().num_embeddings
        ):
            self.model.resize_token_embeddings(config.vocab_size)
        self.config = HFCausalLMConfig(
            config.pretrained, config.vocab_size, json.loads(self.model.config.to_json_string())
        )

    @property
    def max_context(self) -> int | None:
        config = self.model.config
        return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)

    @property
    def prefix_width(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    def _embedded(self, idx: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        tokens = self.model.get_input_embeddings()(idx)
        return torch.cat([prefix.to(tokens.dtype), tokens], dim=1)

    def forward(self, idx: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, time, vocab); with a prefix, from the prefix's last position on (time + 1)."""
        if prefix is None:
            return self.model(input_ids=idx).logits
        logits = self.model(inputs_embeds=self._embedded(idx, prefix)).logits
        return logits[:, prefix.size(1) - 1 :]

    @property
    def cache_argument(self) -> str:
        """transformers 5 calls the key-value cache `cache`; 4.x called it `past_key_values`."""
        parameters = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def decoder(self) -> RowByRowDecoder:
        """Rows decoded one by one, each with the model's own cache (restarted from the last half
        context when the context is full, as movielab's GPT does)."""
        return RowByRowDecoder(lambda ids, prefix, generator: _HFRow.started(self, ids, prefix))


class _HFRow:
    def __init__(self, net: HFCausalLM, ids: torch.Tensor, prefix: torch.Tensor | None) -> None:
        self.net, self.history, self.prefix = net, ids.tolist(), prefix
        self.device = ids.device
        self.cache_name = net.cache_argument
        self.context = (net.max_context or 10**9) - (0 if prefix is None else prefix.size(0))
        self.past: Any = None
        self.fed = 0

    @classmethod
    def started(cls, net: HFCausalLM, ids: torch.Tensor, prefix: torch.Tensor | None) -> tuple:
        row = cls(net, ids, prefix)
        return row.restart(row.history[-row.context :]), row

    def restart(self, ids: list[int]) -> torch.Tensor:
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        if self.prefix is None:
            inputs = {"input_ids": idx}
        else:
            inputs = {"inputs_embeds": self.net._embedded(idx, self.prefix[None])}
        return self._run(inputs, None, len(ids))

    def _run(self, inputs: dict, past: Any, fed: int) -> torch.Tensor:
        output = self.net.model(**inputs, **{self.cache_name: past}, use_cache=True)
        self.past, self.fed = getattr(output, self.cache_name), fed
        return output.logits[0, -1]

    def feed(self, token: int) -> torch.Tensor:
        self.history.append(token)
        if self.fed + 1 > self.context:
            return self.restart(self.history[-(self.context // 2) :])
        idx = torch.tensor([[token]], dtype=torch.long, device=self.device)
        return self._run({"input_ids": idx}, self.past, self.fed + 1)
