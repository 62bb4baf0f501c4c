"""Self-describing checkpoints read as data: torch.load(weights_only=True), a digest checked, and
the model rebuilt from its plain description through the registry, never from an import path.

A checkpoint's `movielab` section holds the model spec (movielab.models.spec), the tokenizer's
state, the template, a summary of the data, the training texts' fingerprints and a digest of the
weights and the section; with the path alone, `load_model` gives back a model that can write text
(or read genres). Checkpoints of format 1 (before 2026-12) named the classes to build; they are
read by comparing those names with the classes that existed then (movielab.legacy_checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer, tokenizer_from_state
from movielab.errors import MovielabError
from movielab.generation import GeneratesText
from movielab.legacy_checkpoint import upgrade_format_1
from movielab.models.build import build_language_model, build_net
from movielab.models.genre_predictor import GenrePredictor
from movielab.models.language_sampler import LanguageModelSampler
from movielab.models.registry import plain_data
from movielab.models.spec import ModelSpec
from movielab.models.text_gan_sampler import TextGANSampler
from movielab.text_index import TextIndex

if TYPE_CHECKING:
    from movielab.data.token_cache import TokenData

SECTION = "movielab"
FORMAT_VERSION = 2
SECTION_FIELDS = {
    "format_version",
    "model",
    "tokenizer",
    "template",
    "data",
    "data_fingerprint",
    "data_digest",
    "training_fingerprints",
    "metrics",
    "config",
    "digest",
    "training_digest",
}
# what a resume reads besides the weights: a flipped byte there would continue a run from garbage
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "callbacks")


def _folder_hint(path: Path) -> str:
    """A run folder given for its checkpoint: name the checkpoint it holds."""
    if not path.is_dir():
        return ""
    for inside in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if inside.is_file():
            return f" (it is a folder; its last checkpoint is ckpt={inside})"
    return " (it is a folder)"


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True, and a one-line error for a missing, foreign or damaged file."""
    path = Path(path)
    if not path.is_file():
        raise MovielabError(f"checkpoint not found: {path}" + _folder_hint(path))
    if path.stat().st_size == 0:
        raise MovielabError(f"checkpoint is corrupt: {path} is empty (0 bytes)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not checkpoints
        raise MovielabError(_unreadable(path, exc)) from exc
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(SECTION), dict):
        raise MovielabError(f"{path} is not a movielab checkpoint (it has no '{SECTION}' section)")
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise MovielabError(f"{path} is not a movielab checkpoint (it has no weights)")
    if not isinstance(checkpoint.get("global_step", 0), int):
        raise MovielabError(f"{path}: global_step={checkpoint['global_step']!r} is not a step count")
    return checkpoint


def _unreadable(path: Path, exc: Exception) -> str:
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    if reason.startswith("Weights only load failed"):  # followed by torch's advice to unpickle anyway
        reason = "its pickled part does not read as data"
    if "GLOBAL" in text or "Unsupported global" in text:  # the pickle names a class or function
        return f"{path} holds objects other than weights (a pickle that could run code): refused"
    with open(path, "rb") as handle:
        zipped = handle.read(4) == b"PK\x03\x04"  # torch.save's format is a zip archive
    if zipped:
        return (
            f"checkpoint is corrupt: {path} cannot be read (torch.load: {reason[:120]}); it may be truncated"
        )
    return f"{path} is not a movielab checkpoint (not a file torch.save wrote)"


def digest(state_dict: Mapping[str, torch.Tensor], section: Mapping[str, Any]) -> str:
    """sha256 of every weight (name, dtype, shape, bytes) and of the section without its digest."""
    hasher = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().cpu().contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    described = {k: v for k, v in section.items() if k != "digest"}
    fingerprints = described.pop("training_fingerprints", None)
    if isinstance(fingerprints, torch.Tensor):
        hasher.update(fingerprints.contiguous().view(torch.uint8).numpy().tobytes())
    hasher.update(json.dumps(described, sort_keys=True, default=str).encode())
    return hasher.hexdigest()


