"""`python -m movielab.evaluate ckpt=PATH [classifier=PATH]`: sample a temperature x top-p grid from a
language model and measure copies, novelty, diversity, held-out BLEU and genre recognition; or
`samples=FILE` (movielab.generate's files, or one sample per line) to measure existing samples;
or `mode=conditioning`: does a rating-conditioned model obey the rating?

Writes to a new folder, by default `<run>/evaluation/<date>_<time>/` (nothing earlier is
overwritten): for the grid `evaluation.md` (the table), `evaluation.png` (the plot), `metrics.json`
(numbers, settings and samples) and TensorBoard events (HParams tab: one run per grid cell); for
conditioning `conditioning.md` and `conditioning.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from movielab.checkpoint import LoadedModel, load_model
from movielab.cli.command import hydra_command, pick_device
from movielab.data.recorded import recorded_data
from movielab.errors import MovielabError
from movielab.evaluation.generated_text import GenreJudge, ReferenceTexts, text_metrics
from movielab.evaluation.rating_conditioning import RatingEvaluation, evaluate_rating_conditioning
from movielab.evaluation.sample_files import read_sample_file
from movielab.files import atomic_output, atomic_write_text, new_file_name
from movielab.generation import Request, generate_texts
from movielab.models.language_sampler import LanguageModelSampler
from movielab.models.spec import data_needs
from movielab.options import EVALUATE_OPTIONS, check_options
from movielab.reports import markdown_table
from movielab.sampling import SamplingSettings, checked_number

HELDOUT = "held-out (real)"
# the table's columns, in order, when present
COLUMNS = (
    "samples", "words", "copy_rate", "title_copy_rate", "novelty_{n}gram", "distinct_1", "distinct_2",
    "self_bleu_{n}", "bleu_{n}", "genre_recall", "genre_top1",
)  # fmt: skip
PLOTTED = ("title_copy_rate", "novelty_{n}gram", "distinct_2", "self_bleu_{n}", "bleu_{n}", "genre_recall")


@dataclass
class SampleSet:
    """One row of the evaluation: samples made one way (a grid cell, a file, the real held-out texts)."""

    label: str
    settings: dict[str, Any]
    samples: list[str]
    requested: list[list[str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(OmegaConf.to_container(value)) if OmegaConf.is_list(value) else [value]


def _requested_genres(cfg: DictConfig, references: ReferenceTexts, count: int) -> list[list[str]]:
    """The genres each sample asks for: `genres=` for all, else the held-out movies' genres in turn."""
    if cfg.genres is not None:
        return [[str(g) for g in _as_list(cfg.genres)]] * count
    return references.requested_genres(count)


def reference_data(model: LoadedModel, data_path: str | None) -> Any:
    """The run's own data (usually straight from the token cache), optionally from another path."""
    data = recorded_data(model.config, data_path)
    data.connect(data_needs(model.spec))  # as training bound it: the same records and cache
    return data.prepare()


def sample_grid(cfg: DictConfig, model: LoadedModel, requested: list[list[str]]) -> list[SampleSet]:
    """num_samples samples per (temperature, top_p); genre-conditioned models get `requested`."""
    temperatures, top_ps = _as_list(cfg.temperatures), _as_list(cfg.top_ps)
    if not temperatures or not top_ps:
        raise MovielabError("temperatures and top_ps need at least one value each, e.g. top_ps=[null,0.9]")
    genre_model = "genres" in model.spec.conditions
    prompts = [{"genres": g} for g in requested] if genre_model and requested else [{}] * cfg.num_samples
    sets = []
    for temperature in temperatures:
        for top_p in top_ps:
            top_p = None if top_p in (None, 0, 0.0) else float(top_p)  # the reference's top-p 0 = off
            settings = SamplingSettings(
                temperature=temperature, top_k=cfg.top_k, top_p=top_p, max_new_tokens=cfg.max_new_tokens
            )
            requests = [Request(p, settings, cfg.seed + i) for i, p in enumerate(prompts[: cfg.num_samples])]
            texts = [r.text for r in generate_texts(model.sampler, requests, device=model.device)]
            label = f"T={float(temperature):g} top-p={'off' if top_p is None else f'{top_p:g}'}"
            cell = {"temperature": float(temperature), "top_p": 0.0 if top_p is None else top_p}
            sets.append(SampleSet(label, cell, texts, requested if genre_model and requested else []))
            print(f"sampled {len(texts)} texts at {label}")
    return sets


def evaluate(cfg: DictConfig) -> list[SampleSet] | RatingEvaluation:
    """mode=grid: every row's metrics; mode=conditioning: the rating evaluation. Both write a report."""
    check_options(cfg, EVALUATE_OPTIONS)
    if cfg.mode == "conditioning":
        return evaluate_conditioning(cfg)
    if cfg.mode != "grid":
        raise MovielabError(f"mode={cfg.mode!r} must be grid or conditioning")
    return evaluate_grid(cfg)


