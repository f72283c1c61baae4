"""Ctrl-C is delivered between database statements, never inside one (tuner/interrupts.py)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tuner import interrupts


def test_a_signal_during_a_deferred_block_is_raised_when_it_ends():
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.stop_on_signals()
    try:
        finished = []
        with pytest.raises(KeyboardInterrupt), interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            with interrupts.deferred():  # nested: raised only when the outer block ends
                os.kill(os.getpid(), signal.SIGINT)
            finished.append("inner")
            finished.append("outer")
        assert finished == ["inner", "outer"]
        with pytest.raises(KeyboardInterrupt):  # outside a block: at once, as Python does
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0.1)  # give the handler a bytecode boundary to run at
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


# Writes trial rows to a SQLite study while another thread sends SIGINT every few ms. Before
# the fix, an interrupt between BEGIN IMMEDIATE and COMMIT left the write lock held, and the
# next write waited seconds (or failed after the busy timeout): CI's end-to-end test exited 1.
SHOOTER = textwrap.dedent(
    """
    import os, random, signal, sys, threading, time
    import optuna
    from tuner.interrupts import stop_on_signals
    from tuner.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage("sqlite:///" + sys.argv[1], retry_s=2, log=print)
    trial = optuna.create_study(storage=storage, study_name="x").ask()
    stop_on_signals()
    done = False
    go = threading.Event()  # no signal before the main thread is inside its try blocks

    def shoot():
        go.wait()
        while not done:
            time.sleep(random.uniform(0.001, 0.01))
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=shoot, daemon=True).start()
    interrupted = slow = step = 0
    start = time.monotonic()

    def storm():
        global interrupted, slow, step
        go.set()
        while time.monotonic() - start < 4:
            began = time.monotonic()
            try:
                step += 1
                trial.report(float(step), step)
                trial.set_user_attr("a" + str(step % 5), step)
            except KeyboardInterrupt:
                interrupted += 1
            slow += time.monotonic() - began > 0.5

    while True:
        try:  # a signal between the guarded statements lands here; count it and go on
            storm()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            done = True
            break
        except KeyboardInterrupt:
            interrupted += 1
    print("interrupted", interrupted, "slow", slow, "steps", step)
    """
)


def test_ctrl_c_storm_never_leaves_sqlite_locked(tmp_path):
    script = tmp_path / "shooter.py"
    script.write_text(SHOOTER)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "t.db")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    words = result.stdout.split()
    counts = dict(zip(words[-6::2], map(int, words[-5::2]), strict=True))
    assert counts["interrupted"] > 20, result.stdout  # the storm did hit the writes
    assert counts["slow"] == 0, result.stdout  # and no write ever waited on a lost lock
    assert "database unreachable" not in result.stdout


def test_an_interrupted_baseline_is_queued_again_by_its_own_process(monkeypatch):
    """The baseline (and warm starts) are queued on purpose: an interrupt must not lose them.
    The process that ran the trial queues it again, once (several workers resuming together
    must not each add a copy); a baseline that failed for a reason of its own is not retried."""
    import optuna

    from tests.helpers import tiny_study_dict
    from tuner.errors import DivergenceError
    from tuner.search.objective import Objective
    from tuner.search.records import BASELINE_ATTR
    from tuner.search.space import baseline_params
    from tuner.search.study import open_study
    from tuner.search.study_file import validate_study

    config = validate_study(tiny_study_dict())
    study = open_study(config, optuna.storages.InMemoryStorage())
    objective = Objective(config, None)

    def interrupted(self, trial):
        trial.suggest_float("max_beta", 0.5, 2.0)  # what it sampled before the stop
        raise KeyboardInterrupt

    monkeypatch.setattr(Objective, "_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=1)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    again = study.trials[1]
    assert again.user_attrs == {BASELINE_ATTR: True}
    assert again.system_attrs["fixed_params"] == baseline_params(config)

    def diverged(self, trial):
        raise DivergenceError(step=3, learning_rate=1e-3, loss=float("nan"))

    monkeypatch.setattr(Objective, "_run", diverged)
    study.optimize(objective, n_trials=1, catch=(Exception,))  # runs the queued baseline
    assert [t.state for t in study.trials][1:] == [optuna.trial.TrialState.FAIL]  # not queued again
