"""The search layer: a study file becomes an Optuna study whose trials train VAEs.

``study_file`` validates the file, ``space`` samples a trial's config, ``objective`` runs one
trial, ``pruning`` decides when to stop one, ``study`` runs trials until the budget is met,
``records`` names what a trial stores, ``artifacts`` keeps weights and pictures, ``export``
writes a trial's config. Nothing here draws (see :mod:`tuner.report`).
"""
