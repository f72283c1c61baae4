"""Every private Optuna and Keras name in tuner/_compat.py still exists where it is read."""

import inspect

import optuna

from tuner import _compat


def test_optuna_private_names_are_where_compat_reads_them():
    assert inspect.isclass(_compat.BaseHeartbeat)
    assert isinstance(optuna.storages.RDBStorage("sqlite:///:memory:"), _compat.BaseHeartbeat)
    assert {"studies", "trials", "alembic_version"} <= _compat.optuna_rdb_table_names()
    storage = _compat.cached_storage(optuna.storages.RDBStorage("sqlite:///:memory:"))
    assert storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "a") == storage.get_study_id_from_name("a")
    request = _compat.grpc_api_pb2().GetStudyIdFromNameRequest(study_name="x")
    assert request.study_name == "x"


def test_keras_private_names_are_where_compat_reads_them():
    rng_utils = _compat.keras_rng_utils()
    assert rng_utils is not None and hasattr(rng_utils, "tf")
    context = _compat.keras_scan_context()
    assert context is not None
    is_nnx_enabled, distribution_lib = context
    assert is_nnx_enabled() is False and distribution_lib.distribution() is None


def test_unknown_names_are_attribute_errors():
    try:
        _compat.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_optuna_importance_imports_without_sklearn_and_still_ranks():
    """In a fresh process: optuna.importance loads without scikit-learn, the PED-ANOVA default
    still ranks parameters, and scikit-learn itself still imports afterwards."""
    import subprocess
    import sys

    code = (
        "import sys, optuna\n"
        "from tuner._compat import import_optuna_importance_without_sklearn as imp\n"
        "imp()\n"
        "assert 'sklearn' not in sys.modules, 'sklearn loaded'\n"
        "optuna.logging.set_verbosity(optuna.logging.ERROR)\n"
        "s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))\n"  # unseeded, 20 trials were misranked now and then
        "s.optimize(lambda t: t.suggest_float('a', 0, 1) ** 2 + 0.01 * t.suggest_float('b', 0, 1), n_trials=20)\n"
        "ranked = optuna.importance.get_param_importances(s)\n"
        "assert list(ranked)[0] == 'a', ranked\n"
        "import sklearn.ensemble\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_optuna_names_for_summaries_and_views_are_where_compat_reads_them():
    import numpy as np

    rdb = optuna.storages.RDBStorage("sqlite:///:memory:")
    assert _compat.rdb_behind(_compat.cached_storage(rdb)) is rdb
    assert _compat.rdb_behind(optuna.storages.InMemoryStorage()) is None
    assert {"trials", "trial_user_attributes"} <= set(_compat.optuna_rdb_models().BaseModel.metadata.tables)
    assert _compat.optuna_constraints_key() == "constraints"
    assert list(_compat.is_pareto_front(np.asarray([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))) == [
        True,
        True,
        False,
        True,
    ]
    study = optuna.create_study(storage=rdb)
    assert _compat.study_storage(study) is study._storage
    assert _compat.dashboard_plot_data_prefix() == "dashboard:plot_data:"
