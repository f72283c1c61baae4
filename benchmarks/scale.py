"""A study grown to 10,000 finished trials (synthetic: ask/tell, no training), on SQLite and on
PostgreSQL: does a worker's storage time per trial, ``tuner status``, ``tuner report``, the
dashboard's study page and TPE's ``ask`` stay usable?

Each trial looks like a real one: four parameters, ten intermediate values, ten per-epoch curve
rows, the config and the schedule as user attributes. The bulk of the trials is inserted in
batches straight into Optuna's tables (one storage call per trial would take most of the run);
only worker-style operations through tuner's storage are timed, around trial 100 and around
trial 10,000.

    TUNER_TEST_POSTGRES_URL=postgresql+psycopg://root@127.0.0.1:5432/test \\
        python benchmarks/scale.py --out benchmarks/results/scale.json

The PostgreSQL part creates a fresh database on that server and drops it at the end. With
``--keep DIR`` the SQLite database is built in ``DIR/scale.db`` and left there; a later run with
the same ``--keep DIR`` finds it, skips the build and the worker timings, and times the commands
only (for profiling them on the same data).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import optuna
from common import REPO, write
from optuna.storages._rdb import models

from tuner import storage as storage_lib
from tuner.search.records import CONFIG_ATTR, PRUNABLE_ATTR, SCHEDULE_ATTR, STEPS_ATTR, STUDY_CONFIG_ATTR, curve_key
from tuner.vae.schedules import from_epochs, serialize

STUDY = "scale"
EPOCHS = 10
STEPS = 100
TUNER = str(REPO / ".venv" / "bin" / "tuner")
DIST = {
    "max_beta": optuna.distributions.FloatDistribution(0.05, 10.0, log=True),
    "anneal_epochs": optuna.distributions.IntDistribution(0, EPOCHS),
    "latent_dim": optuna.distributions.IntDistribution(2, 128, log=True),
    "learning_rate": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True),
}


def trial_record(params: dict[str, Any]) -> tuple[dict[str, Any], dict[int, float], float]:
    """User attributes, intermediate values and the final value of a trial with ``params``."""
    max_beta, anneal, latent, lr = (params[k] for k in DIST)
    schedule = from_epochs(
        "linear", max_beta=max_beta, steps_per_epoch=STEPS, total_epochs=EPOCHS, anneal_epochs=anneal
    )
    attrs: dict[str, Any] = {
        CONFIG_ATTR: {
            "training": {"epochs": EPOCHS, "learning_rate": lr},
            "schedule": {"name": "linear", "max_beta": max_beta, "anneal_epochs": anneal},
            "model": {"latent_dim": latent},
        },
        SCHEDULE_ATTR: serialize(schedule),
        STEPS_ATTR: STEPS,
        PRUNABLE_ATTR: list(range(anneal + 1, EPOCHS + 1)),
    }
    rate = 30.0 / (1.0 + max_beta) + 0.05 * latent
    distortion = 70.0 + 12.0 * math.log1p(max_beta) + 4.0 * abs(math.log(lr / 1e-3))
    intermediate: dict[int, float] = {}
    for epoch in range(1, EPOCHS + 1):
        recon = distortion + 60.0 * math.exp(-epoch / 2)
        beta = float(schedule.values([epoch * STEPS])[0])
        attrs[curve_key(epoch)] = {
            "epoch": epoch,
            "loss": recon + beta * rate,
            "recon": recon,
            "kl": rate,
            "elbo": -(recon + rate),
            "beta": beta,
            "beta_end": beta,
            "val_loss": recon + rate,
            "val_recon": recon,
            "val_kl": rate,
            "val_elbo": -(recon + rate),
            "epoch_time": 1.0,
        }
        intermediate[epoch] = -(recon + rate)
    return attrs, intermediate, intermediate[EPOCHS]


def bulk_insert(url: str, study_id: int, start: int, n: int, seed: int) -> float:
    """Insert trials ``start`` … ``start + n - 1`` as finished, in one transaction per 1,000
    (batched INSERTs into Optuna's tables). Returns the seconds taken."""
    import random

    import sqlalchemy as sa

    rng = random.Random(seed + start)
    engine = sa.create_engine(url)
    t0 = time.perf_counter()
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        first_id = (conn.execute(sa.text("SELECT COALESCE(MAX(trial_id), 0) FROM trials")).scalar() or 0) + 1
    for chunk in range(0, n, 1000):
        trials, params, values, inter, attrs = [], [], [], [], []
        for i in range(chunk, min(n, chunk + 1000)):
            tid = first_id + i
            p = {
                "max_beta": math.exp(rng.uniform(math.log(0.05), math.log(10.0))),
                "anneal_epochs": rng.randint(0, EPOCHS),
                "latent_dim": int(round(math.exp(rng.uniform(math.log(2), math.log(128))))),
                "learning_rate": math.exp(rng.uniform(math.log(1e-4), math.log(3e-3))),
            }
            user_attrs, steps, value = trial_record(p)
            trials.append(
                {
                    "trial_id": tid,
                    "number": start + i,
                    "study_id": study_id,
                    "state": optuna.trial.TrialState.COMPLETE,
                    "datetime_start": now,
                    "datetime_complete": now,
                }
            )
            for name, dist in DIST.items():
                params.append(
                    {
                        "trial_id": tid,
                        "param_name": name,
                        "param_value": dist.to_internal_repr(p[name]),
                        "distribution_json": optuna.distributions.distribution_to_json(dist),
                    }
                )
            values.append(
                {
                    "trial_id": tid,
                    "objective": 0,
                    "value": value,
                    "value_type": models.TrialValueModel.TrialValueType.FINITE,
                }
            )
            finite = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
            inter += [
                {"trial_id": tid, "step": s, "intermediate_value": v, "intermediate_value_type": finite}
                for s, v in steps.items()
            ]
            attrs += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in user_attrs.items()]
        with engine.begin() as conn:
            conn.execute(sa.insert(models.TrialModel.__table__), trials)
            conn.execute(sa.insert(models.TrialParamModel.__table__), params)
            conn.execute(sa.insert(models.TrialValueModel.__table__), values)
            conn.execute(sa.insert(models.TrialIntermediateValueModel.__table__), inter)
            conn.execute(sa.insert(models.TrialUserAttributeModel.__table__), attrs)
    if engine.dialect.name == "postgresql":  # explicit ids leave the sequence behind
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT setval('trials_trial_id_seq', (SELECT MAX(trial_id) FROM trials))"))
    engine.dispose()
    return time.perf_counter() - t0