def evaluate_grid(cfg: DictConfig) -> list[SampleSet]:
    checked_number("num_samples", cfg.num_samples, int)
    checked_number("seed", cfg.seed, int)
    if cfg.num_samples < 2:
        raise MovielabError(f"num_samples={cfg.num_samples} must be at least 2 (self-BLEU compares samples)")
    files = [read_sample_file(path) for path in _as_list(cfg.samples)]
    ckpt = cfg.ckpt or next((f.ckpt for f in files if f.ckpt), None)
    if ckpt is None:
        raise MovielabError(
            "ckpt=PATH is required: the language model to sample from, or (with samples=FILE) the run "
            "whose training and held-out data the samples are compared with"
        )
    device = pick_device(cfg.device)
    model = load_model(ckpt, device=device)
    references = ReferenceTexts.from_data(reference_data(model, cfg.data_path), model.template)
    count = min(cfg.num_samples, len(references.heldout))
    if files:
        sets = [
            SampleSet(f.path.name, {"source": str(f.path)}, f.samples, _file_genres(cfg, f)) for f in files
        ]
    else:
        if model.sampler is None:
            raise MovielabError(f"{ckpt} is a {model.kind}: it writes no text to evaluate")
        sets = sample_grid(cfg, model, _requested_genres(cfg, references, cfg.num_samples))
    real_genres = [list(g) for g in references.heldout_genres[:count]]
    sets.append(SampleSet(HELDOUT, {"source": "held-out"}, references.heldout[:count], real_genres))

    judge = None
    if cfg.classifier:
        classifier = load_model(cfg.classifier, device=device)
        if classifier.predictor is None:
            raise MovielabError(
                f"classifier={cfg.classifier} is not a genre classifier (it is a {classifier.kind})"
            )
        judge = GenreJudge(classifier.predictor)
    for sample_set in sets:
        sample_set.metrics = text_metrics(sample_set.samples, references, cfg.ngram)
        if sample_set.label == HELDOUT:
            sample_set.metrics[f"bleu_{cfg.ngram}"] = float("nan")  # these are the references
        if judge is not None and sample_set.requested:
            records = [references.reader.record(s) for s in sample_set.samples]
            sample_set.metrics.update(judge.recognition(records, sample_set.requested))
    write_report(cfg, model, sets)
    return sets


def _file_genres(cfg: DictConfig, sample_file: Any) -> list[list[str]]:
    """The genres a file's samples asked for: `genres=`, else the file header's genres, else none."""
    if cfg.genres is not None:
        return [[str(g) for g in _as_list(cfg.genres)]] * len(sample_file.samples)
    return [sample_file.genres] * len(sample_file.samples) if sample_file.genres else []


def columns(sets: list[SampleSet], n: int) -> list[str]:
    present = {name for s in sets for name in s.metrics}
    return [c.format(n=n) for c in COLUMNS if c.format(n=n) in present]


def table(sets: list[SampleSet], n: int) -> str:
    names = columns(sets, n)
    rows = [[s.label, *(s.metrics.get(name, float("nan")) for name in names)] for s in sets]
    return markdown_table(["samples from", *names], rows)


