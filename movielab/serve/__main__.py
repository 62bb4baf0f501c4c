"""`python -m movielab.serve ckpt=PATH`: the serving entry point (movielab.cli.serve)."""

from movielab.cli.serve import main

main()
