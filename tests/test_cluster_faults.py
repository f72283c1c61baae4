"""Faults a shared cluster produces every week: a worker frozen and resumed after its trial was
retried elsewhere, damaged files, a full disk, a PostgreSQL restart under load."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

from tests import pg_cluster
from tests.helpers import SLOW_TRIALS, start_worker, tiny_config_dict, write_study
from tuner.cli import main
from tuner.errors import StorageError
from tuner.search.objective import budget_reached
from tuner.search.records import SURPLUS_ATTR, WEIGHTS_ATTR, curves, n_finished
from tuner.storage import Heartbeat, atomic_path, open_storage
from tuner.testing import synthetic_study


def running_trial(worker: subprocess.Popen[str], name: str, storage: optuna.storages.BaseStorage) -> FrozenTrial:
    """The worker's first RUNNING trial that has finished an epoch; fails at once with the
    worker's output if it ends first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.3)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        started = [t for t in study.get_trials(deepcopy=False, states=[TrialState.RUNNING]) if curves(t)]
        if started:
            return started[0]
    worker.kill()
    raise AssertionError(
        f"no trial reached the middle of its training; the worker said:\n{worker.communicate()[0][-3000:]}"
    )


# --- a worker frozen past the grace period, then resumed -------------------------------------


# SQLite only: the takeover goes through Optuna's storage API alone, the same on every RDB;
# PostgreSQL's own faults are the restart test below and test_faults' outage test.
@pytest.mark.timeout(240)
def test_worker_frozen_past_grace_drops_its_trial_and_goes_on(tmp_path):
    """``kill -STOP`` a worker in the middle of a trial for longer than ``--grace``; meanwhile
    a second worker (this test, with ask/tell) fails the stale trial, which re-queues it, and
    completes the retry. ``kill -CONT``: the woken worker writes nothing more on its old trial,
    says so in one line, runs what the budget still needs and exits 0."""
    name = "frozen"
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    path = write_study(tmp_path, name, **SLOW_TRIALS, budget={"n_trials": 2})
    worker = start_worker(tmp_path, path, url, "--heartbeat", "1", "--grace", "3")
    storage = optuna.storages.RDBStorage(
        url,
        heartbeat_interval=1,
        grace_period=3,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
    )
    try:
        victim = running_trial(worker, name, storage)
        worker.send_signal(signal.SIGSTOP)
        try:
            time.sleep(4.5)  # no heartbeat for longer than the grace period
            study = optuna.load_study(study_name=name, storage=storage)
            optuna.storages.fail_stale_trials(study)
            frozen_at = study._storage.get_trial(victim._trial_id)
            assert frozen_at.state == TrialState.FAIL
            with warnings.catch_warnings():  # "heartbeats are meant for Study.optimize": this is ask/tell
                warnings.simplefilter("ignore", UserWarning)
                retry = study.ask()  # the re-queued copy, run to the end by "another worker"
            assert storage.get_trial(retry._trial_id).system_attrs.get("failed_trial") == victim.number
            study.tell(retry, -100.0)
        finally:
            worker.send_signal(signal.SIGCONT)
        output = worker.communicate(timeout=180)[0]
        assert worker.returncode == 0, output
        assert "Traceback" not in output and "Cannot tell" not in output, output
        said = [line for line in output.splitlines() if f"trial {victim.number} was failed and re-queued" in line]
        assert len(said) == 1, output
        trials = {t.number: t for t in study.get_trials()}
        old = trials[victim.number]
        # Nothing written on the old trial after it was failed: no value, no curve, no artifact.
        assert old.state == TrialState.FAIL and old.values is None
        assert old.user_attrs == frozen_at.user_attrs and old.intermediate_values == frozen_at.intermediate_values
        assert trials[retry.number].state == TrialState.COMPLETE and trials[retry.number].value == -100.0
        finished = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == 2, trials  # the budget, exactly
        assert TrialState.RUNNING not in [t.state for t in trials.values()]
    finally:
        if worker.poll() is None:
            worker.kill()
        storage.engine.dispose()


# --- damaged files -----------------------------------------------------------------------------


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in-process; assert a non-zero exit, one ``error:`` line and no traceback."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert exited.value.code not in (0, None), captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


