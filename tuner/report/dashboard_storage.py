"""The storage optuna-dashboard reads: every trial as stored, less the per-epoch curve rows but
the last, from a trial cache that the server filled once.

optuna-dashboard's study page asks for every trial of the study (``/api/studies/ID``) and
re-reads them all from the database every 10 s once a study holds 500. A trial carries one
curve row per epoch as a user attribute, which the page lays out as text: at 10,000 trials of
ten epochs that answer was 63 MB of JSON, and each re-read loaded 300,000 rows (20 s first,
6 s again; benchmarks/scale.py). The dashboard already shows those numbers otherwise (the
intermediate values are the val ELBO per epoch; the VAE views draw rate and distortion per
epoch of the top trials), and ``tuner export`` and the report keep them all. So:

* :func:`shared_trial_cache` puts Optuna's trial cache in front of a database, which reads
  only new and unfinished trials after the first load; ``tuner dashboard`` draws its VAE views
  through it at start, so the first page is served from trials already read;
* :class:`DashboardStorage` serves each trial without its curve rows but the last (a finished
  trial is slimmed once), and each study without the blanked chunks of figures that shrank;
  everything else passes through unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tuner._compat import cached_storage, dashboard_plot_data_prefix
from tuner.search.records import CURVE_PREFIX

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy


def shared_trial_cache(storage: BaseStorage) -> BaseStorage:
    """``storage`` behind Optuna's trial cache when it is a bare database storage (what
    ``optuna.load_study`` would add, here kept to be shared); any other storage as it is."""
    return cached_storage(storage) if isinstance(storage, RDBStorage) else storage


def slim(trial: FrozenTrial) -> FrozenTrial:
    """``trial`` without its curve rows but the last one (the same object if it has at most one)."""
    rows = sorted(k for k in trial.user_attrs if k.startswith(CURVE_PREFIX))
    if len(rows) <= 1:
        return trial
    dropped = set(rows[:-1])
    slimmed = copy.copy(trial)  # shares params and values, which the dashboard only reads
    slimmed.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in dropped}
    return slimmed


def live_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Study system attributes without the blanked chunks of figures that shrank: when a saved
    figure is overwritten by a smaller one, optuna-dashboard sets its surplus chunks to "" (an
    attribute cannot be deleted), and its study page scans every study attribute once per
    trial. A live chunk is never empty, and the blanked ones are the last of their figure."""
    prefix = dashboard_plot_data_prefix()
    if not any(v == "" and k.startswith(prefix) for k, v in attrs.items()):
        return attrs
    return {k: v for k, v in attrs.items() if not (v == "" and k.startswith(prefix))}


def _forwarded(name: str) -> Callable[..., Any]:
    def method(self: DashboardStorage, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._backend, name)(*args, **kwargs)

    method.__name__ = name
    return method


class DashboardStorage(BaseStorage):
    """``backend`` as optuna-dashboard should read it: trials slimmed by :func:`slim`."""

    def __init__(self, backend: BaseStorage) -> None:
        self._backend = backend
        # trial id -> (the backend's trial, its slim copy); a finished trial never changes, and
        # the cache hands back the same object for it, so its slim copy is made once.
        self._slimmed: dict[int, tuple[FrozenTrial, FrozenTrial]] = {}

    def _slim(self, trial: FrozenTrial) -> FrozenTrial:
        seen = self._slimmed.get(trial._trial_id)
        if seen is not None and seen[0] is trial:
            return seen[1]
        slimmed = slim(trial)
        if trial.state.is_finished():
            self._slimmed[trial._trial_id] = (trial, slimmed)
        return slimmed

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = [self._slim(t) for t in self._backend.get_all_trials(study_id, deepcopy=False, states=states)]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._slim(self._backend.get_best_trial(study_id))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return live_attrs(self._backend.get_study_system_attrs(study_id))

    def get_all_studies(self) -> list[FrozenStudy]:
        studies = []
        for study in self._backend.get_all_studies():
            attrs = live_attrs(study.system_attrs)
            if attrs is not study.system_attrs:
                study = copy.copy(study)
                study.system_attrs = attrs
            studies.append(study)
        return studies

    def delete_study(self, study_id: int) -> None:
        self._backend.delete_study(study_id)
        self._slimmed.clear()  # a database may give a deleted trial's id to a new one

    # Everything else as the backend answers it (BaseStorage's abstract methods and the
    # concrete ones Optuna's own storages override).
    create_new_study = _forwarded("create_new_study")
    set_study_user_attr = _forwarded("set_study_user_attr")
    set_study_system_attr = _forwarded("set_study_system_attr")
    get_study_id_from_name = _forwarded("get_study_id_from_name")
    get_study_name_from_id = _forwarded("get_study_name_from_id")
    get_study_directions = _forwarded("get_study_directions")
    get_study_user_attrs = _forwarded("get_study_user_attrs")
    create_new_trial = _forwarded("create_new_trial")
    set_trial_param = _forwarded("set_trial_param")
    get_trial_id_from_study_id_trial_number = _forwarded("get_trial_id_from_study_id_trial_number")
    get_trial_number_from_id = _forwarded("get_trial_number_from_id")
    get_trial_param = _forwarded("get_trial_param")
    set_trial_state_values = _forwarded("set_trial_state_values")
    set_trial_intermediate_value = _forwarded("set_trial_intermediate_value")
    set_trial_user_attr = _forwarded("set_trial_user_attr")
    set_trial_system_attr = _forwarded("set_trial_system_attr")
    get_trial = _forwarded("get_trial")
    get_n_trials = _forwarded("get_n_trials")
    get_trial_params = _forwarded("get_trial_params")
    get_trial_user_attrs = _forwarded("get_trial_user_attrs")
    get_trial_system_attrs = _forwarded("get_trial_system_attrs")
    check_trial_is_updatable = _forwarded("check_trial_is_updatable")
    remove_session = _forwarded("remove_session")