def worker_trials(storage: Any, n: int, sampler: optuna.samplers.BaseSampler) -> dict[str, float]:
    """``n`` trials as a worker stores them: ask (the sampler's proposal), then reports, curve
    rows and tell. Returns the median seconds of the ask and of the rest, per trial."""
    # No pruner: its own reads of the study are the pruner's cost, not the storage's.
    study = optuna.load_study(study_name=STUDY, storage=storage, sampler=sampler, pruner=optuna.pruners.NopPruner())
    asks, rest = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        trial = study.ask()
        params = {
            "max_beta": trial.suggest_float("max_beta", 0.05, 10.0, log=True),
            "anneal_epochs": trial.suggest_int("anneal_epochs", 0, EPOCHS),
            "latent_dim": trial.suggest_int("latent_dim", 2, 128, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        }
        t1 = time.perf_counter()
        attrs, steps, value = trial_record(params)
        for key in (CONFIG_ATTR, SCHEDULE_ATTR, STEPS_ATTR, PRUNABLE_ATTR):
            trial.set_user_attr(key, attrs[key])
        for epoch, v in steps.items():
            trial.set_user_attr(curve_key(epoch), attrs[curve_key(epoch)])
            trial.report(v, epoch)
        study.tell(trial, value)
        asks.append(t1 - t0)
        rest.append(time.perf_counter() - t1)
    return {"ask_s": statistics.median(asks), "report_tell_s": statistics.median(rest)}


def measure_at(url: str, n_worker: int) -> dict[str, float]:
    """Storage time per trial with a random sampler (ask + reports + attributes + tell: all
    storage), and TPE's ask time on the same trials."""
    storage = storage_lib.open_storage(url, heartbeat=storage_lib.Heartbeat(), retry_s=60, log=lambda _m: None)
    plain = worker_trials(storage, n_worker, optuna.samplers.RandomSampler(seed=0))
    tpe = worker_trials(storage, max(3, n_worker // 3), optuna.samplers.TPESampler(seed=0, n_startup_trials=10))
    return {
        "storage_s_per_trial": plain["ask_s"] + plain["report_tell_s"],
        "tpe_ask_s": tpe["ask_s"],
        "tpe_ask_minus_random_ask_s": tpe["ask_s"] - plain["ask_s"],
    }


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=300)
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dashboard_study_page(url: str, study_id: int, env: dict[str, str]) -> dict[str, float]:
    """Start ``tuner dashboard`` and time the study page's data request (the one optuna-dashboard's
    study page makes: all trials of the study), once cold and once more."""
    port = free_port()
    proc = subprocess.Popen(
        [TUNER, "dashboard", "--storage", url, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the dashboard did not start") from None
                time.sleep(0.3)
        out = {}
        for label in ("first", "second"):
            t0 = time.perf_counter()
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study_id}?after=0", timeout=120).read()
            out[f"study_page_{label}_s"] = time.perf_counter() - t0
        out["study_page_mb"] = len(body) / 1e6
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_backend(url: str, n_total: int, n_worker: int, tmp: Path) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # ask/tell, as the test helpers do
    storage = storage_lib.open_storage(url)
    if STUDY in optuna.get_all_study_names(storage):  # a kept database: time the commands only
        study = optuna.load_study(study_name=STUDY, storage=storage)
        return {"n_trials": len(study.get_trials(deepcopy=False)), **time_commands(url, study._study_id, tmp)}
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    study.set_user_attr(STUDY_CONFIG_ATTR, {"budget": {"n_trials": n_total}})
    study_id = study._study_id
    result: dict[str, Any] = {}
    # Around trial 100: 100 - 2 n_worker inserted, then the timed ones (random, then TPE).
    n_small = 100 - n_worker - max(3, n_worker // 3)
    bulk_insert(url, study_id, 0, n_small, seed=0)
    result["at_100"] = measure_at(url, n_worker)
    n_now = len(study.get_trials(deepcopy=False))
    n_big = n_total - n_worker - max(3, n_worker // 3) - n_now
    result["bulk_insert_s"] = bulk_insert(url, study_id, n_now, n_big, seed=1)
    result["at_10000"] = measure_at(url, n_worker)
    result["n_trials"] = len(study.get_trials(deepcopy=False))
    result["storage_ratio"] = result["at_10000"]["storage_s_per_trial"] / result["at_100"]["storage_s_per_trial"]
    result["tpe_ask_ratio"] = result["at_10000"]["tpe_ask_s"] / result["at_100"]["tpe_ask_s"]
    return {**result, **time_commands(url, study_id, tmp)}


def time_commands(url: str, study_id: int, tmp: Path) -> dict[str, Any]:
    """``tuner status``, ``tuner report`` and the dashboard's study data on the grown study."""
    result: dict[str, Any] = {}
    env = {**os.environ, "TUNER_STORAGE": url}
    result["status_s"] = timed([TUNER, "status", "--storage", url], env)
    html = tmp / f"report-{url.split(':')[0]}.html"
    result["report_s"] = timed(
        [TUNER, "report", "--storage", url, "--study", STUDY, "--no-best-views", "-o", str(html)], env
    )
    result["report_mb"] = html.stat().st_size / 1e6
    result["dashboard"] = dashboard_study_page(url, study_id, env)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-trials", type=int, default=10_000)
    parser.add_argument("--timed", type=int, default=15, help="worker trials timed at each mark")
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", type=Path, default=None, help="build the SQLite database in DIR, keep and reuse it")
    args = parser.parse_args()
    out: dict[str, Any] = {"n_trials": args.n_trials, "epochs_per_trial": EPOCHS}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db = (args.keep or tmp) / "scale.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        out["sqlite"] = run_backend(f"sqlite:///{db}", args.n_trials, args.timed, tmp)
        out["sqlite"]["db_mb"] = db.stat().st_size / 1e6
        pg = os.environ.get("TUNER_TEST_POSTGRES_URL")
        if pg:
            import psycopg

            server = pg.rsplit("/", 1)[0]
            name = f"scale_bench_{os.getpid()}"
            admin = server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            try:
                out["postgresql"] = run_backend(f"{server}/{name}", args.n_trials, args.timed, tmp)
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for key in ("sqlite", "postgresql"):
        if key in out:
            r = out[key]
            r["goals_met"] = {
                "storage_ratio_le_1.5": r["storage_ratio"] <= 1.5 if "storage_ratio" in r else None,
                "status_le_2s": r["status_s"] <= 2.0,
                "report_le_30s_50mb": r["report_s"] <= 30.0 and r["report_mb"] <= 50.0,
                "dashboard_le_5s": r["dashboard"]["study_page_first_s"] <= 5.0,
            }
    write(out, args.out)
    shutil.rmtree(tmp_name, ignore_errors=True)


if __name__ == "__main__":
    main()
