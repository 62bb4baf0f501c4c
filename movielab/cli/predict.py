"""`python -m movielab.predict ckpt=PATH text="..."`: print a genre classifier's probability per genre."""

from __future__ import annotations

from omegaconf import DictConfig

from movielab.checkpoint import load_model
from movielab.cli.command import hydra_command, pick_device
from movielab.data.records import Record
from movielab.errors import MovielabError
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


main = hydra_command("predict", predict, free_text=True)


if __name__ == "__main__":
    main()
