"""The command line shared by the commands that read checkpoints (generate, predict, evaluate,
serve): Hydra's config, its errors and the user's as one line, free text kept whole."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from movielab import CONFIG_DIR
from movielab.errors import config_errors_reported, user_errors_reported

# options whose values are free text: quoted for Hydra so titles may hold apostrophes and commas
FREE_TEXT_OPTIONS = ("title", "prime", "text")


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
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def hydra_command(
    config_name: str, task: Callable[[DictConfig], Any], free_text: bool = False
) -> Callable[[], None]:
    """The `main` of a command: `task` run on `conf/<config_name>.yaml` and the command line's
    overrides (free-text options quoted first where the command takes them). The config names
    the Hydra job (`hydra.job.name`), as Hydra would otherwise name it after this module."""

    @config_errors_reported
    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)
    def run(cfg: DictConfig) -> None:
        with user_errors_reported():
            task(cfg)

    def main() -> None:
        if free_text:
            sys.argv = [sys.argv[0], *quote_free_text(sys.argv[1:])]
        run()

    return main
