"""Run the backend-marked tests again under JAX, so one `pytest` checks both backends.

Keras fixes its backend at import, so the second backend needs its own process.
"""

import importlib.util
import os
import subprocess
import sys

import keras
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="already running under JAX")
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX not installed (pip install .[jax])")
def test_backend_tests_pass_under_jax(tmp_path):
    from tuner.vae import jax_cache

    # The tests build many models of the same shapes: JAX's persistent cache compiles each
    # program once for the whole rerun instead of once per test.
    env = {**os.environ, "KERAS_BACKEND": "jax", **jax_cache.settings(tmp_path / "jax_cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-m", "backend", "-p", "no:cacheprovider", "tests"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1]
