"""`python -m movielab.evaluate ckpt=PATH`: the evaluation entry point (movielab.cli.evaluate)."""

from movielab.cli.evaluate import evaluate, main  # noqa: F401 (evaluate: tests call it)

if __name__ == "__main__":
    main()
