"""The small Python API; the ``tuner`` command is a thin layer over it.

>>> import tuner
>>> summary = tuner.run_study("studies/quickstart.yaml", n_trials=4)   # doctest: +SKIP  (from the repository's root)
>>> best = tuner.load_best("quickstart")                               # doctest: +SKIP
>>> result = tuner.train(best, epochs=30, out="runs/best")              # doctest: +SKIP
>>> result.val_elbo                                                     # doctest: +SKIP
-98.7

This module is the one place where a run is assembled: :func:`open_run` resolves the storage
URL, checks the data, the user's model builder and the artifact folder, then opens the storage
and the artifact store, once, for ``tuner run``, ``tuner worker`` and the Python API; the CLI
checks its options, calls here and prints. Each function imports the deep-learning backend only
when it trains, so ``import tuner`` and :func:`load_best` stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tuner import storage as storage_lib
from tuner.config import TrainConfig, load_train_config

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from rich.console import Console

    from tuner.search.objective import EpochCallback
    from tuner.search.study import RunSummary, TrialCallback
    from tuner.search.study_file import StudyConfig
    from tuner.storage import ArtifactStore
    from tuner.vae.data import Splits
    from tuner.vae.evaluation import Evaluation, ProgressCallback
    from tuner.vae.training import EpochHook, TrainResult


def load_study_file(
    study_file: str | Path | StudyConfig, name: str | None = None, option: str = "--study-name"
) -> StudyConfig:
    """A validated study file (a path, or an already validated :class:`StudyConfig`), renamed
    to ``name`` when given (``option``: what the user typed it as, for the error).

    Raises:
        ConfigError: the file is missing or invalid, or ``name`` cannot name a study (one line).
    """
    from tuner.search.study_file import StudyConfig, check_study_name, load_study_config

    config = study_file if isinstance(study_file, StudyConfig) else load_study_config(study_file)
    if name is None:
        return config
    return config.model_copy(update={"name": check_study_name(name, option)})


@dataclass
class StudyRun:
    """A study ready to run: its file, storage and artifact store checked and opened once
    (:func:`open_run`). :meth:`run` runs trials until the budget is met; it may be called again."""

    study_config: StudyConfig
    storage_url: str
    storage: BaseStorage
    artifact_store: ArtifactStore
    artifacts_dir: Path
    splits: Splits
    heartbeat: storage_lib.Heartbeat | None
    seed_offset: int = 0
    notes: list[str] = field(default_factory=list)  # said by run() before its first trial

    def run(
        self,
        *,
        n_trials: int | None = None,
        timeout: float | None = None,
        callbacks: list[TrialCallback] | None = None,
        epoch_callbacks: list[EpochCallback] | None = None,
        on_open: Callable[[optuna.Study], None] | None = None,
        log: Callable[[str], object] = print,
    ) -> RunSummary:
        """Run trials until the study holds ``n_trials`` finished trials (default: the file's
        budget), whoever ran them; ``callbacks``/``epoch_callbacks``/``on_open``: progress
        hooks (see :func:`tuner.search.study.run_study`). The dashboard's VAE views are
        refreshed during the run (throttled) and when it ends, in any case.

        Raises:
            FatalError: too many trials failed in a row.
            StorageError: the database was lost for longer than ``retry_s``.
        """
        from tuner.report.dashboard import RefreshViews
        from tuner.search.study import run_study as run

        for note in self.notes:
            log(note)
        views = RefreshViews(self.artifact_store)
        summary = run(
            self.study_config,
            self.storage,
            self.artifact_store,
            self.splits,
            n_trials=n_trials,
            timeout=timeout,
            heartbeat=self.heartbeat,
            callbacks=[*(callbacks or []), views],
            epoch_callbacks=epoch_callbacks,
            on_open=on_open,
            seed_offset=self.seed_offset,
            log=log,
        )
        # The trials since the last (throttled) refresh. Not after an error: the storage may be
        # gone, and a retried write would hold the exit for the whole retry window.
        views.flush()
        return summary


def open_run(
    study_file: str | Path | StudyConfig | None = None,
    *,
    storage_url: str | None = None,
    study_name: str | None = None,
    artifacts_dir: str | None = None,
    heartbeat: storage_lib.Heartbeat | None = None,
    retry_s: float = 300.0,
    worker: bool = False,
    log: Callable[[str], object] = print,
    name_option: str = "--study-name",
) -> StudyRun:
    """Check everything a study run needs, then open its storage and artifact store.

    Args:
        study_file: a study file (``studies/*.yaml``) or a validated :class:`StudyConfig`;
            None joins the stored study ``study_name`` with the file it was created from.
        storage_url: default ``$TUNER_STORAGE``, then the file's ``storage``, then
            ``sqlite:///storage/tuner.db``.
        study_name: run the file under another name (with ``study_file``), or the study to
            join (without).
        artifacts_dir: artifact folder (default: the file's, else beside the storage).
        heartbeat: heartbeat settings (default :class:`tuner.storage.Heartbeat`); unused where
            the storage keeps none (journal files).
        retry_s: seconds to ride out a lost database connection (``log`` says so).
        worker: one of several processes on the study: its sampler gets a seed of its own.
        name_option: how the user gave ``study_name`` (for the error naming it).

    Raises:
        ConfigError, DataError, StorageError: bad input, refused in one line before anything
            is stored (the order: file, URL, data, model builder, artifact folder, storage).
    """
    from tuner.vae.backend import load_keras
    from tuner.vae.data import load_splits

    config = _study_config(study_file, study_name, storage_url, name_option)
    url = storage_lib.resolve_url(storage_url, config.storage)
    storage_lib.check_url(url)  # a malformed URL: refused before the data and the backend load
    # Bad data is refused before the backend loads (seconds) and before anything is stored.
    splits = load_splits(config.base_config().data)
    load_keras()  # before anything that imports Keras: quietly, see vae/backend.py
    from tuner.errors import ConfigError
    from tuner.search.artifacts import check_artifact_folder
    from tuner.search.study import check_builder
    from tuner.vae.likelihoods import choose_likelihood
    from tuner.vae.shapes import auto_filters

    notes = []
    base = config.base_config()
    if "likelihood" not in config.search:  # a fixed likelihood: checked against the data now
        chosen = choose_likelihood(base.model.likelihood, splits.train, base.data.dynamic_binarization)
        notes.append(f"likelihood: {chosen}" + (" (chosen from the data)" if base.model.likelihood == "auto" else ""))
    else:  # every searched choice, before a choice that cannot train fails all of its trials
        from tuner.errors import DataError
        from tuner.vae.likelihoods import unfit_search_choice

        problem = unfit_search_choice(config.search["likelihood"], splits.train, base.data.dynamic_binarization)
        if problem is not None:
            raise DataError(problem)
    folder = storage_lib.artifacts_dir(url, artifacts_dir or config.artifacts.path)
    check_artifact_folder(folder)
    if config.model.builder:  # the user's code: imported, called and checked once, up front
        check_builder(config, splits)
    elif config.model.filters == "auto" and "filters" not in config.search:
        height, width, _ = splits.image_shape
        notes.append(f"model: filters auto -> {auto_filters(splits.image_shape)} for {height}x{width} images")
    local = storage_lib.local_path(url)
    if config.warm_start and local is not None and not local.exists():  # refused before it is created
        raise ConfigError(
            f"warm_start.study: no study named {config.warm_start.study!r}: {local} does not exist yet; "
            "run the earlier study first, or point --storage at the storage that holds it"
        )
    heartbeat = (heartbeat or storage_lib.Heartbeat()) if storage_lib.supports_heartbeat(url) else None
    storage = storage_lib.open_storage(url, heartbeat=heartbeat, retry_s=retry_s, log=log)
    store = storage_lib.artifact_store(url, artifacts_dir or config.artifacts.path)
    seed_offset = os.getpid() if worker else 0
    return StudyRun(config, url, storage, store, folder, splits, heartbeat, seed_offset, notes)


def _study_config(
    study_file: str | Path | StudyConfig | None, study_name: str | None, storage_url: str | None, name_option: str
) -> StudyConfig:
    if study_file is not None:
        return load_study_file(study_file, study_name, option=name_option)
    from tuner.errors import ConfigError
    from tuner.search.records import load_study, stored_study_config

    if not study_name:
        raise ConfigError("give a study file, or the name of a stored study to join")
    url = storage_lib.resolve_url(storage_url)
    return stored_study_config(
        load_study(study_name, storage_lib.open_storage(url, read_only=True), storage_lib.describe(url))
    )


def run_study(
    study_file: str | Path | StudyConfig | None = None,
    *,
    storage_url: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    artifacts_dir: str | None = None,
    callbacks: list[TrialCallback] | None = None,
    epoch_callbacks: list[EpochCallback] | None = None,
    on_open: Callable[[optuna.Study], None] | None = None,
    retry_s: float = 300.0,
    log: Callable[[str], object] = print,
) -> RunSummary:
    """Create or resume a study and run trials until it holds ``n_trials`` finished trials
    (default: the study file's budget), whoever ran them: :func:`open_run`, then
    :meth:`StudyRun.run` (see both for the arguments).

    Returns:
        The study and the number of finished trials before and after.

    Raises:
        ConfigError, DataError, StorageError: bad input (one line, nothing stored).
        FatalError: too many trials failed in a row.
    """
    prepared = open_run(
        study_file,
        storage_url=storage_url,
        study_name=study_name,
        artifacts_dir=artifacts_dir,
        retry_s=retry_s,
        log=log,
    )
    return prepared.run(
        n_trials=n_trials,
        timeout=timeout,
        callbacks=callbacks,
        epoch_callbacks=epoch_callbacks,
        on_open=on_open,
        log=log,
    )


def launch_study(
    study_file: str | Path,
    *,
    workers: int,
    gpus: list[str] | None = None,
    trials_per_gpu: int = 1,
    storage_url: str | None = None,
    n_trials: int | None = None,
    worker_args: list[str] | None = None,
    log_dir: str | Path | None = None,
    console: Console | None = None,
) -> None:
    """Start ``workers`` local ``tuner worker`` processes on one study, pinned to ``gpus``
    (``trials_per_gpu`` per GPU), and show their combined progress until they all exit.

    The study file, its data and the backend are checked, and the storage opened (creating a
    SQLite file once), before any worker starts; workers inherit the URL through
    ``TUNER_STORAGE``. Worker logs go to ``log_dir`` (default ``logs/STUDY`` beside a local
    storage, under ``storage/`` for a database server).

    Raises:
        ConfigError, DataError, StorageError, OptionError: bad input, before any worker starts.
        TunerError: a worker failed (the others ran on).
    """
    from rich.console import Console

    from tuner.distributed import launch as launch_lib
    from tuner.errors import OptionError
    from tuner.search.disentanglement import check_factors
    from tuner.vae.backend import check_backend
    from tuner.vae.data import load_splits

    config = load_study_file(study_file)
    splits = load_splits(config.base_config().data)  # bad data: one line here, not N failing workers
    check_factors(config, splits)  # a disentanglement objective on data without factors: likewise
    check_backend()  # a bad KERAS_BACKEND: likewise
    url = storage_lib.resolve_url(storage_url, config.storage)
    storage_lib.check_url(url)
    local = storage_lib.local_path(url)
    logs = Path(log_dir) if log_dir else (local.parent if local else storage_lib.DEFAULT_DIR) / "logs" / config.name
    problem = storage_lib.folder_problem(logs)
    if problem:
        raise OptionError(f"--log-dir: {problem}; give a folder path you can write")
    launch_lib.launch_study(
        Path(study_file),
        config.name,
        url,
        storage_lib.open_storage(url),  # fails fast, and creates the SQLite file once
        workers=workers,
        gpus=gpus,
        trials_per_gpu=trials_per_gpu,
        worker_args=worker_args or [],
        log_dir=logs,
        total=config.n_trials(n_trials),
        console=console or Console(),
    )


def delete_study(
    study_name: str, *, storage_url: str | None = None, artifacts_dir: str | None = None
) -> tuple[int, int]:
    """Delete a study, its trials and their artifacts (weights, pictures); returns (trials,
    artifacts) deleted. Never creates a storage.

    Raises:
        StorageError: no storage there. TunerError: no such study.
    """
    import optuna

    from tuner.search.artifacts import remove_study_artifacts
    from tuner.search.records import load_study

    url = storage_lib.resolve_url(storage_url)
    storage = storage_lib.open_storage(url, must_exist=True)
    found = load_study(study_name, storage, storage_lib.describe(url))
    n_trials = len(found.trials)
    removed = remove_study_artifacts(found, storage_lib.artifact_store(url, artifacts_dir))
    optuna.delete_study(study_name=study_name, storage=storage)
    return n_trials, removed


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
    from tuner.vae.saving import save_run
    from tuner.vae.training import train as train_config

    result = train_config(cfg, splits, epochs=epochs, hooks=hooks)
    if out is not None:
        save_run(result, out)
    return result


def load_best(study_name: str, *, storage_url: str | None = None, trial: int | None = None) -> TrainConfig:
    """The complete training config of a study's best trial (or of trial number ``trial``),
    with its provenance: what ``tuner export`` writes. Reads only; creates nothing.

    Raises:
        StorageError: no storage there. TunerError: no such study or trial, or no completed
            trial yet.
    """
    from tuner.search.export import pick_trial, trial_config
    from tuner.search.records import load_study

    url = storage_lib.resolve_url(storage_url)
    found = load_study(study_name, storage_lib.open_storage(url, read_only=True), storage_lib.describe(url))
    return trial_config(found, pick_trial(found, trial))


def refit(
    study_name: str,
    *,
    storage_url: str | None = None,
    trial: int | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    out: str | Path | None = None,
    k: int | None = None,
    n: int | None = None,
    max_memory: float = 1.0,
    time_budget: float | None = None,
    hooks: list[EpochHook] | None = None,
    on_plan: Callable[[int, float], None] | None = None,
    on_scoring: Callable[[int, int], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[TrainResult, Evaluation]:
    """Retrain a study's best trial (or trial ``trial``) to convergence and score it on the
    test split: the step that turns "best of N short trials" into a number comparable with
    papers.

    The config is :func:`tuner.vae.training.refit_config`'s: up to ``epochs`` (default 1,000)
    epochs, early stopping on the val ELBO after ``patience`` (default 50) epochs without
    improvement with the best weights restored, and a decaying learning rate. With ``out``
    the run is saved like :func:`train` (plus ``evaluation.json``). The test NLL is the IWAE
    bound with ``k`` samples (default :func:`tuner.vae.evaluation.default_k`: 5000 on a GPU or
    TPU, 500 on a CPU) over the first ``n`` test images (default all), in nats per image under
    the trial's likelihood; ``on_scoring(k, images)`` is called when the scoring starts, then
    ``on_progress(done, total)`` after every batch of images.

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

    config = load_best(study_name, storage_url=storage_url, trial=trial)
    splits = load_splits(config.data)  # bad data: refused before the backend loads
    load_keras()
    from tuner.errors import ConfigError
    from tuner.vae.evaluation import evaluate
    from tuner.vae.saving import save_run
    from tuner.vae.training import plan_epochs, refit_config
    from tuner.vae.training import train as train_config

    for name, value in (("k", k), ("n", n)):
        if value is not None and value < 1:
            raise ConfigError(f"{name}: must be a whole number >= 1, got {value}")
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
    if k is None:
        from tuner.vae.evaluation import default_k

        k = default_k()
    images = splits.test[:n]
    if on_scoring is not None:
        on_scoring(k, len(images))
    test = evaluate(result.model, images, split="test", k=k, on_progress=on_progress, max_memory=max_memory)
    if out is not None:
        (Path(out) / "evaluation.json").write_text(json.dumps(test.to_dict(), indent=2) + "\n")
    _store_refit(study_name, storage_url, config, test, len(result.history))
    return result, test


def _store_refit(study_name: str, storage_url: str | None, config: TrainConfig, test: Evaluation, epochs: int) -> None:
    """Keep a refit's test result with the study, for ``tuner status``, the report and the
    dashboard (on the study: a finished trial takes no more attributes)."""
    import datetime as dt

    from tuner.search.records import refit_attr

    trial = (config.provenance or {}).get("trial")
    if not isinstance(trial, int) or test.nll_iwae is None:
        return
    storage = storage_lib.open_storage(storage_lib.resolve_url(storage_url), must_exist=True)
    record = {
        "nll": test.nll_iwae,
        "k": test.k,
        "split": test.split,
        "n_images": test.n_images,
        "epochs": epochs,
        "likelihood": test.likelihood,
        "bits_per_dim": test.bits_per_dim,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    storage.set_study_user_attr(storage.get_study_id_from_name(study_name), refit_attr(trial), record)
    try:  # the dashboard shows the refit at once, not after the study's next trial
        import optuna

        from tuner.report.dashboard import publish_vae_views

        publish_vae_views(optuna.load_study(study_name=study_name, storage=storage), None)
    except Exception as exc:  # noqa: BLE001 - views are best effort; the result itself is stored
        import logging

        logging.getLogger("tuner").warning(f"could not refresh the dashboard's views: {exc}")
