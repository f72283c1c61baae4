"""Start-up time of the commands that do not train, as a ratio to ``python -c "import optuna"``
measured in the same run (goal: each ≤ 1.5×), and to the floor of any command that reads a
study: ``python -c "import optuna; optuna.load_study(...)"`` on the same SQLite file (Optuna's
RDB storage imports SQLAlchemy and Alembic, which ``import optuna`` alone defers).

Each command runs ``--repeat`` times against a small synthetic study; the median wall time
counts. ``tuner dashboard`` is timed until it prints its address (it then serves until
stopped). With ``--baseline-tree DIR`` (a checkout of an older commit), the same commands are
timed on that code too, for a before/after in one run.

    python benchmarks/startup.py [--repeat 5] [--baseline-tree /tmp/baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def timed(cmd: list[str], env: dict[str, str], cwd: Path, until: str | None = None) -> float:
    start = time.perf_counter()
    if until is None:
        subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=300)
        return time.perf_counter() - start
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout or []:
            if until in line:
                return time.perf_counter() - start
        raise RuntimeError(f"{cmd} ended without printing {until!r}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def commands(work: Path, url: str) -> dict[str, tuple[list[str], str | None]]:
    tuner = [sys.executable, "-m", "tuner"]
    real_url = f"sqlite:///{work / 'real.db'}"
    bad = work / "bad.yaml"
    bad.write_text("name: bad\ntraining: {epochs: 0}\n")
    return {
        "help": ([*tuner, "--help"], None),
        "status": ([*tuner, "status", "--storage", url], None),
        "export": ([*tuner, "export", "--study", "bench", "-o", str(work / "best.yaml"), "--storage", url], None),
        "invalid_study_file": ([*tuner, "run", str(bad), "--storage", url], None),
        "report_no_best_views": (
            [*tuner, "report", "--study", "bench", "-o", str(work / "r.html"), "--no-best-views", "--storage", url],
            None,
        ),
        "dashboard_ready": ([*tuner, "dashboard", "--storage", url, "--port", "8765"], "dashboard for"),
        # A real (tiny) study whose trials stored their views: the report draws the best trial and
        # the top trials across β from them, without a backend; compared with `status` on it.
        "status_real": ([*tuner, "status", "--storage", real_url], None),
        "report_real_with_views": (
            [*tuner, "report", "--study", "real", "-o", str(work / "real.html"), "--storage", real_url],
            None,
        ),
    }


def real_study(work: Path) -> None:
    """A tiny real study (4 trials of 2 epochs on 512 MNIST images) in ``work/real.db``."""
    code = (
        "from tuner.api import run_study; from tuner.search.study_file import validate_study; "
        "run_study(validate_study({'name': 'real', 'data': {'dataset': 'mnist', 'n_train': 512, 'n_val': 256}, "
        "'model': {'filters': [8, 16]}, 'training': {'epochs': 2, 'batch_size': 64}, "
        "'search': {'max_beta': {'low': 0.25, 'high': 4.0, 'log': True}}, 'sampler': {'name': 'random', 'seed': 0}, "
        f"'budget': {{'n_trials': 4}}}}), storage_url='sqlite:///{work / 'real.db'}', "
        f"artifacts_dir='{work / 'artifacts'}')"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", code], env=env, cwd=work, check=True, capture_output=True, timeout=600)


def measure(tree: Path, work: Path, url: str, repeat: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = {}
    for name, (cmd, until) in commands(work, url).items():
        result[name] = statistics.median(timed(cmd, env, work, until) for _ in range(repeat))
        print(f"  {name:<22} {result[name]:6.2f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-tree", type=Path, help="an older checkout to time the same commands on")
    parser.add_argument("--out", type=Path, default=RESULTS / "startup_cpu.json")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from tuner.testing import synthetic_study

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'tuner.db'}"
        synthetic_study(url, name="bench", n_trials=20)
        real_study(work)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        optuna_s = statistics.median(
            timed([sys.executable, "-c", "import optuna"], env, work) for _ in range(args.repeat)
        )
        print(f"python -c 'import optuna': {optuna_s:.2f} s (the baseline)")
        load = f"import optuna; optuna.load_study(study_name='bench', storage='{url}')"
        load_s = statistics.median(timed([sys.executable, "-c", load], env, work) for _ in range(args.repeat))
        print(f"python -c 'import optuna; optuna.load_study(...)': {load_s:.2f} s (the floor of reading a study)")
        print("this tree:")
        now = measure(REPO, work, url, args.repeat)
        before = None
        if args.baseline_tree:
            print(f"baseline tree {args.baseline_tree}:")
            before = measure(args.baseline_tree, work, url, args.repeat)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "import_optuna_s": optuna_s,
        "seconds": now,
        "ratio_to_import_optuna": {k: v / optuna_s for k, v in now.items()},
        "optuna_load_study_s": load_s,
        "ratio_to_optuna_load_study": {k: v / load_s for k, v in now.items()},
        "goal_ratio": 1.5,
        "report_with_views_over_status": now["report_real_with_views"] / now["status_real"],
    }
    if before is not None:
        report["baseline_tree"] = str(args.baseline_tree)
        report["baseline_seconds"] = before
        report["baseline_ratio_to_import_optuna"] = {k: v / optuna_s for k, v in before.items()}
        report["baseline_ratio_to_optuna_load_study"] = {k: v / load_s for k, v in before.items()}
    print(f"report (with the stored views) / status on a real study: {report['report_with_views_over_status']:.2f}")
    print("ratios to `import optuna`:", {k: round(v, 2) for k, v in report["ratio_to_import_optuna"].items()})
    print("ratios to `optuna.load_study`:", {k: round(v, 2) for k, v in report["ratio_to_optuna_load_study"].items()})
    if before is not None:
        print("baseline ratios:", {k: round(v, 2) for k, v in report["baseline_ratio_to_import_optuna"].items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
