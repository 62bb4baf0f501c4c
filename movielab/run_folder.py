"""A run's folder is its own: claimed whole before Hydra writes into it, never shared or reused.

`RunFolderClaim` is a Hydra callback (conf/hydra/default.yaml) that runs before Hydra writes
`.hydra/` into the run folder: a default folder (named by the second the run starts) is created
with an exclusive mkdir, and a run that finds it taken gets `<name>-1`, `<name>-2`, ...; a folder
given with `hydra.run.dir=` that already holds a run is refused unless the command resumes a
checkpoint inside it (`ckpt_path=`) or says `overwrite=true`, which first deletes that run's
checkpoints and logs. Optional config groups (`experiment=`, `debug=`, `hparams_search=`) that
name no config are refused too (Hydra would silently leave them out), and so are bad option
values (movielab.options), so a mistyped command leaves no folder behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from movielab import CONFIG_DIR
from movielab.errors import ENVIRONMENT_ERRNOS, MovielabError, report_and_exit
from movielab.options import check_options

# what a run that trained leaves (a run that failed before training leaves only its config copy,
# which a new run may replace)
RUN_OUTPUTS = ("checkpoints", "tensorboard", "csv")
# what overwrite=true deletes: the previous run's weights and curves (samples and evaluations stay)
REPLACED_OUTPUTS = ("checkpoints", "tensorboard", "csv", "tokenizer.json", "train.log")
OPTIONAL_GROUPS = ("experiment", "debug", "hparams_search")


def run_outputs(folder: Path) -> list[str]:
    """The outputs of an earlier run's training that `folder` holds (none for a new folder)."""
    return [name for name in RUN_OUTPUTS if (folder / name).is_dir() and any((folder / name).rglob("*.*"))]


def claim_new_folder(folder: Path) -> Path:
    """`folder`, or the first of `folder-1`, `folder-2`, ... that this process creates itself
    (mkdir fails when another process made it first, so two runs never share one)."""
    candidate, n = folder, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            candidate, n = folder.with_name(f"{folder.name}-{n}"), n + 1
        except OSError as error:
            reason = ENVIRONMENT_ERRNOS.get(error.errno, error.strerror)
            raise MovielabError(
                f"cannot create the run folder {candidate}: {reason}; choose a writable place with "
                "paths.log_dir=... or hydra.run.dir=..."
            ) from None


def _inside(path: str | None, folder: Path) -> bool:
    return bool(path) and Path(path).resolve().is_relative_to(folder.resolve())


def check_reuse(folder: Path, ckpt_path: str | None, overwrite: bool) -> None:
    """Refuse a folder that holds a run, unless resuming inside it or told to overwrite it."""
    found = run_outputs(folder)
    if not found or _inside(ckpt_path, folder):
        return
    if overwrite:
        for name in REPLACED_OUTPUTS:
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        return
    last = folder / "checkpoints" / "last.ckpt"
    resume = f"resume it with ckpt_path={last}, " if last.exists() else ""
    raise MovielabError(
        f"hydra.run.dir={folder} already holds a run ({', '.join(found)}): {resume}choose another "
        "folder, or add overwrite=true to replace its checkpoints and logs"
    )


def check_group_choices(config: DictConfig) -> None:
    """An optional group's choice must name a config: Hydra leaves a missing one out silently."""
    choices = config.hydra.runtime.choices
    for group in OPTIONAL_GROUPS:
        choice = choices.get(group)
        if choice is None or (Path(CONFIG_DIR) / group / f"{choice}.yaml").exists():
            continue
        if config.hydra.searchpath:  # configs may come from elsewhere: Hydra's word is final
            continue
        options = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
        raise MovielabError(
            f"{group}={choice} is not a config; the options of {group} are: {', '.join(options)}"
        )


class RunFolderClaim(Callback):
    """Claims the run folder before Hydra writes its config copy there (see the module's doc)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # run.dir interpolates ${hydra:runtime.cwd}
        try:
            check_group_choices(config)
            check_options(config)  # a bad option is refused before any folder is made
            folder = Path(str(config.hydra.run.dir))
            given = any(o.split("=", 1)[0] == "hydra.run.dir" for o in config.hydra.overrides.hydra)
            if given:
                check_reuse(folder, config.get("ckpt_path"), bool(config.get("overwrite")))
                return
            claimed = claim_new_folder(folder)
            with read_write(config.hydra.run):
                config.hydra.run.dir = str(claimed)
        except MovielabError as error:
            report_and_exit(str(error))
        except Exception as error:  # Hydra would only warn and let the run share a folder
            report_and_exit(f"cannot claim the run folder: {type(error).__name__}: {error}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_group_choices(config)
        except MovielabError as error:
            report_and_exit(str(error))
