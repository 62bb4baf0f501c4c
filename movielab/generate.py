"""`python -m movielab.generate ckpt=PATH title="..."`: sample from a checkpoint, print and save."""

from __future__ import annotations

import re
import secrets
import sys
import time
from datetime import datetime
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from rich.console import Console

from movielab import CONFIG_DIR
from movielab.checkpoint import load_run
from movielab.errors import MovielabError, user_errors_reported
from movielab.evaluation import load_training_index
from movielab.files import write_new_text
from movielab.sampling import GeneratedTexts, SamplingSettings

# options whose values are free text: quoted for Hydra so titles may hold apostrophes and commas
FREE_TEXT_OPTIONS = ("title", "prime", "text")
# options that fill the model's prompt or condition it; the model says which ones it takes
PROMPT_OPTIONS = ("title", "prime", "text", "rating", "genres")


def quote_free_text(argv: list[str]) -> list[str]:
    """`title=Schindler's List` -> `title="Schindler's List"`, which Hydra's override parser accepts."""
    pattern = re.compile(rf"^(\+{{0,2}}(?:{'|'.join(FREE_TEXT_OPTIONS)}))=(.*)$", re.DOTALL)
    quoted = []
    for arg in argv:
        match = pattern.match(arg)
        value = match.group(2) if match else ""
        if match and not (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            arg = f'{match.group(1)}="{escaped}"'
        quoted.append(arg)
    return quoted


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def sample_titles(texts: list[str], cut_off_note: str) -> list[str]:
    """`sample 2`, or `sample 2 (cut off: ...)` for one that ran out of tokens before its stop
    (known for GeneratedTexts; any other list of samples, e.g. an evaluation's, has none)."""
    unfinished = getattr(texts, "unfinished", ())
    return [
        f"sample {i}" + (f" ({cut_off_note})" if i - 1 in unfinished else "")
        for i in range(1, len(texts) + 1)
    ]


def save_samples(run_dir: Path, header: str, texts: list[str], titles: list[str] | None = None) -> Path:
    """A new file under <run>/samples/: never overwrites samples saved before."""
    titles = titles or sample_titles(texts, "cut off")
    body = header + "".join(f"\n=== {title} ===\n{text}\n" for title, text in zip(titles, texts, strict=True))
    return write_new_text(run_dir / "samples", datetime.now().strftime("%Y-%m-%d_%H-%M-%S"), ".txt", body)


def show(console: Console, texts: list[str], titles: list[str], typewriter: bool, delay: float) -> None:
    for title, text in zip(titles, texts, strict=True):
        console.rule(title)
        if not typewriter:
            console.print(text, markup=False, highlight=False, soft_wrap=True)
            continue
        for char in text:
            sys.stdout.write(char)
            sys.stdout.flush()
            time.sleep(delay)
        sys.stdout.write("\n")


def generate(cfg: DictConfig) -> GeneratedTexts:
    settings = SamplingSettings(
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        use_cache=cfg.use_cache,
    )
    if cfg.num_samples < 1:
        raise MovielabError(f"num_samples={cfg.num_samples} must be at least 1")
    device = pick_device(cfg.device)
    run = load_run(cfg.ckpt, device=device)
    template = hydra.utils.instantiate(run.config.data.template)
    seed = cfg.seed if cfg.seed is not None else secrets.randbelow(2**31)
    generator = torch.Generator(device=device).manual_seed(seed)
    prompt = {name: cfg[name] for name in PROMPT_OPTIONS if cfg.get(name) is not None}
    reject = None
    if cfg.get("avoid_training_titles"):
        reject = load_training_index(cfg.ckpt).__contains__  # samples copied from training are redrawn
    texts = run.module.generate_text(
        run.tokenizer, template, cfg.num_samples, settings, generator, reject=reject, **prompt
    )
    cut_off_note = f"cut off: max_new_tokens={settings.max_new_tokens} reached before {template.stop}"
    titles = sample_titles(texts, cut_off_note)
    console = Console()
    show(console, texts, titles, cfg.typewriter, cfg.typewriter_delay)
    if texts.unfinished:
        print(
            f"{len(texts.unfinished)} of {len(texts)} samples reached "
            f"max_new_tokens={settings.max_new_tokens} before {template.stop}; "
            "a larger max_new_tokens lets them finish"
        )
    if cfg.save:
        header = (
            f"# ckpt={run.path} {' '.join(f'{k}={v!r}' for k, v in prompt.items())} seed={seed} "
            f"temperature={settings.temperature} "
            f"top_k={settings.top_k} top_p={settings.top_p} max_new_tokens={settings.max_new_tokens}\n"
        )
        saved = save_samples(run.run_dir, header, texts, titles)
        print(f"saved {len(texts)} samples to {saved} (seed={seed})")
    return texts


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="generate")
def _hydra_main(cfg: DictConfig) -> None:
    with user_errors_reported():
        generate(cfg)


def main() -> None:
    sys.argv = [sys.argv[0], *quote_free_text(sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
