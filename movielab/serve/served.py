"""The models a server serves: loaded once at start from the checkpoints named on its command line
(a request names a model, never a path), each text model with its own decoding loop."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from movielab.checkpoint import LoadedModel, load_model
from movielab.errors import MovielabError
from movielab.sampling import SamplingSettings
from movielab.serve.checks import Limits, settings_record
from movielab.serve.scheduler import DecodingScheduler

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


@dataclass
class ServedModel:
    """A loaded checkpoint under its name: a text model has a scheduler, a genre classifier a lock
    (its forward pass is cheap and runs in the request's worker thread, one at a time)."""

    name: str
    loaded: LoadedModel
    scheduler: DecodingScheduler | None = None
    predict_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def writes_text(self) -> bool:
        return self.loaded.sampler is not None

    def describe(self, defaults: SamplingSettings, limits: Limits) -> dict[str, Any]:
        """What GET /v1/models says about it: enough to build a form and to judge the model."""
        summary = self.loaded.summary()
        described: dict[str, Any] = {
            "name": self.name,
            "kind": summary["kind"],
            "net": summary["net"],
            "endpoint": "/v1/generate" if self.writes_text else "/v1/predict",
            "parameters": summary["parameters"],
            "step": summary["step"],
            "val_loss": finite(summary["metrics"].get("val/loss")),
            "metrics": {name: finite(value) for name, value in summary["metrics"].items()},
            "data": summary["data"],
            "conditions": summary["conditions"],
        }
        sampler, predictor = self.loaded.sampler, self.loaded.predictor
        if sampler is not None:
            described["prompt_fields"] = [prompt_field.describe() for prompt_field in sampler.prompt_fields()]
            described["stop"] = sampler.stop
            described["sampling"] = {
                "defaults": settings_record(defaults),
                "limits": {"n": limits.max_n, "max_new_tokens": limits.max_new_tokens},
            }
            described["flags_training_copies"] = self.loaded.training_index is not None
        if predictor is not None:
            described["genres"] = list(predictor.genres)
            described["threshold"] = predictor.threshold
        return described


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such a metric is reported as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def model_names(paths: Sequence[Path]) -> list[str]:
    """A name per checkpoint: its run folder's name, with the checkpoint's own where two come from
    one run, and a number where names still collide."""
    folders = [path.resolve().parent for path in paths]
    runs = [folder.parent.name if folder.name == "checkpoints" else folder.name for folder in folders]
    runs = [run or path.stem for run, path in zip(runs, paths, strict=True)]
    names = [run if runs.count(run) == 1 else f"{run}:{p.stem}" for run, p in zip(runs, paths, strict=True)]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def checkpoints_to_serve(ckpt: Any, ckpts: Any) -> dict[str, Path]:
    """`ckpt=A`, `ckpts=[A,B]` or `ckpts={name: A, ...}` as name -> path (checked to exist)."""
    if ckpt is not None and ckpts:
        raise MovielabError("give ckpt=PATH or ckpts=[PATH,...], not both")
    if ckpt is not None:
        options = ["ckpt"]
        named = dict(zip(model_names([Path(str(ckpt))]), [Path(str(ckpt))], strict=True))
    elif isinstance(ckpts, Mapping) and ckpts:
        options = [f"ckpts.{name}" for name in ckpts]
        named = {str(name): Path(str(path)) for name, path in ckpts.items()}
    elif isinstance(ckpts, Sequence) and not isinstance(ckpts, str) and ckpts:
        options = [f"ckpts[{i}]" for i in range(len(ckpts))]
        paths = [Path(str(path)) for path in ckpts]
        named = dict(zip(model_names(paths), paths, strict=True))
    elif ckpts is None:
        raise MovielabError(
            "name the checkpoints to serve: ckpt=PATH, ckpts=[PATH,...] or ckpts={name: PATH}"
        )
    else:
        raise MovielabError(f"ckpts={ckpts!r} must be a list of paths [PATH,...] or {{name: PATH}}")
    for option, (name, path) in zip(options, named.items(), strict=True):
        if not path.is_file():
            raise MovielabError(f"{option}: checkpoint not found: {path}")
        if not re.match(NAME, name):
            raise MovielabError(f"ckpts: model name {name!r} must be letters, digits and _ . : - only")
    return named


def load_served(
    checkpoints: Mapping[str, Path],
    device: torch.device | str = "cpu",
    max_batch: int = 32,
    use_cache: bool = True,
) -> dict[str, ServedModel]:
    """Every checkpoint loaded as data, each text model's decoding loop started."""
    served = {}
    for name, path in checkpoints.items():
        loaded = load_model(path, device=device)
        if loaded.sampler is None and loaded.predictor is None:
            raise MovielabError(f"{path} is a {loaded.kind}: it neither writes text nor reads genres")
        model = ServedModel(name, loaded)
        if loaded.sampler is not None:
            index = loaded.training_index
            model.scheduler = DecodingScheduler(
                loaded.sampler,
                max_batch,
                copies=index.__contains__ if index is not None else None,
                device=device,
                use_cache=use_cache,
                name=name,
            ).start()
        served[name] = model
    return served
