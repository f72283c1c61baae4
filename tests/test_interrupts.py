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


def test_a_resumed_study_runs_its_interrupted_baseline_again():
    """The baseline (and warm starts) are queued on purpose: an interrupt must not lose them.
    A baseline that failed for a reason of its own is not retried."""
    import optuna

    from tuner.search.records import BASELINE_ATTR, FAIL_ATTR, INTERRUPTED, WARM_START_ATTR
    from tuner.search.study import requeue_interrupted

    study = optuna.create_study()
    study.enqueue_trial({"x": 1.0}, user_attrs={BASELINE_ATTR: True})
    study.enqueue_trial({"x": 2.0}, user_attrs={WARM_START_ATTR: "old#4"})
    for reason in (INTERRUPTED, "loss diverged"):
        trial = study.ask()
        trial.set_user_attr(FAIL_ATTR, reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert requeue_interrupted(study) == [0]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs == {BASELINE_ATTR: True}
    assert requeue_interrupted(study) == []  # already queued again
    rerun = study.ask()
    assert rerun.params == {} and rerun.suggest_float("x", 0, 3) == 1.0  # the baseline's own parameters
