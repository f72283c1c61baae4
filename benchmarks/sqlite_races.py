"""Races of several workers on one SQLite file, counted over rounds (before/after in one run).

* ``open``: 6 processes open one new database at once (Optuna creates its tables).
* ``reap``: 3 processes fail one stale trial at once; it must be re-queued once.
* ``ask``: 3 processes ask for a trial while one is waiting; it must be handed out once.

    python benchmarks/sqlite_races.py [--rounds 5] [--baseline-tree /tmp/baseline]

``--baseline-tree`` runs the same rounds with an older checkout's ``tuner.storage``. The
processes are synchronised by a common start time. tests/test_faults.py uses :func:`race`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"

RACE = textwrap.dedent(
    """
    import json, sys, time, warnings
    import optuna
    warnings.simplefilter("ignore")
    from tuner import storage as storage_lib
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url, action, start = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def go():  # every process begins its racing step at the same instant
        time.sleep(max(0.0, start - time.time()))

    try:
        if action == "open":
            go()
            storage_lib.open_storage(url)
            print("RESULT " + json.dumps("ok"))
        elif action == "reap":
            storage = storage_lib.open_storage(url, heartbeat=storage_lib.Heartbeat(interval=1, grace=1))
            study = optuna.load_study(study_name="race", storage=storage)
            go()
            optuna.storages.fail_stale_trials(study)
            print("RESULT " + json.dumps("ok"))
        elif action == "ask":
            study = optuna.load_study(study_name="race", storage=storage_lib.open_storage(url))
            go()
            print("RESULT " + json.dumps(study.ask().number))
    except Exception as exc:
        print("RESULT " + json.dumps(f"{type(exc).__name__}: {exc}"[:200]))
    """
)


def race(url: str, action: str, n: int, tree: Path = REPO) -> list[object]:
    """Run ``action`` in ``n`` processes that start at the same instant; their results."""
    start = time.time() + 6.0  # time for every interpreter to import Optuna and open the storage
    env = {**os.environ, "PYTHONPATH": str(tree)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, url, action, str(start)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(n)
    ]
    results = []
    for proc in procs:
        out = proc.communicate(timeout=120)[0]
        results.append(json.loads([line for line in out.splitlines() if line.startswith("RESULT ")][-1][7:]))
    return results


def one_round(folder: Path, tree: Path, index: int) -> dict[str, bool]:
    """Whether each race went right in this round (set up with this checkout's storage; the
    racing processes run ``tree``'s)."""
    import optuna

    from tuner import storage as storage_lib

    opened = race(f"sqlite:///{folder / f'open-{index}.db'}", "open", 6, tree)
    url = f"sqlite:///{folder / f'reap-{index}.db'}"
    storage = storage_lib.open_storage(url, heartbeat=storage_lib.Heartbeat(interval=1, grace=1, max_retry=3))
    study = optuna.create_study(study_name="race", storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    time.sleep(2.5)
    race(url, "reap", 3, tree)
    waiting = study.get_trials(states=[optuna.trial.TrialState.WAITING])
    taken = race(url, "ask", 3, tree) if waiting else []
    return {
        "open_all_succeeded": opened == ["ok"] * 6,
        "reaped_once": len(waiting) == 1,
        "waiting_taken_once": bool(waiting) and taken.count(waiting[0].number) == 1,
    }


def run(tree: Path, rounds: int) -> dict[str, int]:
    failures = {"open_all_succeeded": 0, "reaped_once": 0, "waiting_taken_once": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            for key, ok in one_round(Path(tmp), tree, index).items():
                failures[key] += not ok
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-tree", type=Path, help="an older checkout, measured in the same run")
    parser.add_argument("--out", type=Path, default=RESULTS / "sqlite_races_cpu.json")
    args = parser.parse_args()
    report: dict[str, object] = {"rounds": args.rounds, "failed_rounds": run(REPO, args.rounds)}
    if args.baseline_tree:
        report["baseline_tree"] = str(args.baseline_tree)
        report["baseline_failed_rounds"] = run(args.baseline_tree, args.rounds)
    print(json.dumps(report))
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
