"""`python -m movielab.predict ckpt=PATH text="..."`: print a genre classifier's probability per genre."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from movielab import CONFIG_DIR
from movielab.checkpoint import load_model
from movielab.cli.generate import pick_device, quote_free_text
from movielab.data.records import Record
from movielab.errors import MovielabError, config_errors_reported, user_errors_reported
from movielab.options import PREDICT_OPTIONS, check_options
from movielab.sampling import checked_number


def predict(cfg: DictConfig) -> dict[str, float]:
    """Genre -> probability for the given plot, most probable first; also printed as a table."""
    check_options(cfg, PREDICT_OPTIONS)
    if not cfg.text or not str(cfg.text).strip():
        raise MovielabError('text="..." is required: the plot whose genres to predict')
    if cfg.top is not None and checked_number("top", cfg.top, int) < 1:
        raise MovielabError(f"top={cfg.top} must be at least 1 (or null for every genre)")
    model = load_model(cfg.ckpt, device=pick_device(cfg.device))
    if model.predictor is None:
        raise MovielabError(
            f"{cfg.ckpt} is not a genre classifier (it is a {model.kind}); train one with "
            "`python -m movielab.train experiment=genre_classifier`"
        )
    text = str(cfg.text).strip()
    record = Record(title=str(cfg.title or ""), description=text, text=text, tagline="")
    ranked = model.predictor.ranked(record)
    if cfg.top is not None:
        ranked = ranked[: cfg.top]
    threshold = model.predictor.threshold
    width = max(len(genre) for genre, _ in ranked)
    print(f"genre probabilities (* = above the decision threshold {threshold:.2f} chosen on validation)")
    for genre, probability in ranked:
        mark = "*" if probability >= threshold else " "
        print(f"{mark} {genre:<{width}}  {probability:.3f}")
    return dict(ranked)


@config_errors_reported
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def _hydra_main(cfg: DictConfig) -> None:
    with user_errors_reported():
        predict(cfg)


def main() -> None:
    sys.argv = [sys.argv[0], *quote_free_text(sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
