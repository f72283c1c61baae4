"""Distributed throughput: trials per second with 1, 2, 4 and 8 worker processes on one
study whose objective sleeps 0.2 s, on PostgreSQL, the single-machine default (SQLite, WAL)
and the journal file; and the storage overhead per trial (ms) with a no-op objective.

    TUNER_TEST_POSTGRES_URL=postgresql+psycopg://root@127.0.0.1:5432/test python benchmarks/workers.py

Each worker runs the same budget gate as `tuner worker` (tuner.objective.budget_reached), so
the study ends with exactly n_trials finished trials; 'overshoot' counts any extra.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
import uuid

import optuna
from common import write

from tuner import storage as storage_lib
from tuner.search.objective import budget_reached
from tuner.search.records import FINISHED, curve_key

SLEEP_S = 0.2
EPOCHS = 3  # per-epoch curve writes, as a real trial does


def objective(trial: optuna.Trial, budget: int, sleep_s: float) -> float:
    if budget_reached(trial, budget):
        trial.study.stop()
        raise optuna.TrialPruned()  # counted separately below as 'skipped'
    x = trial.suggest_float("x", -1, 1)
    for epoch in range(1, EPOCHS + 1):
        trial.set_user_attr(curve_key(epoch), {"val_elbo": -x * x})
        trial.report(-x * x, epoch)
    time.sleep(sleep_s)
    return -x * x


def worker(url: str, name: str, budget: int, sleep_s: float, errors) -> None:
    storage = storage_lib.open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=os.getpid()))
    try:
        study.optimize(
            lambda t: objective(t, budget, sleep_s),
            catch=(Exception,),
            callbacks=[optuna.study.MaxTrialsCallback(budget, states=FINISHED)],
        )
    except Exception as exc:  # noqa: BLE001
        errors.put(repr(exc))


def run(url: str, n_workers: int, budget: int, sleep_s: float) -> dict:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=storage_lib.open_storage(url), direction="maximize")
    errors = mp.Queue()
    procs = [mp.Process(target=worker, args=(url, name, budget, sleep_s, errors)) for _ in range(n_workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=storage_lib.open_storage(url))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    locked = sum("locked" in str(t.system_attrs.get("fail_reason", "")) for t in failed)
    result = {
        "trials_per_s": len(complete) / wall,
        "complete": len(complete),
        "failed": len(failed),
        "database_locked": locked,
        "worker_errors": [errors.get() for _ in range(errors.qsize())],
        "wall_s": wall,
    }
    if url.startswith("postgresql"):
        optuna.delete_study(study_name=name, storage=url)
    return result


def overhead_ms(url: str, n: int = 50) -> float:
    """Per-trial cost of the storage alone: ask, suggest, 3 curve writes + reports, tell."""
    name = f"noop-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage_lib.open_storage(url), direction="maximize")
    start = time.perf_counter()
    study.optimize(lambda t: objective(t, 10**9, 0.0), n_trials=n)
    ms = (time.perf_counter() - start) / n * 1000
    if url.startswith("postgresql"):
        optuna.delete_study(study_name=name, storage=url)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--trials-per-worker", type=int, default=12)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    levels = [int(v) for v in args.levels.split(",")]
    tmp = tempfile.mkdtemp()
    storages = {"sqlite": f"sqlite:///{tmp}/bench.db", "journal": f"journal://{tmp}/bench.log"}
    if os.environ.get("TUNER_TEST_POSTGRES_URL"):
        storages["postgresql"] = os.environ["TUNER_TEST_POSTGRES_URL"]
    result: dict = {"sleep_s": SLEEP_S}
    for kind, url in storages.items():
        rows = {}
        for k in levels:
            rows[f"workers_{k}"] = run(url, k, args.trials_per_worker * k, SLEEP_S)
        base = rows[f"workers_{levels[0]}"]["trials_per_s"]
        for k in levels:
            rows[f"workers_{k}"]["speedup"] = rows[f"workers_{k}"]["trials_per_s"] / base
        rows["noop_overhead_ms_per_trial"] = overhead_ms(url)
        result[kind] = rows
    write(result, args.out)


if __name__ == "__main__":
    main()