def damaged_sqlite(folder: Path, how: str) -> Path:
    """A study's database in WAL mode (as workers leave it), then cut to half its size or with
    8 KiB overwritten in the middle (a page gone bad)."""
    path = folder / f"{how}.db"
    storage = open_storage(f"sqlite:///{path}")  # a worker's open: WAL mode
    synthetic_study(storage, name="s", n_trials=40)
    storage.engine.dispose()  # type: ignore[attr-defined]
    size = path.stat().st_size
    if how == "truncated":
        os.truncate(path, size // 2)
    else:
        with path.open("r+b") as file:
            file.seek(size // 2)
            file.write(bytes(range(256)) * 32)
    return path


@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_damaged_sqlite_is_reported_in_one_line_and_never_changed(tmp_path, how, capsys):
    path = damaged_sqlite(tmp_path, how)
    before = files(tmp_path)
    url = f"sqlite:///{path}"
    line = one_error_line(["status", "--storage", url], capsys)
    assert "is damaged" in line and ".recover" in line, line
    assert "is damaged" in one_error_line(
        ["report", "--study", "s", "--storage", url, "-o", str(tmp_path / "r.html")], capsys
    )
    with pytest.raises(StorageError, match="is damaged"):  # a worker refuses to start on it
        open_storage(url, heartbeat=Heartbeat(), retry_s=60)
    after = files(tmp_path)
    # Nothing repaired. Reading a WAL database makes SQLite open its shared-memory index and an
    # empty log beside it, as any reader does; nothing else is created.
    assert {k: v for k, v in after.items() if not k.endswith(("-shm", "-wal"))} == before
    assert after.get(f"{path.name}-wal", b"") == b""


def test_journal_cut_mid_record_is_refused_and_never_changed(tmp_path, capsys):
    path = tmp_path / "study.log"
    synthetic_study(open_storage(f"journal://{path}"), name="j", n_trials=5)
    whole = path.read_bytes()
    path.write_bytes(whole[:-30])  # the writer died in the middle of its last record
    before = files(tmp_path)
    line = one_error_line(["status", "--storage", f"journal://{path}"], capsys)
    cut = whole[:-30].rsplit(b"\n", 1)[-1]
    assert "cut short" in line and f"truncate -s {len(whole) - 30 - len(cut)}" in line, line
    with pytest.raises(StorageError, match="cut short"):
        open_storage(f"journal://{path}")  # a worker would glue its next record to it
    assert files(tmp_path) == before
    os.truncate(path, len(whole) - 30 - len(cut))  # the fix the line gives: the study reads again
    assert len(optuna.load_study(study_name="j", storage=open_storage(f"journal://{path}")).trials) >= 4


def test_missing_artifact_is_one_line_and_writes_nothing(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = synthetic_study(url, name="a", n_trials=6, fail_every=0)
    best = study.best_trial
    study.enqueue_trial(best.params)
    kept = study.ask()  # the best trial again, now with weights whose file was deleted by hand
    for key, value in {**best.user_attrs, WEIGHTS_ATTR: "00000000-gone"}.items():
        kept.set_user_attr(key, value)
    study.tell(kept, (best.value or 0.0) + 1)
    out = tmp_path / "out"
    argv = ["export", "--storage", url, "--weights", "-o", str(out / "best.yaml"), "--artifacts", str(tmp_path / "a")]
    assert "holds no artifact 00000000-gone" in one_error_line(argv, capsys)
    assert not out.exists() or not any(out.iterdir())


# --- a full disk -----------------------------------------------------------------------------


def limit_file_size(limit: int) -> Callable[[], None]:
    """For ``preexec_fn``: no file of the child may grow past ``limit`` bytes, and a write that
    would fails with EFBIG (SIGXFSZ ignored: it would kill the child instead), as on a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.timeout(120)
def test_train_on_a_full_disk_fails_in_one_line_and_leaves_no_half_run(tmp_path):
    """``tuner train --out`` whose weights do not fit: one line naming the file and the space
    needed, exit 1 (not a crash in h5py), and no file in the run folder that a later read
    would take for a finished run."""
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict()))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "train", str(config), "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        preexec_fn=limit_file_size(64 * 1024),  # the weights of this model are ~200 KB
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{out / 'model.weights.h5'}: not enough space" in lines[0] and "needs at least" in lines[0], lines[0]
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == [], list(out.iterdir())


def test_atomic_path_keeps_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / "report.html"
    path.write_text("the earlier report")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half of a new")
        raise RuntimeError("the drawing failed")
    assert path.read_text() == "the earlier report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    with atomic_path(path) as tmp:
        tmp.write_text("the new report")
    assert path.read_text() == "the new report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    # More than any disk holds: refused before writing.
    with pytest.raises(StorageError, match="needs at least"), atomic_path(path, need_bytes=1 << 62) as tmp:
        tmp.write_text("never")
    assert path.read_text() == "the new report"


# --- a PostgreSQL restart with 8 workers running ---------------------------------------------


def synthetic_worker(url: str, name: str, budget: int, index: int, log_path: str) -> None:
    """One worker of the restart test (a forked process): ask/tell through the retrying storage
    a worker uses, the global-budget check of tuner's objective, short sleeps for training."""
    import traceback

    with open(log_path, "w") as log:
        try:
            storage = open_storage(url, retry_s=60, log=lambda m: print(m, file=log, flush=True))
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=index)
            )
            while n_finished(study) < budget:
                trial = study.ask()
                if budget_reached(trial, budget):
                    trial.set_user_attr(SURPLUS_ATTR, True)
                    study.tell(trial, state=TrialState.FAIL)
                    break
                x = trial.suggest_float("x", 0.0, 1.0)
                for step in range(3):
                    time.sleep(0.05)
                    trial.report(x * step, step)
                study.tell(trial, x)
        except Exception:  # noqa: BLE001 - a forked child: its traceback goes to the log the test reads
            traceback.print_exc(file=log)
            os._exit(1)
    os._exit(0)


@pytest.mark.timeout(90)
@pytest.mark.skipif(not pg_cluster.available(), reason="needs PostgreSQL's server binaries and root (runuser)")
def test_eight_workers_ride_out_a_postgres_restart(tmp_path):
    """A real ``pg_ctl restart`` (fast: every connection is cut) while 8 workers run trials:
    each rides it out, the budget ends exact and no trial is left RUNNING."""
    import multiprocessing

    budget = 48
    with pg_cluster.private_cluster() as cluster:
        optuna.create_study(study_name="restart", storage=cluster.url, direction="maximize")
        context = multiprocessing.get_context("fork")  # optuna is imported already: starts in ms
        logs = [tmp_path / f"worker{i}.log" for i in range(8)]
        workers = [
            context.Process(target=synthetic_worker, args=(cluster.url, "restart", budget, i, str(logs[i])))
            for i in range(8)
        ]
        for worker in workers:
            worker.start()
        try:
            reader = optuna.storages.RDBStorage(cluster.url)
            study = optuna.load_study(study_name="restart", storage=reader)
            deadline = time.monotonic() + 40
            while n_finished(study) < 8:  # restart in the middle of the run, not before it
                assert time.monotonic() < deadline, [p.read_text() for p in logs if p.exists()]
                time.sleep(0.2)
            reader.engine.dispose()
            cluster.restart()
            for worker in workers:
                worker.join(timeout=60)
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.kill()
        said = [p.read_text() for p in logs]
        assert [w.exitcode for w in workers] == [0] * 8, said
        assert not any("Traceback" in s for s in said), said
        assert any("database unreachable" in s for s in said), said  # the restart hit them mid-run
        trials = optuna.load_study(study_name="restart", storage=cluster.url).get_trials(deepcopy=False)
        states = [t.state for t in trials]
        assert TrialState.RUNNING not in states, states
        assert states.count(TrialState.COMPLETE) == budget, states
        assert all(t.user_attrs.get(SURPLUS_ATTR) for t in trials if t.state == TrialState.FAIL), states


def test_a_session_left_pending_by_a_lost_connection_is_retried():
    """What Optuna's trial loading raises when the server goes away mid-query (it retries in
    the same session): transient when it was handling a lost connection, not otherwise."""
    import sqlalchemy.exc

    from tuner.storage.retrying import is_transient

    def pending_after(first: Exception) -> BaseException:
        try:
            try:
                raise first
            except (sqlalchemy.exc.OperationalError, ValueError):
                # Implicitly chained (``__context__``), as SQLAlchemy raises it.
                raise sqlalchemy.exc.PendingRollbackError("rollback first")  # noqa: B904
        except sqlalchemy.exc.PendingRollbackError as exc:
            return exc
        raise AssertionError("unreachable")

    lost = sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))
    assert is_transient(pending_after(lost))
    assert not is_transient(pending_after(ValueError("a bad value")))
