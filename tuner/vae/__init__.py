"""The VAE layer: data, β schedules, the Keras 3 model, training and evaluation of one
configuration. It never imports Optuna; the search layer (:mod:`tuner.search`) drives it.

Modules that need Keras import it at their top; :mod:`~tuner.vae.schedules`,
:mod:`~tuner.vae.data` and :mod:`~tuner.vae.curves` do not, so reports and validation stay
free of a deep-learning backend.
"""
