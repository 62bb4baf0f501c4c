"""Hyperparameter sweeps: movielab's Hydra sweeper on Optuna, the callback that reports a trial's
validation loss and cost, and the report that turns a study into tables and a plot."""
