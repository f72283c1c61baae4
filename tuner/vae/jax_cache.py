"""JAX's persistent compilation cache, switched on in one place for every `tuner` command.

A trial's programs depend on its shapes (latent size, batch size, filters) and β family; β's
numbers and the learning rate are variables (see model.py). A trial whose programs an earlier
trial of any worker on this machine compiled loads them from disk instead of spending
3-10 s in XLA. Small programs are kept too (weight initializers take ~0.5 s each on a CPU),
which JAX leaves out below 1 s by default. TensorFlow ignores all of this.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR = Path("storage") / "jax_cache"


def settings(directory: str | Path | None = None) -> dict[str, str]:
    """The environment variables that switch the cache on (for a child process's env too)."""
    return {
        "JAX_COMPILATION_CACHE_DIR": str(Path(directory or DEFAULT_DIR).absolute()),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def enable(directory: str | Path | None = None) -> None:
    """Set the cache's environment variables unless the user set them; call before JAX is imported."""
    for name, value in settings(directory).items():
        os.environ.setdefault(name, value)
