"""movielab: train, sweep, compare and sample movie-text generators with one command."""

from pathlib import Path

__version__ = "0.1.0"

# Hydra configs live beside the package (an editable install keeps them there); an absolute path
# works whether an entry point runs as `python -m movielab.train` or as the `movielab-train` script.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
