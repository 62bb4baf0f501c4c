"""`python -m movielab.evaluate_conditioning ckpt=PATH`: does a rating-conditioned model obey the rating?

Prints (and saves beside the run) the Spearman correlation between requested ratings and the
ratings recovered from the model's own likelihood of its titles, the share of titles copied from
the training data, distinct-1/2, and sample titles per rating (movielab.evaluation.rating_conditioning).
Everything comes from the checkpoint: the model, the tokenizer, the template and the training
titles' fingerprints; with heldout=true (the default) the run's validation titles are read again
(from the token cache, or the data file named in the checkpoint's config) for the yardstick.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import hydra
from omegaconf import DictConfig, OmegaConf

from movielab import CONFIG_DIR
from movielab.checkpoint import load_run
from movielab.errors import MovielabError, user_errors_reported
from movielab.evaluation import evaluate_rating_conditioning, load_training_index
from movielab.evaluation.rating_conditioning import RatingEvaluation
from movielab.files import write_new_text
from movielab.generate import pick_device
from movielab.sampling import SamplingSettings


def report_text(result: RatingEvaluation, examples: int) -> str:
    lines = [result.table(examples=0), ""]
    for rating, rows in result.by_rating().items():
        lines.append(f"rating {rating:g}:")
        lines += [
            f"  {title or '(empty)'}   (recovered {recovered:g})" for title, recovered in rows[:examples]
        ]
    return "\n".join(lines)


def evaluate(cfg: DictConfig) -> RatingEvaluation:
    settings = SamplingSettings(
        temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens
    )
    if cfg.samples_per_rating < 1:
        raise MovielabError(f"samples_per_rating={cfg.samples_per_rating} must be at least 1")
    run = load_run(cfg.ckpt, device=pick_device(cfg.device))
    if "rating" not in getattr(run.module, "conditions", {}):
        raise MovielabError(
            f"{cfg.ckpt} is not a rating-conditioned model (train with model=title_transformer)"
        )
    ratings = None
    if cfg.ratings is not None:
        ratings = OmegaConf.to_container(cfg.ratings) if OmegaConf.is_list(cfg.ratings) else [cfg.ratings]
        run.module.conditions["rating"].request(ratings, len(ratings), "ratings")  # one-line errors
    template = hydra.utils.instantiate(run.config.data.template)
    heldout = None
    if cfg.heldout:
        try:  # the validation split, from the token cache (or the data file) the run was trained on
            heldout = hydra.utils.instantiate(run.config.data).prepare().val
        except MovielabError as error:
            print(f"note: no held-out comparison ({error})")
    result = evaluate_rating_conditioning(
        run.module,
        run.tokenizer,
        template,
        settings,
        ratings,
        cfg.samples_per_rating,
        load_training_index(cfg.ckpt),
        cfg.seed,
        heldout=heldout,
    )
    text = report_text(result, cfg.examples)
    print(text)
    if cfg.save:
        folder = run.run_dir / "evaluations"
        record = {
            "ckpt": str(run.path),
            "options": OmegaConf.to_container(cfg),
            "metrics": result.metrics(),
            "samples": [
                {"requested": r, "recovered": c, "title": t}
                for r, c, t in zip(result.requested, result.recovered, result.titles, strict=True)
            ],
        }
        text = json.dumps(record, indent=1, ensure_ascii=False)
        path = write_new_text(folder, f"conditioning_{datetime.now():%Y-%m-%d_%H-%M-%S}", ".json", text)
        print(f"saved the report to {path}")
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate_conditioning")
def main(cfg: DictConfig) -> None:
    with user_errors_reported():
        evaluate(cfg)


if __name__ == "__main__":
    sys.exit(main())
