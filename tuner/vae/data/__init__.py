"""Datasets: where images come from, and the fixed train / validation / test split.

One module per source (``keras_datasets``, ``npz``, ``folder``, ``sprites``), the checks of ``.npz`` files
(``_npz_files``), and the conversion and split that every source goes through (``split``).

A dataset is a small object with ``get_config``/``from_config`` whose :meth:`load` returns
raw images. :func:`prepare` turns them into float32 NHWC arrays in [0, 1] with a split that
is the same for every trial of a study, so validation ELBOs are comparable.

What ``data.path`` means depends on the dataset, and a file that does not match is refused
(one :class:`DataError` line naming the file, what was found and what was expected), never
trained on:

* ``mnist`` / ``fashion_mnist`` / ``cifar10`` / ``cifar100``: a copy of Keras's arrays
  (``x_train``, ``y_train``, ``x_test``, ``y_test``: for MNIST 60,000 + 10,000 images of 28×28
  uint8, for CIFAR 50,000 + 10,000 of 32×32×3, or their first N) in ``<name>.npz``, or the
  folder holding it. Without ``path``, the folder named by ``TUNER_DATA_DIR``, else Keras's
  downloader (see :mod:`~tuner.vae.data.keras_datasets`).
* ``npz``: the user's own ``.npz`` (``numpy.savez``): ``x_train`` [+ ``x_test``], or ``x`` or
  ``images``.
  Beside them, the known factors of variation of the training images, if any: ``factors``
  (N, K) non-negative integers [+ ``factor_names``], or one ``factors_<name>`` (N,) per
  factor. They are split with the images, never trained on, and read by the disentanglement
  scores (:mod:`tuner.vae.disentanglement`).
* ``folder``: a folder of PNG/JPEG images.
* ``sprites``: no file: dSprites-style images generated with their factors
  (:mod:`~tuner.vae.data.sprites`).

Files are checked before numpy reads them, because numpy's own messages mislead: a text file
gets "contains pickled (object) data … allow_pickle=", which advises unsafe loading, and a
``.npy`` renamed ``.npz`` a context-manager error. Object arrays are never unpickled.

Without a local copy, the download host (or the HTTPS proxy) is probed, with a time limit,
before Keras loads: offline, the refusal is one line and creates nothing, where Keras would
make ``~/.keras``, print TensorFlow's start-up lines, and could wait on the network forever.
"""

from __future__ import annotations

from tuner.config import DataConfig
from tuner.vae.data._base import Dataset, ImageRows, RawImages, Splits, as_unit_float
from tuner.vae.data.folder import IMAGE_SUFFIXES, ImageFolder
from tuner.vae.data.keras_datasets import DATA_DIR_ENV, KERAS_LAYOUT, KerasDataset
from tuner.vae.data.npz import NpzDataset
from tuner.vae.data.split import EVAL_BINARIZATION_SEED, binarize, prepare, to_unit_float
from tuner.vae.data.sprites import SpritesDataset

__all__ = [
    "DATA_DIR_ENV",
    "EVAL_BINARIZATION_SEED",
    "IMAGE_SUFFIXES",
    "KERAS_LAYOUT",
    "Dataset",
    "ImageRows",
    "ImageFolder",
    "KerasDataset",
    "NpzDataset",
    "RawImages",
    "Splits",
    "SpritesDataset",
    "as_unit_float",
    "binarize",
    "dataset_for",
    "load_splits",
    "prepare",
    "to_unit_float",
]


def dataset_for(config: DataConfig) -> Dataset:
    """The dataset that a config's ``data`` section names."""
    if config.dataset == "npz":
        return NpzDataset(config.path or "")
    if config.dataset == "folder":
        return ImageFolder(config.path or "", config.size, config.color)
    if config.dataset == "sprites":
        return SpritesDataset(config.sprites)
    return KerasDataset(config.dataset, config.path)


def load_splits(config: DataConfig) -> Splits:
    """Load a config's ``data`` section and split it (see :func:`prepare`)."""
    return prepare(
        dataset_for(config),
        n_train=config.n_train,
        n_val=config.n_val,
        dynamic_binarization=config.dynamic_binarization,
        val_fraction=config.val_fraction,
        split_seed=config.split_seed,
    )
