"""movielab's Hydra sweeper on current Optuna: `python -m movielab.train -m hparams_search=...`.

Hydra finds it by scanning the `hydra_plugins` namespace package; the work is done in
`movielab.sweeps`, imported only when a sweep starts, so ordinary runs pay nothing for it.
"""
