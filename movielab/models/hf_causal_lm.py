"""A pretrained Hugging Face causal LM (GPT-2 family) as a movielab net, fine-tuned by the same
CausalLanguageModel, datamodule, templates, sampling loop and evaluation as movielab's own GPT.

Needs the optional extra: pip install -e ".[hf]". The net speaks movielab's decoding protocol
(begin_decoding / decode_step / end_decoding, with the model's own key-value cache) and takes
condition prefixes (`prefix=`) as input embeddings, so genre or rating conditions work too.

Checkpoints stay self-describing: the model's architecture (its config, plain JSON) is saved as
the net's extra state, so a checkpoint loads where the pretrained files are not available.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from movielab.errors import MovielabError
from movielab.models.conditioning import ConditionEncoder
from movielab.models.language_model import CausalLanguageModel

log = logging.getLogger(__name__)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MovielabError(
            'model=hf_causal_lm needs the Hugging Face extra: pip install -e ".[hf]"'
        ) from None
    return transformers


class HFCausalLM(nn.Module):
    """`pretrained`: a local folder or a hub name (downloads only where allowed: HF_HUB_OFFLINE=1
    forbids them). If it cannot be loaded, the net is rebuilt from a checkpoint's saved architecture
    when one is loaded, and otherwise raises a one-line error when used."""

    def __init__(self, pretrained: str, vocab_size: int | None = None) -> None:
        super().__init__()
        self.pretrained = str(pretrained)
        self.model: nn.Module | None = None
        self.load_error: str | None = None
        transformers = _transformers()
        try:
            self.model = transformers.AutoModelForCausalLM.from_pretrained(self.pretrained)
        except (OSError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.load_error = reason[:200]
            log.info(
                "model.pretrained=%s not loaded (%s); expecting a checkpoint's architecture",
                pretrained,
                reason,
            )
            return
        self.model.train()  # from_pretrained returns it in eval mode, which would switch dropout off
        if vocab_size is not None and vocab_size > self.model.get_input_embeddings().num_embeddings:
            self.model.resize_token_embeddings(vocab_size)

    @property
    def hf_model(self) -> nn.Module:
        if self.model is None:
            raise MovielabError(
                f"cannot load the pretrained model model.pretrained={self.pretrained}: {self.load_error}"
            )
        return self.model

    @property
    def max_context(self) -> int | None:
        config = self.hf_model.config
        return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)

    def get_extra_state(self) -> dict[str, Any]:
        """The architecture as plain JSON (checkpoints load with weights_only=True)."""
        return {"hf_config": json.loads(self.hf_model.config.to_json_string())}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.model is not None:
            return
        transformers = _transformers()
        config = dict(state["hf_config"])
        hf_config = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        self.model = transformers.AutoModelForCausalLM.from_config(hf_config)
        self.model.train(self.training)

    def _embedded(self, idx: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        tokens = self.hf_model.get_input_embeddings()(idx)
        return torch.cat([prefix.to(tokens.dtype), tokens], dim=1)

    def forward(self, idx: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, time, vocab); with a prefix, from the prefix's last position on (time + 1)."""
        if prefix is None:
            return self.hf_model(input_ids=idx).logits
        logits = self.hf_model(inputs_embeds=self._embedded(idx, prefix)).logits
        return logits[:, prefix.size(1) - 1 :]

    @property
    def cache_argument(self) -> str:
        """transformers 5 calls the key-value cache `cache`; 4.x called it `past_key_values`."""
        parameters = inspect.signature(self.hf_model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def begin_decoding(self, batch_size: int) -> None:
        self._past = None
        self._cache_name = self.cache_argument

    def decode_step(self, idx: torch.Tensor, start: int, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Feed idx after the cached positions (start 0 restarts the cache); last position's logits."""
        if start == 0:
            self._past = None
        inputs = {"input_ids": idx} if prefix is None else {"inputs_embeds": self._embedded(idx, prefix)}
        output = self.hf_model(**inputs, **{self._cache_name: self._past}, use_cache=True)
        self._past = getattr(output, self._cache_name)
        return output.logits[:, -1]

    def end_decoding(self) -> None:
        self._past = None


class HFLanguageModel(CausalLanguageModel):
    """CausalLanguageModel over HFCausalLM(pretrained): `model.pretrained=PATH` is all it needs."""

    def __init__(
        self,
        pretrained: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        vocab_size: int | None = None,
        conditions: Mapping[str, ConditionEncoder] | None = None,
    ) -> None:
        super().__init__(HFCausalLM(pretrained, vocab_size), optimizer, scheduler, conditions=conditions)
