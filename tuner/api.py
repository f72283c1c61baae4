"""The small Python API; the ``tuner`` command is a thin layer over it.

>>> import tuner
>>> summary = tuner.run_study("studies/quickstart.yaml", n_trials=4)   # doctest: +SKIP
>>> best = tuner.load_best("quickstart")                               # doctest: +SKIP
>>> result = tuner.train(best, epochs=30, out="runs/best")              # doctest: +SKIP
>>> result.val_elbo                                                     # doctest: +SKIP
-98.7

Each function imports the deep-learning backend only when it trains, so ``import tuner`` and
:func:`load_best` stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuner import storage as storage_lib
from tuner.config import TrainConfig, load_train_config

if TYPE_CHECKING:
    import optuna

    from tuner.search.objective import EpochCallback
    from tuner.search.study import RunSummary, TrialCallback
    from tuner.search.study_file import StudyConfig
    from tuner.vae.evaluation import Evaluation, ProgressCallback
    from tuner.vae.training import EpochHook, TrainResult


def load_study_file(
    study: str | Path | StudyConfig, name: str | None = None, option: str = "--study-name"
) -> StudyConfig:
    """A validated study file (a path, or an already validated :class:`StudyConfig`), renamed
    to ``name`` when given (``option``: what the user typed it as, for the error).

    Raises:
        ConfigError: the file is missing or invalid, or ``name`` cannot name a study (one line).
    """
    from tuner.search.study_file import StudyConfig, check_study_name, load_study_config

    config = study if isinstance(study, StudyConfig) else load_study_config(study)
    if name is None:
        return config
    return config.model_copy(update={"name": check_study_name(name, option)})


def run_study(
    study: str | Path | StudyConfig,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    artifacts: str | None = None,
    callbacks: list[TrialCallback] | None = None,
    epoch_callbacks: list[EpochCallback] | None = None,
    on_open: Callable[[optuna.Study], None] | None = None,
    db_retry: float = 300.0,
    log: Callable[[str], object] = print,
) -> RunSummary:
    """Create or resume a study and run trials until it holds ``n_trials`` finished trials
    (default: the study file's budget), whoever ran them.

    Args:
        study: a study file (``studies/*.yaml``) or a validated :class:`StudyConfig`.
        storage: storage URL; default ``$TUNER_STORAGE``, then the file's ``storage``, then
            ``sqlite:///storage/tuner.db``.
        study_name: run under another name than the file's.
        n_trials, timeout: override the file's budget.
        artifacts: artifact folder (default beside the storage).
        callbacks, epoch_callbacks, on_open: progress hooks (see
            :func:`tuner.search.study.run_study`); the dashboard's VAE views are refreshed
            after every trial in any case.
        db_retry: seconds to ride out a lost database connection (``log`` says so).

    Returns:
        The study and the number of finished trials before and after.

    Raises:
        ConfigError, DataError, StorageError: bad input (one line, nothing stored).
        FatalError: too many trials failed in a row.
    """
    from tuner.vae.backend import load_keras
    from tuner.vae.data import load_splits

    config = load_study_file(study, study_name)
    url = storage_lib.resolve_url(storage, config.storage)
    storage_lib.check_url(url)  # a malformed URL: refused before the data and the backend load
    # Bad data is refused before the backend loads (seconds) and before anything is stored.
    splits = load_splits(config.base_config().data)
    load_keras()  # before anything that imports Keras: quietly, see vae/backend.py
    from tuner.report.dashboard import RefreshViews
    from tuner.search.artifacts import check_artifact_folder
    from tuner.search.study import run_study as run
    from tuner.vae.likelihoods import choose_likelihood

    if "likelihood" not in config.search:  # a fixed likelihood: checked against the data now
        base = config.base_config()
        chosen = choose_likelihood(base.model.likelihood, splits.train, base.data.dynamic_binarization)
        log(f"likelihood: {chosen}" + (" (chosen from the data)" if base.model.likelihood == "auto" else ""))

    check_artifact_folder(storage_lib.artifacts_dir(url, artifacts or config.artifacts.path))
    store = storage_lib.artifact_store(url, artifacts or config.artifacts.path)
    return run(
        config,
        url,
        n_trials=n_trials,
        timeout=timeout,
        artifact_store=store,
        heartbeat=storage_lib.Heartbeat(),
        callbacks=[*(callbacks or []), RefreshViews(store)],
        epoch_callbacks=epoch_callbacks,
        on_open=on_open,
        splits=splits,
        db_retry_s=db_retry,
        log=log,
    )


def train(
    config: str | Path | TrainConfig,
    *,
    epochs: int | None = None,
    out: str | Path | None = None,
    hooks: list[EpochHook] | None = None,
) -> TrainResult:
    """Train one configuration (a training file such as ``best.yaml``, or a
    :class:`TrainConfig`); ``epochs`` overrides the config's. With ``out``, save the config,
    weights and per-epoch metrics there (what ``tuner evaluate`` reads).

    Raises:
        ConfigError, DataError: bad input.
        DivergenceError: the loss became NaN or infinite.
    """
    from tuner.vae.backend import load_keras
    from tuner.vae.data import load_splits

    cfg = config if isinstance(config, TrainConfig) else load_train_config(config)
    splits = load_splits(cfg.data)  # bad data: refused before the backend loads
    load_keras()
    from tuner.vae.training import save_run
    from tuner.vae.training import train as train_config

    result = train_config(cfg, splits, epochs=epochs, hooks=hooks)
    if out is not None:
        save_run(result, out)
    return result


def load_best(study: str, *, storage: str | None = None, trial: int | None = None) -> TrainConfig:
    """The complete training config of a study's best trial (or of trial number ``trial``),
    with its provenance: what ``tuner export`` writes. Reads only; creates nothing.

    Raises:
        StorageError: no storage there. TunerError: no such study or trial, or no completed
            trial yet.
    """
    from tuner.search.export import pick_trial, trial_config
    from tuner.search.records import load_study

    url = storage_lib.resolve_url(storage)
    found = load_study(study, storage_lib.open_storage(url, read_only=True))
    return trial_config(found, pick_trial(found, trial))


def refit(
    study: str,
    *,
    storage: str | None = None,
    trial: int | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    out: str | Path | None = None,
    k: int = 5000,
    max_memory: float = 1.0,
    time_budget: float | None = None,
    hooks: list[EpochHook] | None = None,
    on_plan: Callable[[int, float], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[TrainResult, Evaluation]:
    """Retrain a study's best trial (or trial ``trial``) to convergence and score it on the
    test split: the step that turns "best of N short trials" into a number comparable with
    papers.

    The config is :func:`tuner.vae.training.refit_config`'s: up to ``epochs`` (default 1,000)
    epochs, early stopping on the val ELBO after ``patience`` (default 50) epochs without
    improvement with the best weights restored, and a decaying learning rate. With ``out``
    the run is saved like :func:`train` (plus ``evaluation.json``). The test NLL is the IWAE
    bound with ``k`` samples, in nats per image under the trial's likelihood.

    With ``time_budget`` (seconds of training) the epochs are planned to fit it
    (:func:`tuner.vae.training.plan_epochs`, a two-epoch probe), at most ``epochs``, so that a
    cosine learning rate completes its decay (step decay's stages have fixed lengths: the
    budget only ends it); ``on_plan`` is told (epochs, seconds per epoch). A budget too short
    for the trial's warm-ups raises ConfigError.

    Example:
        >>> result, test = tuner.api.refit("quickstart", epochs=200, out="runs/refit")  # doctest: +SKIP
        >>> test.nll_iwae                                                              # doctest: +SKIP

    Raises:
        StorageError, TunerError: no such storage, study or trial (as :func:`load_best`).
        ConfigError, DataError, DivergenceError: as :func:`train`.
    """
    import json

    from tuner.vae.backend import load_keras
    from tuner.vae.data import load_splits

    config = load_best(study, storage=storage, trial=trial)
    splits = load_splits(config.data)  # bad data: refused before the backend loads
    load_keras()
    from tuner.errors import ConfigError
    from tuner.vae.evaluation import evaluate
    from tuner.vae.training import plan_epochs, refit_config, save_run
    from tuner.vae.training import train as train_config

    refit = refit_config(config, epochs=epochs, patience=patience)  # bad options refused before the probe
    if time_budget is not None:
        if not time_budget > 0:
            raise ConfigError(f"time_budget: must be a number of seconds > 0, got {time_budget}")
        planned, seconds = plan_epochs(refit, splits, time_budget)
        epochs = min(refit.training.epochs, planned)
        try:  # the config's own checks say whether its warm-ups fit the planned epochs
            refit = refit_config(config, epochs=epochs, patience=patience)
        except ConfigError as err:
            raise ConfigError(
                f"--time-budget {time_budget:g}: {planned} epoch(s) of {seconds:.2f} s fit, too few for the "
                f"trial's warm-up; give more seconds ({err})"
            ) from None
        if on_plan is not None:
            on_plan(epochs, seconds)
    result = train_config(refit, splits, hooks=hooks)
    if out is not None:
        save_run(result, out)
    test = evaluate(result.model, splits.test, split="test", k=k, on_progress=on_progress, max_memory=max_memory)
    if out is not None:
        (Path(out) / "evaluation.json").write_text(json.dumps(test.to_dict(), indent=2) + "\n")
    return result, test
