"""A study's trials counted by state, and the size of its Pareto front, by aggregate queries on
Optuna's tables instead of loading every trial with its parameters, values and attributes.

Loading is what made ``tuner status`` and the launcher's live line slow on a large study: at
10,000 trials with ten per-epoch curve rows each, Optuna builds 300,000 ORM rows (10 s on two
cores); the counting query reads one column (benchmarks/scale.py). Storages without SQL (a
journal file, the gRPC proxy, in-memory) get None, and the caller loads the trials as before.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from tuner._compat import is_pareto_front, optuna_constraints_key, optuna_rdb_models, rdb_behind

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


def count_trials(storage: BaseStorage, study_id: int, exclude_attr: str | None = None) -> Counter[str] | None:
    """The study's trials by lower-case state name ("complete", "pruned", ...), leaving out those
    whose user attribute ``exclude_attr`` is truthy; None when ``storage`` is not a database.

    The attribute's value is read back from its JSON and tested as Python would test it, so a
    trial counts exactly when ``not trial.user_attrs.get(exclude_attr)``."""
    rdb = rdb_behind(storage)
    if rdb is None:
        return None
    import sqlalchemy as sa

    models = optuna_rdb_models()
    trials, attrs = models.TrialModel, models.TrialUserAttributeModel
    if exclude_attr is None:
        query = sa.select(trials.state, sa.null(), sa.func.count()).where(trials.study_id == study_id)
        query = query.group_by(trials.state)
    else:
        flagged = sa.and_(attrs.trial_id == trials.trial_id, attrs.key == exclude_attr)
        query = (
            sa.select(trials.state, attrs.value_json, sa.func.count())
            .select_from(trials)
            .outerjoin(attrs, flagged)
            .where(trials.study_id == study_id)
            .group_by(trials.state, attrs.value_json)
        )
    counts: Counter[str] = Counter()
    with rdb.engine.connect() as conn:
        for state, value_json, n in conn.execute(query):
            if value_json is None or not json.loads(value_json):
                counts[state.name.lower()] += n
    return counts


def pareto_front_size(storage: BaseStorage, study_id: int) -> int | None:
    """How many completed trials ``Study.best_trials`` would return for a multi-objective study,
    from their values alone; None when ``storage`` is not a database, or when Optuna's answer
    needs the trials themselves (constraints, a trial missing a value)."""
    rdb = rdb_behind(storage)
    if rdb is None:
        return None
    import numpy as np
    import sqlalchemy as sa
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    models = optuna_rdb_models()
    trials, values, system = models.TrialModel, models.TrialValueModel, models.TrialSystemAttributeModel
    directions = storage.get_study_directions(study_id)
    in_study = trials.study_id == study_id
    constrained = sa.select(system.trial_id).join(trials, system.trial_id == trials.trial_id)
    constrained = constrained.where(in_study, system.key == optuna_constraints_key()).limit(1)
    query = (
        sa.select(values.trial_id, values.objective, values.value, values.value_type)
        .join(trials, values.trial_id == trials.trial_id)
        .where(in_study, trials.state == TrialState.COMPLETE)
    )
    by_trial: dict[int, dict[int, float]] = {}
    with rdb.engine.connect() as conn:
        if conn.execute(constrained).first() is not None:
            return None  # Optuna keeps feasible trials only: that reads every trial's constraints
        for trial_id, objective, value, value_type in conn.execute(query):
            by_trial.setdefault(trial_id, {})[objective] = values.stored_repr_to_value(value, value_type)
    if not by_trial:
        return 0
    if any(sorted(row) != list(range(len(directions))) for row in by_trial.values()):
        return None  # Optuna raises on this; let it say so
    signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions]
    loss: Any = np.asarray([[s * row[i] for i, s in enumerate(signs)] for row in by_trial.values()])
    return int(np.count_nonzero(is_pareto_front(loss)))
