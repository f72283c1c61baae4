"""Report generation time and HTML size for a study of 500 synthetic trials (ask/tell, no
training), stored in SQLite as a real study would be.

    python benchmarks/report_speed.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import write

from tuner import storage as storage_lib
from tuner.report.html import build_report, write_report
from tuner.testing import synthetic_study


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-trials", type=int, default=500)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/tuner.db"
        t0 = time.perf_counter()
        synthetic_study(storage_lib.open_storage(url), n_trials=args.n_trials, epochs=10)
        create_s = time.perf_counter() - t0
        import optuna

        t0 = time.perf_counter()
        study = optuna.load_study(study_name="synthetic", storage=storage_lib.open_storage(url))
        report = build_report(study, url, with_best=False)
        path = write_report(report, Path(tmp) / "report.html")
        write(
            {
                "n_trials": args.n_trials,
                "create_synthetic_study_s": create_s,
                "report_generation_s": time.perf_counter() - t0,
                "html_mb": path.stat().st_size / 1e6,
                "figures": report.n_figures,
            },
            args.out,
        )


if __name__ == "__main__":
    main()
