"""`python -m movielab.generate ckpt=PATH title="..."`: the sampling entry point (movielab.cli.generate)."""

from movielab.cli.generate import generate_samples, main  # noqa: F401 (generate_samples: tests call it)

if __name__ == "__main__":
    main()
