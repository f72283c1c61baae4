"""Nothing a user types can hurt: every bad input is refused with one ``error:`` line that
names the field, file or option, a non-zero exit code, no traceback, and nothing stored.

Each row builds its input in a fresh folder and runs the command in-process through
``tuner.cli.main`` (the entry point of the ``tuner`` script). The folder must hold the same
files afterwards, and a database that already holds a study must still hold exactly it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image

from tests.helpers import tiny_study_dict
from tuner.cli import main
from tuner.testing import synthetic_study

Setup = Callable[[Path], list[str]]


def study(tmp: Path, name: str = "bad.yaml", **sections) -> Path:
    """A valid tiny study file with ``sections`` merged in (None removes a section)."""
    content = tiny_study_dict("bad")
    for key, value in sections.items():
        if value is None:
            content.pop(key, None)
        elif isinstance(value, dict) and isinstance(content.get(key), dict):
            content[key] = {**content[key], **value}
        else:
            content[key] = value
    path = tmp / name
    path.write_text(yaml.safe_dump(content))
    return path


def raw_study(text: str | bytes) -> Setup:
    def setup(tmp: Path) -> list[str]:
        path = tmp / "raw.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["run", str(path)]

    return setup


def run_with(**sections) -> Setup:
    return lambda tmp: ["run", str(study(tmp, **sections))]


def npz_data(**arrays: np.ndarray) -> Setup:
    def setup(tmp: Path) -> list[str]:
        np.savez(tmp / "data.npz", allow_pickle=False, **arrays)
        return ["run", str(study(tmp, data={"dataset": "npz", "path": str(tmp / "data.npz"), "n_train": None}))]

    return setup


def folder_data(fill: Callable[[Path], None], **data) -> Setup:
    def setup(tmp: Path) -> list[str]:
        folder = tmp / "images"
        folder.mkdir()
        fill(folder)
        section = {"dataset": "folder", "path": str(folder), "n_train": None, "n_val": None, **data}
        return ["run", str(study(tmp, data=section))]

    return setup


def pngs(sizes: list[tuple[int, int]]) -> Callable[[Path], None]:
    def fill(folder: Path) -> None:
        for i, size in enumerate(sizes):
            Image.new("L", size, i * 7 % 255).save(folder / f"im{i}.png")

    return fill


def text_files(folder: Path) -> None:
    for i in range(5):
        (folder / f"note{i}.txt").write_text("not an image")


def corrupt_png(folder: Path) -> None:
    pngs([(8, 8)] * 6)(folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not the rest of a PNG")


def storage_cmd(url: str, command: str = "status") -> Setup:
    def setup(tmp: Path) -> list[str]:
        (tmp / "afile").write_text("a file, not a folder")
        (tmp / "adir.db").mkdir()
        (tmp / "notadb.db").write_text("hello, I am not SQLite")
        resolved = url.replace("{tmp}", str(tmp))
        if command == "run":
            return ["run", str(study(tmp)), "--storage", resolved]
        return [command, *(["--study", "bad"] if command in ("export", "report") else []), "--storage", resolved]

    return setup


def cli(*args: str) -> Setup:
    def setup(tmp: Path) -> list[str]:
        (tmp / "cfg.yaml").write_text(yaml.safe_dump({"data": {"n_train": 256, "n_val": 128}}))
        (tmp / "run").mkdir()
        return [a.replace("{tmp}", str(tmp)) for a in args]

    return setup


def no_local_mnist(tmp: Path) -> list[str]:
    os.environ.pop("TUNER_DATA_DIR", None)  # restored by the fixture
    return ["run", str(study(tmp))]


u8 = np.uint8
ROWS: list[tuple[str, Setup, int, str]] = [
    # --- study files -------------------------------------------------------------------
    ("empty file", raw_study(""), 2, "empty"),
    ("only a comment", raw_study("# nothing\n"), 2, "empty"),
    ("binary file", raw_study(bytes(range(256)) * 4), 2, "not a text file"),
    ("NUL bytes", raw_study("name: x\n\x00\x00"), 2, "not a text file"),
    ("directory as study file", lambda tmp: ["run", str(tmp)], 2, "is a directory"),
    ("missing study file", lambda tmp: ["run", str(tmp / "nope.yaml")], 2, "file not found"),
    ("invalid YAML", raw_study("name: [unclosed\n"), 2, "not valid YAML"),
    ("top level is a list", raw_study("- a\n- b\n"), 2, "mapping"),
    ("unknown section", run_with(bogus=1), 2, "bogus"),
    ("max_beta inf", run_with(schedule={"max_beta": float("inf")}), 2, "schedule.max_beta"),
    ("fixed search max_beta nan", run_with(search={"max_beta": float("nan")}), 2, "search.max_beta"),
    ("filter of width 0", run_with(model={"filters": [0, 16]}), 2, "model.filters"),
    ("a trillion epochs", run_with(training={"epochs": 10**12}), 2, "training.epochs"),
    ("batch of a billion", run_with(training={"batch_size": 10**9}), 2, "training.batch_size"),
    (
        "batch size a word",
        run_with(training={"batch_size": "big"}),
        2,
        "training.batch_size: Input should be a valid integer, unable to parse string as an integer, or 'auto'",
    ),
    ("anneal range past epochs", run_with(search={"anneal_epochs": {"low": 0, "high": 9}}), 2, "search.anneal_epochs"),
    ("anneal value past epochs", run_with(search={"anneal_epochs": 7}), 2, "search.anneal_epochs"),
    ("latent 0", run_with(search={"latent_dim": 0}), 2, "search.latent_dim"),
    ("log range from 0", run_with(search={"learning_rate": {"low": 0, "high": 1e-3, "log": True}}), 2, "learning_rate"),
    ("unknown search parameter", run_with(search={"gamma": 1.0}), 2, "search"),
    ("percentile without its pruner", run_with(pruner={"name": "median", "percentile": 25}), 2, "percentile applies"),
    ("startup trials of the default pruner", run_with(pruner={"n_startup_trials": 5}), 2, "n_startup_trials applies"),
    (
        "warmup_bound with halving",
        run_with(pruner={"name": "successive_halving", "warmup_bound": True}),
        2,
        "warmup_bound applies",
    ),
    ("first rung at epoch 0", run_with(pruner={"min_resource": 0}), 2, "pruner.min_resource"),
    ("rung factor with median", run_with(pruner={"name": "median", "reduction_factor": 3}), 2, "reduction_factor"),
    ("budget of 0 trials", run_with(budget={"n_trials": 0}), 2, "budget.n_trials"),
    ("infinite timeout", run_with(budget={"n_trials": None, "timeout": float("inf")}), 2, "budget.timeout"),
    ("resize to 0 pixels", run_with(data={"dataset": "folder", "path": ".", "size": [0, 8]}), 2, "data.size"),
    ("npz without path", run_with(data={"dataset": "npz"}), 2, "data.path"),
    ("negative seed", run_with(training={"seed": -1}), 2, "training.seed"),
    ("negative sampler seed", run_with(sampler={"seed": -1}), 2, "sampler.seed"),
    ("sampler seed past NumPy's", run_with(sampler={"seed": 2**64}), 2, "sampler.seed"),
    ("learning rate 1e10", run_with(training={"learning_rate": 1e10}), 2, "training.learning_rate"),
    ("epochs: true", run_with(training={"epochs": True}), 2, "epochs: expected a number"),
    ("a key given twice", raw_study("name: a\ndata: {n_train: 256}\nname: b\n"), 2, "key 'name' is given twice"),
    ("study name with a newline", raw_study('name: "a\\nb"\n'), 2, "name:"),
    ("study name with an escape code", raw_study('name: "\\e[31mred"\n'), 2, "name:"),
    ("study name climbing folders", raw_study("name: ../../etc\n"), 2, "name:"),
    ("blank study name", raw_study("name: '   '\n"), 2, "name:"),
    ("--study-name with a slash", lambda tmp: ["run", str(study(tmp)), "--study-name", "a/b"], 2, "--study-name"),
    ("empty --study-name", lambda tmp: ["run", str(study(tmp)), "--study-name", ""], 2, "--study-name"),
    ("builder not importable", run_with(model={"builder": "nopkg.mod:build"}), 2, "model.builder"),
    ("builder not callable", run_with(model={"builder": "os:sep"}), 2, "model.builder"),
    ("builder of another signature", run_with(model={"builder": "os:getcwd"}), 2, "model.builder"),
    ("warm start from a new storage", run_with(warm_start={"study": "nope"}), 2, "warm_start.study"),
    ("artifacts on a file", lambda tmp: ["run", str(study(tmp)), "--artifacts", str(_a_file(tmp))], 1, "artifacts"),
    (
        "artifacts under a file",
        lambda tmp: ["run", str(study(tmp)), "--artifacts", f"{_a_file(tmp)}/x"],
        1,
        "artifacts",
    ),
    # --- data ----------------------------------------------------------------------------
    ("missing npz", run_with(data={"dataset": "npz", "path": "missing.npz", "n_train": None}), 1, "file not found"),
    ("npz without images", npz_data(labels=np.zeros(10)), 1, "no image array"),
    ("1-D array", npz_data(x=np.zeros(100, dtype=u8)), 1, "shape"),
    ("NaN pixels", npz_data(x=np.full((60, 8, 8), np.nan, dtype=np.float32)), 1, "[0, 1]"),
    ("values above 255", npz_data(x=np.full((60, 8, 8), 300, dtype=np.int16)), 1, "uint8 or float"),
    ("negative floats", npz_data(x=np.full((60, 8, 8), -0.5, dtype=np.float32)), 1, "[0, 1]"),
    ("two channels", npz_data(x=np.zeros((60, 8, 8, 2), dtype=u8)), 1, "shape"),
    ("single image", npz_data(x=np.zeros((1, 8, 8), dtype=u8)), 1, "too few"),
    ("no images at all", npz_data(x=np.zeros((0, 8, 8), dtype=u8)), 1, "shape"),
    ("more n_train than images", npz_data(x=np.zeros((60, 8, 8), dtype=u8)), 1, "data.n_val"),
    ("text file named .npz", lambda tmp: _text_npz(tmp), 1, "not a readable .npz"),
    ("empty folder", folder_data(lambda folder: None), 1, "no PNG or JPEG"),
    ("folder of non-images", folder_data(text_files), 1, "no PNG or JPEG"),
    ("corrupt PNG", folder_data(corrupt_png), 1, "cannot read image"),
    ("mixed image sizes", folder_data(pngs([(8, 8), (9, 9)] * 6)), 1, "different sizes"),
    ("n_train above what exists", folder_data(pngs([(8, 8)] * 60), n_train=1000), 1, "data.n_train"),
    ("no internet, no local MNIST", no_local_mnist, 1, "TUNER_DATA_DIR"),
    # --- storage -------------------------------------------------------------------------
    ("status: database folder missing", storage_cmd("sqlite:///{tmp}/nowhere/tuner.db"), 1, "no database"),
    ("export: database missing", storage_cmd("sqlite:///{tmp}/missing.db", "export"), 1, "no database"),
    ("report: database missing", storage_cmd("sqlite:///{tmp}/missing.db", "report"), 1, "no database"),
    ("dashboard: database missing", storage_cmd("sqlite:///{tmp}/missing.db", "dashboard"), 1, "no database"),
    ("parent is a file", storage_cmd("sqlite:///{tmp}/afile/tuner.db", "run"), 1, "is a file"),
    ("database is a directory", storage_cmd("sqlite:///{tmp}/adir.db", "run"), 1, "is a directory"),
    ("not a database file", storage_cmd("sqlite:///{tmp}/notadb.db"), 1, "not a usable SQLite"),
    ("not a database file (run)", storage_cmd("sqlite:///{tmp}/notadb.db", "run"), 1, "not a usable SQLite"),
    ("journal on a directory", storage_cmd("journal://{tmp}/adir.db", "run"), 1, "is a directory"),
    ("journal missing (status)", storage_cmd("journal://{tmp}/missing.log"), 1, "no journal"),
    ("dashboard on an empty database", lambda tmp: ["dashboard", "--storage", _empty_db(tmp)], 1, "no studies yet"),
    ("non-numeric port", storage_cmd("postgresql+psycopg://u:pw@127.0.0.1:abc/db"), 1, "not usable"),
    ("unknown driver", storage_cmd("nosuchdb://u@h/db"), 1, "not usable"),
    ("study not in storage", lambda tmp: ["export", "--study", "nope", "--storage", REF_URL], 1, "--study"),
    # --- command-line options ------------------------------------------------------------
    ("train --epochs 0", cli("train", "{tmp}/cfg.yaml", "--epochs", "0"), 2, "--epochs"),
    ("train --epochs -1", cli("train", "{tmp}/cfg.yaml", "--epochs", "-1"), 2, "--epochs"),
    ("evaluate --n 0", cli("evaluate", "{tmp}/run", "--n", "0"), 2, "--n"),
    ("evaluate --n -5", cli("evaluate", "{tmp}/run", "--n", "-5"), 2, "--n"),
    ("evaluate --k abc", cli("evaluate", "{tmp}/run", "--k", "abc"), 2, "--k"),
    ("evaluate --split train", cli("evaluate", "{tmp}/run", "--split", "train"), 2, "--split"),
    ("evaluate a folder without a run", cli("evaluate", "{tmp}/run"), 1, "not a training run"),
    ("run --n-trials 0", lambda tmp: ["run", str(study(tmp)), "--n-trials", "0"], 2, "--n-trials"),
    ("run --n-trials -2", lambda tmp: ["run", str(study(tmp)), "--n-trials", "-2"], 2, "--n-trials"),
    ("run --timeout -5", lambda tmp: ["run", str(study(tmp)), "--timeout", "-5"], 2, "--timeout"),
    ("dashboard --port 99999", cli("dashboard", "--port", "99999"), 2, "--port"),
    ("launch --workers 0", lambda tmp: ["launch", str(study(tmp)), "--workers", "0"], 2, "--workers"),
    ("launch --workers 1000", lambda tmp: ["launch", str(study(tmp)), "--workers", "1000"], 2, "would exhaust"),
    ("--backend torch", cli("--backend", "torch", "status"), 2, "--backend"),
    ("worker without a study", cli("worker"), 2, "--study"),
    ("unknown option", cli("status", "--colour"), 2, "--colour"),
    ("run --timeout inf", lambda tmp: ["run", str(study(tmp)), "--timeout", "inf"], 2, "--timeout"),
    (
        "run --n-trials 1e20",
        lambda tmp: ["run", str(study(tmp)), "--n-trials", "99999999999999999999"],
        2,
        "--n-trials",
    ),
    ("evaluate --k a trillion", cli("evaluate", "{tmp}/run", "--k", "999999999999"), 2, "--k"),
    ("launch --gpus a,b", lambda tmp: ["launch", str(study(tmp)), "--workers", "1", "--gpus", "a,b"], 2, "--gpus"),
    ("launch --gpus 0,0", lambda tmp: ["launch", str(study(tmp)), "--workers", "1", "--gpus", "0,0"], 2, "--gpus"),
    ("a device as study file", lambda tmp: ["run", "/dev/null"], 2, "not a regular file"),
    ("emoji codes in a path", lambda tmp: ["run", str(tmp / "a:x:b.yaml")], 2, "a:x:b.yaml"),
    (
        "worker --heartbeat 1e20",
        lambda tmp: ["worker", str(study(tmp)), "--heartbeat", "99999999999999999999"],
        2,
        "--heartbeat",
    ),
    ("dashboard --host ''", cli("dashboard", "--host", ""), 2, "--host"),
    ("storage-proxy --host 999.1.1.1", cli("storage-proxy", "--host", "999.1.1.1"), 2, "--host"),
    (
        "launch --gpus full-width digit",
        lambda tmp: ["launch", str(study(tmp)), "--workers", "1", "--gpus", "\uff10"],
        2,
        "--gpus",
    ),
    (
        "export -o a dangling link",
        lambda tmp: ["export", "--study", "kept", "--storage", REF_URL, "-o", _dangling(tmp)],
        2,
        "--output",
    ),
    ("a study file given to train", lambda tmp: ["train", str(study(tmp))], 2, "tuner run"),
    ("evaluate damaged weights", lambda tmp: ["evaluate", str(_damaged_run(tmp))], 1, "cannot load these weights"),
    # --- where a command writes: checked before the work -------------------------------------
    ("train --out onto a file", cli("train", "{tmp}/cfg.yaml", "--out", "{tmp}/cfg.yaml"), 2, "--out"),
    ("evaluate --json onto a folder", cli("evaluate", "{tmp}/run", "--json", "{tmp}/run"), 2, "--json"),
    (
        "report -o a folder",
        lambda tmp: ["report", "--study", "kept", "--storage", REF_URL, "-o", str(tmp)],
        2,
        "--output",
    ),
    (
        "export -o under a file",
        lambda tmp: ["export", "--study", "kept", "--storage", REF_URL, "-o", f"{_a_file(tmp)}/b.yaml"],
        2,
        "--output",
    ),
    (
        "refit --out onto a file",
        lambda tmp: ["refit", "--study", "kept", "--storage", REF_URL, "--out", str(_a_file(tmp))],
        2,
        "--out",
    ),
]


def _dangling(tmp: Path) -> str:
    (tmp / "link.yaml").symlink_to(tmp / "nowhere" / "b.yaml")
    return str(tmp / "link.yaml")


def _empty_db(tmp: Path) -> str:
    (tmp / "empty.db").write_bytes(b"")
    return f"sqlite:///{tmp / 'empty.db'}"


def _damaged_run(tmp: Path) -> Path:
    run = tmp / "damaged"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"n_train": 256, "n_val": 128}}))
    (run / "model.weights.h5").write_bytes(b"not HDF5" * 100)
    return run


def _a_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("a file, not a folder")
    return tmp / "afile"


def _text_npz(tmp: Path) -> list[str]:
    (tmp / "data.npz").write_text("I am text, not an archive")
    return ["run", str(study(tmp, data={"dataset": "npz", "path": str(tmp / "data.npz"), "n_train": None}))]


REF_URL = ""  # set by the fixture: a database holding one study, which no row may change


@pytest.fixture(scope="module")
def reference_template(tmp_path_factory) -> Path:
    """The reference database, made once: creating Optuna's schema costs most of a second,
    and every row gets a fresh copy."""
    path = tmp_path_factory.mktemp("template") / "ref.db"
    synthetic_study(f"sqlite:///{path}", name="kept", n_trials=3)
    return path


@pytest.fixture
def reference_db(tmp_path_factory, monkeypatch, reference_template):
    global REF_URL
    folder = tmp_path_factory.mktemp("reference")
    shutil.copyfile(reference_template, folder / "ref.db")
    REF_URL = f"sqlite:///{folder / 'ref.db'}"
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    # The CLI sets these with setdefault; make the test own them so they are restored.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(folder / "jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if "TUNER_DATA_DIR" in os.environ:  # set but empty is an error of its own
        monkeypatch.setenv("TUNER_DATA_DIR", os.environ["TUNER_DATA_DIR"])
    else:
        monkeypatch.delenv("TUNER_DATA_DIR", raising=False)
    return REF_URL


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def stored(url: str) -> list[tuple[str, int]]:
    storage = optuna.storages.RDBStorage(url)
    return sorted((s.study_name, len(storage.get_all_trials(s._study_id))) for s in storage.get_all_studies())


@pytest.mark.parametrize("label, setup, exit_code, names", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_refused_in_one_line(label, setup, exit_code, names, tmp_path, monkeypatch, capsys, reference_db):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = setup(work)
    before = snapshot(work)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert exited.value.code == exit_code, (argv, captured.err)
    assert len(errors) == 1 and errors[0].startswith("error: "), captured.err
    assert names in errors[0], errors[0]
    assert "Traceback" not in captured.out + captured.err
    assert snapshot(work) == before, "the refused command created files"
    assert stored(reference_db) == [("kept", 3)]


def test_there_are_at_least_forty_kinds_of_bad_input():
    assert len(ROWS) >= 40


def test_resuming_with_a_changed_study_file_is_refused(tmp_path, monkeypatch, capsys):
    """Trials of one study must be comparable: other data or epochs under the same name are
    refused (one line, the field named), and the stored study is left as it was."""
    from tuner.search.study import open_study
    from tuner.search.study_file import validate_study
    from tuner.storage import open_storage

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    open_study(validate_study(tiny_study_dict("bad")), open_storage(url))
    changes: list[tuple[dict[str, Any], str]] = [
        ({"training": {"epochs": 3}}, "training.epochs"),
        ({"data": {"n_train": 512}}, "data.n_train"),
    ]
    for change, field in changes:
        with pytest.raises(SystemExit) as exited:
            main(["run", str(study(tmp_path, **change)), "--storage", url])
        errors = capsys.readouterr().err.strip().splitlines()
        assert exited.value.code == 2 and len(errors) == 1 and field in errors[0] and "--study-name" in errors[0]
    assert stored(url) == [("bad", 1)]  # the queued baseline only


def test_a_moved_data_file_is_the_same_data_another_file_is_not():
    from tuner.search.study import changed_fields
    from tuner.search.study_file import validate_study

    def config(path: str, **training):
        return validate_study(tiny_study_dict("s", data={"dataset": "npz", "path": path}, training=training))

    assert changed_fields(config("/a/x.npz"), config("/b/x.npz")) == []  # another machine's copy
    assert changed_fields(config("/a/x.npz"), config("/a/y.npz")) == [("data.path", "x.npz", "y.npz")]
    assert [f for f, _, _ in changed_fields(config("/a/x.npz"), config("/a/x.npz", epochs=3))] == ["training.epochs"]
