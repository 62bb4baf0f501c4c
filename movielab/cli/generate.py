"""`python -m movielab.generate ckpt=PATH title="..."`: sample from a checkpoint, print and save."""

from __future__ import annotations

import secrets
import sys
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from movielab.checkpoint import LoadedModel, load_model
from movielab.cli.command import hydra_command, pick_device
from movielab.errors import MovielabError
from movielab.files import write_new_text
from movielab.generation import GeneratedText, RowFinished, TextPiece, generate, requests_for
from movielab.options import GENERATE_OPTIONS, check_options
from movielab.sampling import SAMPLING_OPTIONS, SamplingSettings, checked_number

# this command's own options; every other option with a value is a prompt field
COMMAND_OPTIONS = {
    *SAMPLING_OPTIONS,
    "ckpt",
    "avoid_training_titles",
    "num_samples",
    "seed",
    "use_cache",
    "typewriter",
    "device",
    "save",
}


def sample_titles(results: list[GeneratedText], cut_off_note: str) -> list[str]:
    """`sample 2`, or `sample 2 (cut off: ...)` for one that ran out of tokens before its stop."""
    return [
        f"sample {i}" + (f" ({cut_off_note})" if r.cut_off else "") for i, r in enumerate(results, start=1)
    ]


def save_samples(run_dir: Path, header: str, texts: list[str], titles: list[str]) -> Path:
    """A new file under <run>/samples/: never overwrites samples saved before."""
    body = header + "".join(f"\n=== {title} ===\n{text}\n" for title, text in zip(titles, texts, strict=True))
    return write_new_text(run_dir / "samples", datetime.now().strftime("%Y-%m-%d_%H-%M-%S"), ".txt", body)


def prompt_from(cfg: DictConfig) -> dict:
    """Every option that is not this command's own: the prompt, checked by the model itself."""
    values = OmegaConf.to_container(cfg, resolve=True)
    return {
        name: value for name, value in values.items() if name not in COMMAND_OPTIONS and value is not None
    }


def write(
    model: LoadedModel, cfg: DictConfig, requests: list, device: torch.device, console: Console
) -> list[GeneratedText]:
    """Every sample; with typewriter=true one at a time, each printed as it is written."""
    options = {"use_cache": cfg.use_cache, "device": device}
    if model.training_index is not None:
        options["copies"] = model.training_index.__contains__
    if cfg.avoid_training_titles:
        if model.training_index is None:
            raise MovielabError(
                f"avoid_training_titles=true: {cfg.ckpt} holds no index of its training texts"
            )
        options["reject"] = True
    results: list[GeneratedText | None] = [None] * len(requests)
    started: set[int] = set()
    for event in generate(model.sampler, requests, max_batch=1 if cfg.typewriter else 64, **options):
        if isinstance(event, RowFinished):
            results[event.row] = event.result
            if cfg.typewriter:
                sys.stdout.write("\n")
        elif cfg.typewriter and isinstance(event, TextPiece):
            if event.row not in started:
                started.add(event.row)
                console.rule(f"sample {event.row + 1}")
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif cfg.typewriter:  # RowRestarted: the sample copied a training text and is drawn again
            sys.stdout.write(f"\n[{event.reason}: drawn again]\n")
    return [r for r in results if r is not None]


def generate_samples(cfg: DictConfig) -> list[GeneratedText]:
    check_options(cfg, GENERATE_OPTIONS)
    settings = SamplingSettings.from_options(cfg)
    num_samples = checked_number("num_samples", cfg.num_samples, int)
    if num_samples < 1:
        raise MovielabError(f"num_samples={num_samples} must be at least 1")
    device = pick_device(cfg.device)
    model = load_model(cfg.ckpt, device=device)
    if model.sampler is None:
        raise MovielabError(
            f"{cfg.ckpt} is a {model.kind}: it writes no text (python -m movielab.predict reads it)"
        )
    seed = checked_number("seed", cfg.seed, int) if cfg.seed is not None else secrets.randbelow(2**31)
    prompt = prompt_from(cfg)
    requests = requests_for(prompt, settings, seed, num_samples)
    console = Console()
    results = write(model, cfg, requests, device, console)
    texts = [r.text for r in results]
    stop = model.template.stop
    titles = sample_titles(
        results, f"cut off: max_new_tokens={settings.max_new_tokens} reached before {stop}"
    )
    if not cfg.typewriter:
        for title, text in zip(titles, texts, strict=True):
            console.rule(title)
            console.print(text, markup=False, highlight=False, soft_wrap=True)
    cut = sum(r.cut_off for r in results)
    if cut:
        print(
            f"{cut} of {len(results)} samples reached max_new_tokens={settings.max_new_tokens} before "
            f"{stop}; a larger max_new_tokens lets them finish"
        )
    if cfg.save:
        header = (
            f"# ckpt={model.path} {' '.join(f'{k}={v!r}' for k, v in prompt.items())} seed={seed} "
            f"temperature={settings.temperature} top_k={settings.top_k} top_p={settings.top_p} "
            f"min_p={settings.min_p} repetition_penalty={settings.repetition_penalty} "
            f"max_new_tokens={settings.max_new_tokens}\n"
        )
        saved = save_samples(model.run_dir, header, texts, titles)
        print(f"saved {len(texts)} sample{'' if len(texts) == 1 else 's'} to {saved} (seed={seed})")
    return results


main = hydra_command("generate", generate_samples, free_text=True)


if __name__ == "__main__":
    main()