def plot(sets: list[SampleSet], n: int) -> Any:
    """One panel per metric: lines over temperature per top-p for a grid, bars for files; the real
    held-out texts as a dashed line."""
    from matplotlib.figure import Figure

    names = [c.format(n=n) for c in PLOTTED if any(c.format(n=n) in s.metrics for s in sets)]
    figure = Figure(figsize=(4 * min(3, len(names)), 3.2 * ((len(names) + 2) // 3)), layout="constrained")
    axes = figure.subplots((len(names) + 2) // 3, min(3, len(names)), squeeze=False).flatten()
    generated = [s for s in sets if s.label != HELDOUT]
    real = next((s for s in sets if s.label == HELDOUT), None)
    grid = all("temperature" in s.settings for s in generated)
    for axis, name in zip(axes, names, strict=False):
        if grid:
            for top_p in sorted({s.settings["top_p"] for s in generated}):
                cells = sorted(
                    (s for s in generated if s.settings["top_p"] == top_p),
                    key=lambda s: s.settings["temperature"],
                )
                label = "top-p off" if top_p == 0 else f"top-p {top_p:g}"
                axis.plot(
                    [c.settings["temperature"] for c in cells],
                    [c.metrics.get(name) for c in cells],
                    "o-",
                    label=label,
                )
            axis.set_xlabel("temperature")
        else:
            axis.bar(range(len(generated)), [s.metrics.get(name, float("nan")) for s in generated])
            axis.set_xticks(range(len(generated)), [s.label for s in generated], rotation=30, ha="right")
        if real is not None and name in real.metrics and real.metrics[name] == real.metrics[name]:
            axis.axhline(real.metrics[name], linestyle="--", color="gray", label="held-out (real)")
        axis.set_title(name)
    for axis in axes[len(names) :]:
        axis.set_visible(False)
    if names:
        axes[0].legend(fontsize="small")
    return figure


def report_folder(cfg: DictConfig, model: LoadedModel) -> Path:
    """A new folder under <run>/evaluation/ (or out_dir), claimed by creating it."""
    folder = Path(cfg.out_dir).expanduser() if cfg.out_dir else model.run_dir / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        out = new_file_name(folder, datetime.now().strftime("%Y-%m-%d_%H-%M-%S"), "")
        try:
            out.mkdir()
            return out
        except FileExistsError:
            continue


def write_report(cfg: DictConfig, model: LoadedModel, sets: list[SampleSet]) -> Path:
    from matplotlib.figure import Figure  # noqa: F401 (plot needs it; imported here, not at start-up)
    from torch.utils.tensorboard import SummaryWriter

    out = report_folder(cfg, model)
    text = table(sets, cfg.ngram)
    settings = f"top_k={cfg.top_k} max_new_tokens={cfg.max_new_tokens} seed={cfg.seed}"
    header = (
        f"# Evaluation of {model.path}\n\n{len(sets[0].samples)} samples a row ({settings}); "
        f"classifier: {cfg.classifier or 'none'}.\n\n"
    )
    atomic_write_text(out / "evaluation.md", header + text)
    figure = plot(sets, cfg.ngram)
    with atomic_output(out / "evaluation.png") as stream:
        figure.savefig(stream, format="png", dpi=110)
    record = {
        "ckpt": str(model.path),
        "options": OmegaConf.to_container(cfg),
        "rows": [s.__dict__ for s in sets],
    }
    atomic_write_text(out / "metrics.json", json.dumps(record, indent=1, ensure_ascii=False, default=str))
    with SummaryWriter(log_dir=str(out / "tensorboard")) as writer:
        for s in sets:
            values = {f"evaluate/{k}": v for k, v in s.metrics.items() if v == v}
            hparams = {k: v for k, v in s.settings.items() if isinstance(v, int | float | str)}
            writer.add_hparams(hparams, values, run_name=re.sub(r"[^A-Za-z0-9_.=-]+", "_", s.label))
        writer.add_text("evaluate/table", text)
        writer.add_figure("evaluate/plot", figure)
    print(text)
    print(f"report: {out / 'evaluation.md'} (plot evaluation.png, metrics.json, tensorboard/)")
    return out


def conditioning_report(result: RatingEvaluation, examples: int) -> str:
    lines = [result.table(examples=0), ""]
    for rating, rows in result.by_rating().items():
        lines.append(f"rating {rating:g}:")
        lines += [
            f"  {title or '(empty)'}   (recovered {recovered:g})" for title, recovered in rows[:examples]
        ]
    return "\n".join(lines)


def evaluate_conditioning(cfg: DictConfig) -> RatingEvaluation:
    """Spearman between requested ratings and those recovered from the model's own likelihood of its
    titles, copies of training titles, distinct-n, and sample titles per rating."""
    options = cfg.conditioning
    settings = SamplingSettings.from_options(options)
    if checked_number("conditioning.samples_per_rating", options.samples_per_rating, int) < 1:
        raise MovielabError(
            f"conditioning.samples_per_rating={options.samples_per_rating} must be at least 1"
        )
    if not cfg.ckpt:
        raise MovielabError("ckpt=PATH is required: a rating-conditioned model (model=title_transformer)")
    model = load_model(cfg.ckpt, device=pick_device(cfg.device))
    sampler = model.sampler
    if not isinstance(sampler, LanguageModelSampler) or "rating" not in sampler.conditions:
        raise MovielabError(
            f"{cfg.ckpt} is not a rating-conditioned model (train with model=title_transformer)"
        )
    ratings = None
    if options.ratings is not None:
        ratings = _as_list(options.ratings)
        for rating in ratings:
            sampler.conditions["rating"].value(rating, "conditioning.ratings")  # one-line errors
    heldout = None
    if options.heldout:
        try:  # the validation split, from the token cache (or the data file) the run was trained on
            heldout = reference_data(model, cfg.data_path).val
        except MovielabError as error:
            print(f"note: no held-out comparison ({error})")
    result = evaluate_rating_conditioning(
        sampler,
        settings,
        ratings,
        options.samples_per_rating,
        model.training_index,
        cfg.seed,
        heldout=heldout,
    )
    text = conditioning_report(result, options.examples)
    print(text)
    out = report_folder(cfg, model)
    record = {
        "ckpt": str(model.path),
        "options": OmegaConf.to_container(cfg),
        "metrics": result.metrics(),
        "samples": [
            {"requested": r, "recovered": c, "title": t}
            for r, c, t in zip(result.requested, result.recovered, result.titles, strict=True)
        ],
    }
    atomic_write_text(out / "conditioning.md", f"# Rating conditioning of {model.path}\n\n{text}\n")
    atomic_write_text(out / "conditioning.json", json.dumps(record, indent=1, ensure_ascii=False))
    print(f"report: {out / 'conditioning.md'} (conditioning.json)")
    return result


main = hydra_command("evaluate", evaluate)


if __name__ == "__main__":
    main()
