"""`python -m movielab.serve ckpt=PATH`: serve trained models over HTTP (API, page, OpenAPI docs)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from movielab import CONFIG_DIR
from movielab.cli.generate import pick_device
from movielab.errors import MovielabError, user_errors_reported
from movielab.sampling import SamplingSettings, checked_number


def serve_options(cfg: DictConfig):  # noqa: ANN201 (ServeOptions: fastapi is imported only when serving)
    from movielab.serve.app import ServeOptions

    limits = {
        name: checked_number(name, cfg[name], int)
        for name in ("max_batch", "max_n", "max_new_tokens_limit", "max_body_bytes", "port")
    }
    for name, value in limits.items():
        if value < 1:
            raise MovielabError(f"{name}={value} must be at least 1")
    sampling = SamplingSettings.from_options(OmegaConf.to_container(cfg.sampling, resolve=True))
    api_key = None if cfg.api_key is None else str(cfg.api_key)
    if api_key is not None and len(api_key) < 8:
        raise MovielabError("api_key must be at least 8 characters (e.g. api_key=$(openssl rand -hex 16))")
    return ServeOptions(
        limits["max_n"], limits["max_new_tokens_limit"], api_key, limits["max_body_bytes"], sampling
    )


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
    models = load_served(
        checkpoints, device, checked_number("max_batch", cfg.max_batch, int), bool(cfg.use_cache)
    )
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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="serve")
def _hydra_main(cfg: DictConfig) -> None:
    with user_errors_reported():
        serve(cfg)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
