"""Distributed throughput: trials per second with 1, 2, 4 and 8 worker processes on one
study whose objective sleeps 0.2 s, on PostgreSQL, the single-machine default (SQLite, WAL)
and the journal file; and the storage overhead per trial (ms) with a no-op objective.

    TUNER_TEST_POSTGRES_URL=postgresql+psycopg://root@127.0.0.1:5432/test python benchmarks/workers.py

With PostgreSQL, ``grpc`` is the same database behind ``tuner storage-proxy``, and ``--many 64``
runs 64 lightweight workers (sleep objective) on PostgreSQL directly and through the proxy:
trials and storage operations per second, failures, and the server's connections.

Each worker runs the same budget gate as `tuner worker` (tuner.objective.budget_reached), so
the study ends with exactly n_trials finished trials; 'overshoot' counts any extra.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import optuna
import sqlalchemy.exc
from common import write

from tuner import storage as storage_lib
from tuner.errors import StorageError
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
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        # As `tuner worker` opens it: lost connections and refused commits are retried.
        storage = storage_lib.open_storage(url, retry_s=120, log=lambda message: None)
        sampler = optuna.samplers.RandomSampler(seed=os.getpid())
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        study.optimize(
            lambda t: objective(t, budget, sleep_s),
            catch=(Exception,),
            callbacks=[optuna.study.MaxTrialsCallback(budget, states=FINISHED)],
        )
    except Exception as exc:  # noqa: BLE001
        errors.put(repr(exc)[:300])


def _open_when_free(url: str, wait_s: float = 90) -> optuna.storages.BaseStorage:
    """Open ``url`` once the server has a free connection again (after a run that filled it)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return storage_lib.open_storage(url)
        except StorageError as exc:
            if "too many clients" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def run(url: str, n_workers: int, budget: int, sleep_s: float, watch: str | None = None) -> dict:
    """``n_workers`` forked processes on ``url``; ``watch``: the PostgreSQL URL behind it (also
    used here for set-up and counting, so that this process opens no gRPC channel before it
    forks: gRPC does not survive a fork)."""
    admin = watch or url
    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=_open_when_free(admin), direction="maximize")
    errors = mp.Queue()
    procs = [mp.Process(target=worker, args=(url, name, budget, sleep_s, errors)) for _ in range(n_workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    peak_connections = 0
    while any(p.is_alive() for p in procs):
        if watch:  # how many connections the database server holds meanwhile
            peak_connections = max(peak_connections, connections(watch))
        time.sleep(0.5)
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    errs = [errors.get() for _ in range(errors.qsize())]
    study = optuna.load_study(study_name=name, storage=_open_when_free(admin))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    locked = sum("locked" in str(t.system_attrs.get("fail_reason", "")) for t in failed)
    result = {
        "trials_per_s": len(complete) / wall,
        "complete": len(complete),
        "failed": len(failed),
        "database_locked": locked,
        "workers_failed": len(errs),
        "worker_errors": sorted(set(errs))[:5],
        "wall_s": wall,
    }
    if watch:
        result["peak_server_connections"] = peak_connections
    if not admin.startswith(("sqlite", "journal")):
        optuna.delete_study(study_name=name, storage=storage_lib.open_storage(admin))
    return result


def overhead_ms(url: str, n: int = 50) -> float:
    """Per-trial cost of the storage alone: ask, suggest, 3 curve writes + reports, tell."""
    name = f"noop-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage_lib.open_storage(url), direction="maximize")
    start = time.perf_counter()
    study.optimize(lambda t: objective(t, 10**9, 0.0), n_trials=n)
    ms = (time.perf_counter() - start) / n * 1000
    if not url.startswith(("sqlite", "journal")):
        optuna.delete_study(study_name=name, storage=storage_lib.open_storage(url))
    return ms


# Storage operations of one trial here: ask (create + param), 3 curve writes and 3 reports,
# tell, plus the budget gate's read of the study's trials.
OPS_PER_TRIAL = 10


@contextlib.contextmanager
def grpc_proxy(db_url: str):
    """`tuner storage-proxy` in front of ``db_url``; yields the workers' grpc:// URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "tuner", "storage-proxy", "--storage", db_url, "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def connections(pg_url: str) -> int:
    import sqlalchemy.pool

    engine = sqlalchemy.create_engine(pg_url)
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").scalar()
        )


def many(pg_url: str, n_workers: int, trials_per_worker: int, sleep_s: float) -> dict:
    """PostgreSQL directly vs through the proxy, ``n_workers`` processes each."""
    result = {}
    with grpc_proxy(pg_url) as proxy_url:
        for kind, url in (("postgresql", pg_url), ("grpc_proxy", proxy_url)):
            try:
                row = run(url, n_workers, n_workers * trials_per_worker, sleep_s, watch=pg_url)
            except sqlalchemy.exc.OperationalError as exc:  # e.g. the server's max_connections
                result[kind] = {"error": str(exc.orig).splitlines()[0] if exc.orig else str(exc)[:300]}
                time.sleep(5)  # let the server drop the dead workers' connections
                continue
            row["storage_ops_per_s"] = row["trials_per_s"] * OPS_PER_TRIAL
            result[kind] = row
    if "storage_ops_per_s" in result["postgresql"] and "storage_ops_per_s" in result["grpc_proxy"]:
        result["ops_ratio_proxy_vs_direct"] = (
            result["grpc_proxy"]["storage_ops_per_s"] / result["postgresql"]["storage_ops_per_s"]
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--trials-per-worker", type=int, default=12)
    parser.add_argument("--many", type=int, default=0, help="also run this many lightweight workers (e.g. 64)")
    parser.add_argument("--many-only", action="store_true", help="run only the --many comparison")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    levels = [int(v) for v in args.levels.split(",")]
    tmp = tempfile.mkdtemp()
    storages = {"sqlite": f"sqlite:///{tmp}/bench.db", "journal": f"journal://{tmp}/bench.log"}
    pg_url = os.environ.get("TUNER_TEST_POSTGRES_URL")
    if pg_url:
        storages["postgresql"] = pg_url
    result: dict = {"sleep_s": SLEEP_S}
    if args.many and pg_url:
        result[f"many_{args.many}"] = many(pg_url, args.many, 3, 0.05)
    if args.many_only:
        write(result, args.out)
        return
    proxy = grpc_proxy(pg_url) if pg_url else contextlib.nullcontext(None)
    with proxy as proxy_url:
        if proxy_url:
            storages["grpc_proxy_postgresql"] = proxy_url
        _levels(storages, levels, args.trials_per_worker, result)
    write(result, args.out)


def _levels(storages: dict[str, str], levels: list[int], trials_per_worker: int, result: dict) -> None:
    for kind, url in storages.items():
        rows = {}
        admin = storages.get("postgresql") if url.startswith("grpc") else None
        for k in levels:
            rows[f"workers_{k}"] = run(url, k, trials_per_worker * k, SLEEP_S, watch=admin)
        base = rows[f"workers_{levels[0]}"]["trials_per_s"]
        for k in levels:
            rows[f"workers_{k}"]["speedup"] = rows[f"workers_{k}"]["trials_per_s"] / base
        if not url.startswith("grpc"):  # it would open a gRPC channel in this process
            rows["noop_overhead_ms_per_trial"] = overhead_ms(url)
        result[kind] = rows


if __name__ == "__main__":
    main()
