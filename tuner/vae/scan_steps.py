"""``steps_per_execution`` on JAX as one compiled program: the steps run in a ``lax.scan``.

On TensorFlow, Keras runs ``steps_per_execution`` steps inside one ``tf.function`` call. On
JAX (Keras 3.15) it calls the compiled single step that many times from Python, so every
step still pays Python, argument flattening and a host-to-device copy. A small VAE on a GPU
looks bound by that: on an H200 a step took ~2 ms at batch 128 and at batch 512 alike.

Here the batches of one execution are stacked inside the program and a ``lax.scan`` runs the
unchanged Keras ``train_step`` over them, so one dispatch trains ``steps_per_execution``
steps. The last execution of an epoch may hold fewer batches: it is padded and the padding
steps are skipped with ``lax.cond``, so each trial still compiles a single training program.

Keras merged the same idea upstream (keras-team/keras#23527) after its 3.15.1 release;
once a release has it, this module should go. It reads two private Keras modules
(``keras.src.backend.config``, ``keras.src.distribution``), checked on Keras 3.15.1; if a
later 3.x release moves them, fused steps switch themselves off and Keras's own loop runs.

``training.fused_steps: auto`` (the default) turns it on where JAX runs on an accelerator: it
trains exactly like single steps (tested); on an H200 at batch 128 and ``steps_per_execution``
16 it ran 102,866 images/s against 66,718 for Keras's loop (1.54x; ``benchmarks/gpu.py``,
``benchmarks/results/gpu_b128_h200.json``), while on a CPU a step inside the scan ran 2-3x
slower than the standalone step (XLA:CPU), so ``auto`` leaves it off there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import keras

from tuner._compat import keras_scan_context


def resolve_fused_steps(setting: bool | str) -> bool:
    """``training.fused_steps`` as a bool: ``"auto"`` is on where JAX runs on a GPU or TPU."""
    if setting != "auto":
        return bool(setting)
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() != "cpu"


class ScanTrainSteps:
    """Mixin for a ``keras.Model`` with a ``fused_steps`` attribute: when it is true, fused
    multi-step training on JAX; otherwise, and on other backends, Keras's own loop."""

    fused_steps: bool = False
    if TYPE_CHECKING:  # provided by keras.Model
        steps_per_execution: int
        jit_compile: bool | str
        run_eagerly: bool
        train_function: Any

        def train_step(self, state: Any, data: Any) -> Any: ...

    def _scan_applies(self) -> bool:
        context = keras_scan_context()
        if context is None:  # private modules moved in a newer Keras: use its own loop
            return False
        is_nnx_enabled, distribution_lib = context
        return (
            self.fused_steps
            and keras.backend.backend() == "jax"
            and self.steps_per_execution > 1
            and bool(self.jit_compile)
            and not self.run_eagerly
            and distribution_lib.distribution() is None  # sharded state: leave it to Keras
            and not is_nnx_enabled()
        )

    def make_train_function(self, force: bool = False) -> None:
        if not self._scan_applies():
            return super().make_train_function(force)  # type: ignore[misc]
        if self.train_function is not None and not force:
            return None
        import jax
        import jax.numpy as jnp

        steps = self.steps_per_execution
        train_step = self.train_step

        def run_steps(state: Any, batches: tuple, n_valid: Any) -> tuple[Any, Any]:
            stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *batches)
            # The carry needs the logs' shapes before the first step: trace, do not run.
            shapes = jax.eval_shape(train_step, state, batches[0])[0]
            logs = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

            def body(carry: tuple, xs: tuple) -> tuple[tuple, None]:
                index, data = xs

                def step(carry: tuple) -> tuple:
                    return train_step(carry[1], data)

                return jax.lax.cond(index < n_valid, step, lambda carry: carry, carry), None

            (logs, state), _ = jax.lax.scan(body, (logs, state), (jnp.arange(steps), stacked))
            return logs, state

        compiled = jax.jit(run_steps, donate_argnums=0)

        def train_function(state: Any, iterator: Iterator) -> tuple[Any, Any]:
            batches = [next(iterator)]  # StopIteration here ends the epoch, as in Keras
            for _ in range(steps - 1):
                try:
                    batches.append(next(iterator))
                except StopIteration:
                    break
            n_valid = len(batches)
            batches += [batches[-1]] * (steps - n_valid)  # padding, skipped inside
            return compiled(state, tuple(batches), n_valid)

        self.train_function = train_function
        return None
