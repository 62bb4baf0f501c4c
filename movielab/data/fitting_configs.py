"""Which bundled `data=` options a CSV file's header fits: a file given to the wrong option (the
IMDB-1000 CSV under data=letterboxd) is pointed at the one whose columns it has."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from movielab import CONFIG_DIR

CSV_READER = "movielab.data.readers.CsvReader"


@contextmanager
def _hydra() -> Iterator[None]:
    """Inside a Hydra command its config search path is already set up; elsewhere (tests, the
    API) movielab's own config folder is opened for the lookup and closed after it."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        yield


def _needed_columns(data: DictConfig) -> set[str]:
    """The columns a CSV-reading data option cannot do without (none for the other readers)."""
    reader = data.get("reader") or {}
    if reader.get("_target_") != CSV_READER:
        return set()
    optional = set(reader.get("optional") or ())
    columns = reader.get("columns") or {}
    return {column for field, column in columns.items() if column is not None and field not in optional}


def data_options_fitting(header: Sequence[str]) -> list[str]:
    """The data= options read by the CSV reader whose needed columns are all in `header`."""
    fitting = []
    with _hydra():
        options = GlobalHydra.instance().config_loader().get_group_options("data")
        for name in (option for option in options if not option.startswith("_")):  # _base: a shared part
            needed = _needed_columns(compose(config_name=f"data/{name}").data)  # composed under its group
            if needed and needed <= set(header):
                fitting.append(name)
    return fitting


def fitting_options_hint(header: Sequence[str]) -> str:
    """'; the file's columns fit data=X' (or nothing when no bundled option fits)."""
    fitting = data_options_fitting(header)
    if not fitting:
        return ""
    return f"; the file's columns fit {' or '.join(f'data={name}' for name in fitting)}"
