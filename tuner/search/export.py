"""Export a trial as a complete training config that ``tuner train`` retrains."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tuner import storage as storage_lib
from tuner.config import TrainConfig, dump_config
from tuner.errors import TunerError
from tuner.search.artifacts import download, weights_kept
from tuner.search.records import CONFIG_ATTR, WEIGHTS_ATTR, confirmed_ranking, load_study


def pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    if number is not None:
        matches = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not matches:
            raise TunerError(f"--trial: study {study.study_name!r} has no trial {number}")
        trial = matches[0]
        if trial.state != TrialState.COMPLETE:
            raise TunerError(f"--trial: trial {number} is {trial.state.name.lower()}, not complete")
        return trial
    if len(study.directions) > 1:
        front = ", ".join(str(t.number) for t in study.best_trials)
        raise TunerError(
            f"--trial: a multi-objective study ({', '.join(study.metric_names or [])}) has no single best trial; "
            f"pick one of the Pareto front: {front}"
        )
    ranking = confirmed_ranking(study)
    if ranking:  # re-trained with more seeds (confirm:): the best mean, not the luckiest draw
        return next(t for t in study.get_trials(deepcopy=False) if t.number == ranking[0].number)
    try:
        return study.best_trial
    except ValueError:
        raise TunerError(f"study {study.study_name!r} has no completed trial yet") from None


def trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> TrainConfig:
    content = trial.user_attrs.get(CONFIG_ATTR)
    if content is None:
        raise TunerError(f"trial {trial.number} has no stored config (not run by tuner)")
    values = trial.values or []
    provenance = {
        "study": study.study_name,
        "trial": trial.number,
        "values": dict(zip(study.metric_names or [f"value{i}" for i in range(len(values))], values, strict=False)),
        "params": trial.params,
        # Optuna stores naive local times: give them the machine's zone, like "exported".
        "finished": trial.datetime_complete.astimezone().isoformat(timespec="seconds")
        if trial.datetime_complete
        else None,
        "exported": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    confirmed = {c.number: c for c in confirmed_ranking(study)}.get(trial.number)
    if confirmed is not None:
        provenance["confirmed"] = {"draws": len(confirmed.values), "mean": confirmed.mean, "std": confirmed.std}
    return TrainConfig.model_validate({**content, "provenance": provenance})


def export_trial(
    study_name: str,
    storage_url: str,
    output: Path,
    *,
    trial_number: int | None = None,
    weights: bool = False,
    artifacts_path: str | None = None,
) -> tuple[TrainConfig, Path | None]:
    if output.suffix not in (".yaml", ".yml", ".json"):
        raise TunerError(f"-o: {output} must end in .yaml, .yml or .json")
    storage = storage_lib.open_storage(storage_url, read_only=True)
    study = load_study(study_name, storage, storage_lib.describe(storage_url))
    trial = pick_trial(study, trial_number)
    config = trial_config(study, trial)
    weights_path = None
    if weights:  # first: a missing artifact must not leave a config without its weights
        if not weights_kept(study, trial):
            raise TunerError(f"--weights: trial {trial.number} kept no weights (see artifacts.keep_weights)")
        store = storage_lib.artifact_store(storage_url, artifacts_path)
        weights_path = download(store, trial.user_attrs[WEIGHTS_ATTR], output.with_suffix(".weights.h5"))
    with storage_lib.atomic_path(output) as tmp:  # a full disk leaves no half-written config
        dump_config(config, tmp)
    return config, weights_path
