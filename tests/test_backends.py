"""Run the backend-marked tests again under JAX, so one `pytest` checks both backends.

Keras fixes its backend at import, so the second backend needs its own process.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Two halves of about equal time (~40 s each on 2 cores): the test workers take one each,
# instead of one worker running a single 80-second test at the end of the suite. What is
# marked `backend` is what differs between backends: the losses and likelihoods against NumPy,
# seeding, compiled and fused steps, mixed precision; training loops whose logic is the same on
# both run under TensorFlow only.
HALVES = {
    "models": [
        "tests/test_model.py",
        "tests/test_iwae_and_architecture.py",
        "tests/test_likelihoods.py",
        "tests/test_numerics.py",
        "tests/test_pixel_head.py",
    ],
    "steps": ["tests/test_compiled_steps.py"],
}


def test_the_halves_hold_every_backend_test():
    marked = {
        f"tests/{path.name}"
        for path in (Path(REPO) / "tests").glob("test_*.py")
        if "mark.backend" in path.read_text() and path.name != "test_backends.py"
    }
    assert marked == {file for files in HALVES.values() for file in files}


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="already running under JAX")
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX not installed (pip install .[jax])")
@pytest.mark.parametrize("half", sorted(HALVES))
def test_backend_tests_pass_under_jax(tmp_path, half):
    from tuner.vae import jax_cache

    # The tests build many models of the same shapes: JAX's persistent cache compiles each
    # program once for the whole rerun instead of once per test.
    env = {**os.environ, "KERAS_BACKEND": "jax", **jax_cache.settings(tmp_path / "jax_cache")}
    # Compiling is most of the rerun's time: XLA's cheapest optimisation level cuts it by a
    # fifth, and every comparison here is within the run or against NumPy with a tolerance.
    fast = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {fast}".strip()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-m", "backend", "-p", "no:cacheprovider", *HALVES[half]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1]
