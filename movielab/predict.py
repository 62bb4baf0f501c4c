"""`python -m movielab.predict ckpt=PATH text="..."`: genres of a plot (movielab.cli.predict)."""

from movielab.cli.predict import main, predict  # noqa: F401 (predict: tests call it)

if __name__ == "__main__":
    main()
