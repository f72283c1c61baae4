"""Every private Optuna and Keras name this package uses, in one place.

Each was checked on Optuna 5.0–5.1 and Keras 3.15 (the ranges ``pyproject.toml`` allows);
``tests/test_compat.py`` reaches every one of them, so an upgrade that moves one fails there,
with the name, rather than in a worker mid-study. Where a public API appears upstream, the
entry here should go.

Nothing is imported at module level: the storage layer reaches Optuna's names and the VAE
layer Keras's, and neither may pay for (or, for ``tuner.vae``, depend on) the other.
``BaseHeartbeat`` is served lazily through the module's ``__getattr__``.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.storages._heartbeat import BaseHeartbeat as BaseHeartbeat


def __getattr__(name: str) -> Any:
    if name == "BaseHeartbeat":
        # The heartbeat protocol that RDBStorage implements; RetryingStorage and GrpcStorage
        # forward it, so that Optuna's stale-trial reaping works through them.
        from optuna.storages._heartbeat import BaseHeartbeat

        return BaseHeartbeat
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def optuna_rdb_table_names() -> set[str]:
    """The tables of Optuna's RDB schema (with Alembic's), to tell an Optuna database from
    another one before Optuna would add its tables to it."""
    from optuna.storages._rdb import models

    return {*models.BaseModel.metadata.tables, "alembic_version"}


def optuna_rdb_models() -> ModuleType:
    """Optuna's SQLAlchemy models of its tables, for the aggregate queries its storage API does
    not offer (:mod:`tuner.storage.summary`: counting trials without loading them)."""
    from optuna.storages._rdb import models

    return models


def rdb_behind(storage: Any) -> Any | None:
    """The RDBStorage under ``storage``, or None: through the wrappers that keep the storage
    they wrap in ``_backend`` (Optuna's trial cache, tuner's RetryingStorage)."""
    from optuna.storages import RDBStorage

    seen = storage
    for _ in range(4):  # at most a few layers; a cycle is no storage of ours
        if isinstance(seen, RDBStorage):
            return seen
        seen = getattr(seen, "_backend", None)
    return None


def optuna_constraints_key() -> str:
    """The trial system attribute where Optuna keeps a constrained trial's constraint values."""
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    return _CONSTRAINTS_KEY


def is_pareto_front(loss_values: Any) -> Any:
    """Optuna's Pareto test (rows to minimise; equal rows are all on the front), the one
    ``Study.best_trials`` applies, for values read without loading their trials."""
    from optuna.study._multi_objective import _is_pareto_front

    return _is_pareto_front(loss_values, assume_unique_lexsorted=False)


def study_storage(study: Any) -> BaseStorage:
    """The storage object a loaded study reads through, its trial cache included (Optuna keeps
    it in ``Study._storage``), for a second view of the study that shares that cache."""
    return study._storage


def dashboard_plot_data_prefix() -> str:
    """The study system attributes where optuna-dashboard keeps a saved figure, in chunks."""
    from optuna_dashboard._custom_plot_data import SYSTEM_ATTR_PLOT_DATA

    return str(SYSTEM_ATTR_PLOT_DATA)


def cached_storage(rdb: BaseStorage) -> BaseStorage:
    """``rdb`` wrapped as ``optuna.load_study`` wraps an RDBStorage (its trial cache)."""
    from optuna.storages._cached_storage import _CachedStorage

    return _CachedStorage(rdb)  # type: ignore[arg-type]


def grpc_api_pb2() -> ModuleType:
    """Optuna's generated gRPC messages: a probe request asks the proxy for a missing study."""
    from optuna.storages._grpc.auto_generated import api_pb2

    return api_pb2


def keras_rng_utils() -> Any:
    """Keras's seeding module, whose lazy TensorFlow handle is swapped out under JAX; None if
    it moved (then seed as Keras does)."""
    try:
        from keras.src.utils import rng_utils
    except ImportError:
        return None
    return rng_utils


def keras_scan_context() -> tuple[Any, Any] | None:
    """``(is_nnx_enabled, distribution_lib)`` that fused steps consult, or None if Keras moved
    them (then fused steps switch themselves off and Keras's own loop runs)."""
    try:
        from keras.src.backend.config import is_nnx_enabled
        from keras.src.distribution import distribution_lib
    except ImportError:
        return None
    return is_nnx_enabled, distribution_lib


def hide_flag_types_in_help() -> None:
    """Typer 0.2x prints ``<bool>`` in the type column of every flag (``--weights``, ``--help``),
    where a flag takes no value; show nothing there, as Click and earlier Typer did. Typer's
    option class is public, but the hook ``display_type_rich`` is not documented."""
    from typer.core import TyperOption

    if getattr(TyperOption.display_type_rich, "_hides_flags", False):
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._hides_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def import_optuna_importance_without_sklearn() -> None:
    """Import ``optuna.importance`` without loading scikit-learn (1.3 s of a 3 s report).

    Optuna's importance package imports its fANOVA and mean-decrease-impurity evaluators at
    import time, and they import ``sklearn.ensemble`` (inside ``try_import``) when it is
    installed, as it is with the ``disentanglement`` extra. The report uses the default
    PED-ANOVA evaluator, which needs none of it: ``sklearn.ensemble`` is hidden for the length
    of the import (its ``try_import`` records it as missing, for those two evaluators only, in
    this process) and nothing else is changed. Does nothing if the package is already imported.
    """
    import sys

    if "optuna.importance" in sys.modules or "sklearn.ensemble" in sys.modules:
        return
    sys.modules["sklearn.ensemble"] = None  # type: ignore[assignment]  # "import sklearn.ensemble" fails fast
    try:
        import optuna.importance  # noqa: F401
    finally:
        del sys.modules["sklearn.ensemble"]
