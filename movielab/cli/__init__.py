"""The entry points: train, generate, evaluate, predict, sweep_report (console scripts
movielab-<name>; `python -m movielab.<name>` runs the same)."""
