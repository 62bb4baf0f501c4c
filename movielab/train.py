"""`python -m movielab.train [overrides]`: the training entry point (movielab.cli.train)."""

from movielab.cli.train import main, train  # noqa: F401 (train: the function sweeps and tests call)

if __name__ == "__main__":
    main()
