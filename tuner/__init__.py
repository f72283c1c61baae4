"""Hyperparameter search for the KL weight (beta) of convolutional VAEs.

Packages, one per layer (each imports only from the ones listed before it):

* :mod:`tuner.config`, :mod:`tuner.errors`, :mod:`tuner.storage`: plain data, error types,
  storages and artifact stores; no deep-learning backend. :mod:`tuner._compat` holds every
  private Optuna and Keras name used.
* :mod:`tuner.vae`: trains and evaluates one VAE (Keras 3); knows nothing of Optuna.
* :mod:`tuner.search`: turns a study file into Optuna trials; never draws.
* :mod:`tuner.distributed`: workers and the local launcher.
* :mod:`tuner.report`: reads stored trials and draws (HTML report, dashboard views).
* :mod:`tuner.ui`: terminal output; :mod:`tuner.api`: assembles runs (:func:`open_run`,
  :func:`run_study`, :func:`launch_study`, :func:`train`, :func:`refit`, :func:`load_best`);
  :mod:`tuner.cli`: the thin ``tuner`` command over them.

The layers are import-linter contracts in ``pyproject.toml``, checked by ``lint-imports``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
_API = ("launch_study", "load_best", "open_run", "refit", "run_study", "train")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    # The API lives in tuner.api; imported on first use so that `import tuner` stays light.
    if name in _API:
        from tuner import api

        return getattr(api, name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
