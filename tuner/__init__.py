"""Hyperparameter search for the KL weight (beta) of convolutional VAEs.

Packages, one per layer (each imports only from the ones listed before it):

* :mod:`tuner.config`, :mod:`tuner.errors`, :mod:`tuner.storage`: plain data, error types,
  storage URLs; no deep-learning backend.
* :mod:`tuner.vae`: trains and evaluates one VAE (Keras 3); knows nothing of Optuna.
* :mod:`tuner.search`: turns a study file into Optuna trials; never draws.
* :mod:`tuner.distributed`: workers and the local launcher.
* :mod:`tuner.report`: reads stored trials and draws (HTML report, dashboard views).
* :mod:`tuner.ui`: terminal output; :mod:`tuner.cli`: the thin ``tuner`` command.
"""

__version__ = "0.1.0"
