"""Hyperparameter search for the KL weight (beta) of convolutional VAEs."""

__version__ = "0.1.0"
