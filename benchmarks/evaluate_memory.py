"""Peak memory of `tuner evaluate --k 5000` on 1,000 test images, before and after the memory
bound: goal ≤ 2 GB after, the same NLL to 0.01 nat.

"Before" runs the evaluation module of the commit before the bound (``BEFORE``, e9a60cb:
``max_rows=65536``, no bound) on the same saved model; "after" runs today's ``tuner evaluate``
with its default ``--max-memory``. Each runs in its own process, whose peak RSS is read with
``getrusage(RUSAGE_CHILDREN)`` by a small wrapper process.

    python benchmarks/evaluate_memory.py            # ~50 minutes on 2 CPU cores (k = 5000, 1,000 images)
    python benchmarks/evaluate_memory.py --quick    # ~1 minute: k = 200 on 100 images
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, write

BEFORE = "e9a60cb"  # the last commit whose tuner/vae/evaluation.py had no memory bound

WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""

OLD_EVALUATE = """
import json, sys
sys.path.insert(0, {folder!r})
from tuner.vae.backend import load_keras
load_keras()
import old_evaluation
from tuner.vae.saving import load_run
_, model, splits = load_run({run!r})
result = old_evaluation.evaluate(model, splits.test[:{n}], split="test", k={k})
open({out!r}, "w").write(json.dumps(result.to_dict()))
"""


def measure(command: list[str]) -> tuple[float, float]:
    """(peak RSS in GB, seconds) of ``command`` run in a child process."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *command], cwd=REPO, capture_output=True, text=True, env=os.environ
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    kb = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
    return kb / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--n", type=int, default=1000, help="test images")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of the scored model")
    parser.add_argument("--quick", action="store_true", help="a smoke test: k = 200, 100 images, 1 epoch")
    parser.add_argument("--check-bound", action="store_true", help="also evaluate under a 4 GB bound (same NLL?)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    k, n, epochs, n_train = args.k, args.n, args.epochs, 10_000
    if args.quick:
        k, n, epochs, n_train = 200, 100, 1, 1000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "config.yaml"
        config.write_text(
            f"data: {{dataset: mnist, dynamic_binarization: true, n_train: {n_train}}}\n"
            "schedule: {name: constant, max_beta: 1.0}\n"
            f"training: {{epochs: {epochs}, batch_size: 128}}\n"
        )
        run = folder / "run"
        tuner = [sys.executable, "-m", "tuner"]
        subprocess.run([*tuner, "train", str(config), "--out", str(run)], cwd=REPO, check=True, capture_output=True)
        old = subprocess.run(
            ["git", "show", f"{BEFORE}:tuner/vae/evaluation.py"], cwd=REPO, check=True, capture_output=True, text=True
        )
        (folder / "old_evaluation.py").write_text(old.stdout)
        after_json, before_json = folder / "after.json", folder / "before.json"
        after_cmd = [*tuner, "evaluate", str(run), "--k", str(k), "--n", str(n), "--json", str(after_json)]
        after_gb, after_s = measure(after_cmd)
        # The same code under a four times larger bound (other batches): the bound itself
        # must not change the result. Before vs after differ by Monte-Carlo noise only, since
        # the old module drew its samples from another random stream. A third full
        # evaluation: on by default only with --quick.
        other = None
        if args.check_bound or args.quick:
            other_json = folder / "other_bound.json"
            other_cmd = [*tuner, "evaluate", str(run), "--k", str(k), "--n", str(n), "--json", str(other_json)]
            other_gb, _ = measure([*other_cmd, "--max-memory", "4"])
            other = {"max_memory_gb": 4, "peak_rss_gb": other_gb, "nll": json.loads(other_json.read_text())["nll_iwae"]}
        script = OLD_EVALUATE.format(folder=str(folder), run=str(run), n=n, k=k, out=str(before_json))
        before_gb, before_s = measure([sys.executable, "-c", script])
        after, before = json.loads(after_json.read_text()), json.loads(before_json.read_text())
    result = {
        "peak_rss_gb": {"before": before_gb, "after": after_gb},
        "nll": {"before": before["nll_iwae"], "after": after["nll_iwae"]},
        "nll_difference": after["nll_iwae"] - before["nll_iwae"],
        "other_bound": other,
        "nll_difference_vs_other_bound": after["nll_iwae"] - other["nll"] if other else None,
        "seconds": {"before": before_s, "after": after_s},
        "k": k,
        "n_images": n,
        "likelihood": after["likelihood"],
        "quick": args.quick,
        "before_commit": BEFORE,
    }
    default_out = (
        REPO / "benchmarks" / "results" / ("evaluate_memory_quick.json" if args.quick else "evaluate_memory.json")
    )
    write(result, args.out or str(default_out))


if __name__ == "__main__":
    main()
