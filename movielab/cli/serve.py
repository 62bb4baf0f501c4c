"""`python -m movielab.serve ckpt=PATH`: serve trained models over HTTP (API, page, OpenAPI docs)."""

from __future__ import annotations

import os
import sys

import torch
from omegaconf import DictConfig, OmegaConf

from movielab.cli.command import hydra_command, pick_device
from movielab.errors import MovielabError
from movielab.options import COUNT, DEVICE, FLAG, NAME, POSITIVE, Rule, check_options, choice
from movielab.sampling import SamplingSettings

# every option of conf/serve.yaml but the checkpoints (checked to exist), api_key (any text of 8
# characters or more) and sampling.* (SamplingSettings' own checks), checked before anything loads
SERVE_OPTIONS: dict[str, Rule] = {
    "host": NAME,
    "port": Rule("an integer from 1 to 65535", lambda v: COUNT.accepts(v) and v <= 65535),
    "device": DEVICE,
    "max_batch": COUNT,
    "max_n": COUNT,
    "max_new_tokens_limit": COUNT,
    "max_body_bytes": COUNT,
    "use_cache": FLAG,
    "torch_threads": COUNT.or_null(),
    "thread_switch_ms": POSITIVE,
    "log_level": choice("critical", "error", "warning", "info", "debug", "trace"),
}


def serve_options(cfg: DictConfig):  # noqa: ANN201 (ServeOptions: fastapi is imported only when serving)
    """The server's options, every one checked (a one-line error naming the first bad one)."""
    from movielab.serve.app import ServeOptions

    check_options(cfg, SERVE_OPTIONS)
    limits = {name: cfg[name] for name in ("max_n", "max_new_tokens_limit", "max_body_bytes")}
    try:
        sampling = SamplingSettings.from_options(OmegaConf.to_container(cfg.sampling, resolve=True))
    except MovielabError as error:
        raise MovielabError(f"sampling.{error}") from None
    api_key = None if cfg.api_key is None else str(cfg.api_key)
    if api_key is not None and len(api_key) < 8:
        raise MovielabError("api_key must be at least 8 characters (e.g. api_key=$(openssl rand -hex 16))")
    return ServeOptions(
        limits["max_n"], limits["max_new_tokens_limit"], api_key, limits["max_body_bytes"], sampling
    )


def decoding_threads(option: int | None) -> int:
    """torch's threads for decoding: `torch_threads`, or one less than the cores, since the event
    loop that streams the text needs a core of its own (two busy OpenMP threads on two cores
    leave it none, and every client's next token waits)."""
    return max(1, (os.cpu_count() or 1) - 1) if option is None else option


def serve(cfg: DictConfig) -> None:
    """Load every named checkpoint, start their decoding loops, run uvicorn until interrupted."""
    try:
        import uvicorn

        from movielab.serve.app import create_app
        from movielab.serve.served import checkpoints_to_serve, load_served
    except ImportError as error:
        raise MovielabError(
            f"serving needs the serve extra: pip install -e '.[serve]' ({error.name} is missing)"
        ) from None
    options = serve_options(cfg)
    container = OmegaConf.to_container(cfg, resolve=True)
    checkpoints = checkpoints_to_serve(container["ckpt"], container["ckpts"])
    device = pick_device(cfg.device)
    torch.set_num_threads(decoding_threads(cfg.torch_threads))
    sys.setswitchinterval(cfg.thread_switch_ms / 1000)
    models = load_served(checkpoints, device, cfg.max_batch, cfg.use_cache)
    try:
        for name, model in models.items():
            print(f"serving {name}: {model.loaded.kind} ({model.loaded.path})")
        print(f"page: http://{cfg.host}:{cfg.port}/   API docs: http://{cfg.host}:{cfg.port}/docs")
        uvicorn.run(
            create_app(models, options), host=str(cfg.host), port=int(cfg.port), log_level=str(cfg.log_level)
        )
    finally:
        for model in models.values():
            if model.scheduler is not None:
                model.scheduler.close()


main = hydra_command("serve", serve)


if __name__ == "__main__":
    main()
