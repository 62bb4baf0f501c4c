"""The modules a ModelSpec describes, built the same way for training and for a loaded checkpoint."""

from __future__ import annotations

from torch import nn

from movielab.errors import MovielabError
from movielab.models.registry import CONDITIONS, NETS, build, config_data
from movielab.models.spec import ModelSpec


def build_net(spec: ModelSpec) -> tuple[nn.Module, ModelSpec]:
    """The net, and the spec with the config it was built with (a pretrained model's architecture
    filled in, so a checkpoint can rebuild it without the pretrained files)."""
    net = build(NETS, spec.net.kind, spec.net.config, "model.net")
    return net, spec.with_net_config(**config_data(net))


def build_language_model(spec: ModelSpec) -> tuple[nn.Module, dict[str, nn.Module], ModelSpec]:
    """Net and condition encoders; each encoder's width is the net's (bound here, from the net)."""
    net, spec = build_net(spec)
    if spec.conditions and net.prefix_width is None:
        raise MovielabError(f"the {spec.net.kind} net takes no conditions: remove model.conditions")
    conditions = {}
    for name, part in spec.conditions.items():
        spec = spec.with_condition_config(name, d_model=net.prefix_width)
        conditions[name] = build(
            CONDITIONS, part.kind, spec.conditions[name].config, f"model.conditions.{name}"
        )
    return net, conditions, spec