def _hash_tree(hasher: Any, node: Any) -> None:
    if isinstance(node, torch.Tensor):
        tensor = node.detach().cpu().contiguous()
        hasher.update(f"T|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    elif isinstance(node, Mapping):
        hasher.update(b"{")
        for key in sorted(node, key=str):
            hasher.update(f"{key!s}:".encode())
            _hash_tree(hasher, node[key])
        hasher.update(b"}")
    elif isinstance(node, list | tuple):
        hasher.update(b"[")
        for item in node:
            _hash_tree(hasher, item)
        hasher.update(b"]")
    else:
        hasher.update(f"{type(node).__name__}|{node!r};".encode())


def training_digest(checkpoint: Mapping[str, Any]) -> str:
    """sha256 of what a resume restores besides the weights (optimizer moments, schedules, loop
    and callback states)."""
    hasher = hashlib.sha256()
    for key in TRAINING_STATE:
        hasher.update(f"{key}=".encode())
        _hash_tree(hasher, checkpoint.get(key))
    return hasher.hexdigest()


def movielab_section(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checkpoint's section in the current format, its fields and digest checked."""
    section = checkpoint[SECTION]
    version = section.get("format_version")
    if version == 1:
        return upgrade_format_1(checkpoint, path)
    if version != FORMAT_VERSION:
        raise MovielabError(f"{path}: checkpoint format {version!r} is not one this movielab reads (1 or 2)")
    unknown = sorted(set(section) - SECTION_FIELDS)
    if unknown:
        raise MovielabError(
            f"{path}: the checkpoint's {SECTION} section has unknown field(s) {', '.join(unknown)}"
        )
    if section.get("digest") != digest(checkpoint["state_dict"], section):
        raise MovielabError(
            f"checkpoint is corrupt: {path} (its weights or description do not match their digest)"
        )
    recorded = section.get("training_digest")  # absent in checkpoints written before 2026-12
    if recorded is not None and recorded != training_digest(checkpoint):
        raise MovielabError(
            f"checkpoint is corrupt: {path} (its optimizer or training state does not match its digest)"
        )
    return section


def require_same_data(checkpoint: dict[str, Any], option: str, data: TokenData) -> None:
    """Token ids (hence embeddings, optimizer moments) mean nothing on other data or tokenization.
    The same tokens are the test: the checkpoint's content digest where it has one (checkpoints
    since it was added), else its cache fingerprint, which also changes with the cache's format."""
    section = checkpoint[SECTION]
    if section.get("data_digest") is not None:
        previous, now, kind = section["data_digest"], data.content_digest, "token digest"
    else:
        previous, now, kind = section.get("data_fingerprint"), data.fingerprint, "fingerprint"
    if not isinstance(previous, str) or previous != now:
        shown = previous if isinstance(previous, str) else "unreadable"
        raise MovielabError(
            f"{option} was trained on other data or tokenization ({kind} {shown}, now {now}); "
            "use the same data.* options as its run"
        )


def load_weights(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], prefix: str, path: str | Path
) -> None:
    """The weights under `prefix` into `module`, all of them and nothing else."""
    weights = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    try:
        result = module.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # shapes that differ: torch lists each on a line of its own
        lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        detail = lines[0] if lines else str(error).splitlines()[0]
        raise MovielabError(
            f"{path}: the weights do not fit the model it describes ({detail[:160]})"
        ) from None
    problems = [
        *(f"missing {k}" for k in result.missing_keys),
        *(f"unexpected {k}" for k in result.unexpected_keys),
    ]
    if problems:
        raise MovielabError(
            f"{path}: the weights do not fit the model it describes ({', '.join(problems[:3])}"
            + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")
            + ")"
        )


@dataclass
class LoadedModel:
    """A trained model with everything needed to use it: `sampler` for models that write text,
    `predictor` for genre classifiers."""

    path: Path
    spec: ModelSpec
    tokenizer: Tokenizer
    template: Template
    data: dict[str, Any]
    metrics: dict[str, float]
    step: int
    parameters: int
    config: dict[str, Any] = field(default_factory=dict)
    training_index: TextIndex | None = None
    sampler: GeneratesText | None = None
    predictor: GenrePredictor | None = None

    @property
    def run_dir(self) -> Path:
        folder = self.path.resolve().parent
        return folder.parent if folder.name == "checkpoints" else folder

    @property
    def kind(self) -> str:
        return self.spec.task

    device: torch.device = torch.device("cpu")

    def summary(self) -> dict[str, Any]:
        """What a user wants to know before using it (the server's /v1/models)."""
        return {
            "kind": self.spec.task,
            "net": self.spec.net.kind,
            "parameters": self.parameters,
            "step": self.step,
            "metrics": self.metrics,
            "data": self.data,
            "conditions": sorted(self.spec.conditions),
        }


def _template(section: dict[str, Any], path: str | Path) -> Template:
    data = plain_data(section.get("template"), "template")
    if not isinstance(data, dict) or set(data) - {"text", "stop"} or not isinstance(data.get("text"), str):
        raise MovielabError(f"{path}: the checkpoint's template is not {{text, stop}}")
    return Template(text=data["text"], stop=data.get("stop"))


def _modules(spec: ModelSpec) -> tuple[nn.Module, nn.Module, dict[str, nn.Module]]:
    """The modules a spec describes: (all of them, the net, the condition encoders)."""
    if spec.task == "language_model":
        net, conditions, _ = build_language_model(spec)
        return nn.ModuleDict({"net": net, "conditions": nn.ModuleDict(conditions)}), net, conditions
    net, _ = build_net(spec)
    return nn.ModuleDict({"net": net}), net, {}


def _require_fitting_shapes(spec: ModelSpec, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """The described model, built without memory (the meta device), must take the weights the
    checkpoint holds: a description of a model of a trillion weights is refused before it is built."""
    if spec.net.kind == "hf_causal_lm":
        return  # Hugging Face builds its own modules; its architecture is checked by its weights
    with torch.device("meta"):
        _, net, conditions = _modules(spec)
    with warnings.catch_warnings():  # torch notes that copying into meta tensors is a no-op: the point
        warnings.filterwarnings("ignore", message="for .*: copying from a non-meta parameter")
        load_weights(net, state, "net.", path)
        for name, encoder in conditions.items():
            load_weights(encoder, state, f"conditions.{name}.", path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A checkpoint's model, built from its description and ready to use (eval mode, on `device`)."""
    checkpoint = read_checkpoint(path)
    section = movielab_section(checkpoint, path)
    spec = ModelSpec.from_data(section["model"], "model")
    _require_fitting_shapes(spec, checkpoint["state_dict"], path)
    tokenizer = tokenizer_from_state(plain_data(section["tokenizer"], "tokenizer"))
    template = _template(section, path)
    state = checkpoint["state_dict"]
    fingerprints = section.get("training_fingerprints")
    loaded = LoadedModel(
        Path(path),
        spec,
        tokenizer,
        template,
        plain_data(section.get("data") or {}, "data"),
        plain_data(section.get("metrics") or {}, "metrics"),
        int(checkpoint.get("global_step", 0)),
        0,
        dict(section.get("config") or {}),  # the run's config, for the record: never instantiated
        TextIndex.from_tensor(fingerprints) if isinstance(fingerprints, torch.Tensor) else None,
    )
    modules, net, conditions = _modules(spec)
    load_weights(net, state, "net.", path)
    for name, encoder in conditions.items():
        load_weights(encoder, state, f"conditions.{name}.", path)
    modules = modules.to(device).eval()
    if spec.task == "language_model":
        loaded.sampler = LanguageModelSampler(net, conditions, tokenizer, template)
    else:
        options = spec.task_options()
        if spec.task == "text_gan":
            loaded.sampler = TextGANSampler(
                net.generator, tokenizer, options.pad_id, options.end_id, options.feedback
            )
        else:
            threshold = state.get("threshold")
            threshold = float(threshold) if isinstance(threshold, torch.Tensor) else 0.5
            loaded.predictor = GenrePredictor(net, options.genres, threshold, tokenizer, template)
    loaded.device = torch.device(device)
    loaded.parameters = sum(p.numel() for p in modules.parameters())
    return loaded
