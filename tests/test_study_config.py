import optuna
import pytest
import yaml
from typer.testing import CliRunner

from tuner.cli import app
from tuner.errors import ConfigError
from tuner.search.study_file import Choices, Range, load_study_config, validate_study

runner = CliRunner()


def write(tmp_path, content, name="study.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(content) if not isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
        ({"training": {"epochs": "ten"}}, "training.epochs: Input should be a valid integer"),
        (
            {"training": {"mixed_precision": "fp8"}},
            "training.mixed_precision: must be false, bfloat16 or float16 (got 'fp8')",
        ),
        ({"search": {"max_beta": {"low": 5, "high": 1}}}, "search.max_beta: low (5.0) must be <= high (1.0)"),
        ({"search": {"latent_dim": {"choices": []}}}, "search.latent_dim.choices: List should have at least 1 item"),
        (
            {"search": {"max_beta": {"low": -1, "high": 2}}},
            "search.max_beta.low: Input should be greater than or equal to 0",
        ),
        ({"search": {"latent_dim": 0}}, "search.latent_dim: Input should be greater than or equal to 1"),
        ({"schedule": {"max_beta": -0.5}}, "schedule.max_beta: Input should be greater than or equal to 0"),
        (
            {"data": {"dataset": "cifar"}},
            "data.dataset: Input should be 'mnist', 'fashion_mnist', 'cifar10', 'cifar100', 'npz', 'folder' or 'sprites'",
        ),
        ({"sampler": {"name": "anneal"}}, "sampler.name: Input should be 'tpe', 'random', 'gp' or 'cmaes'"),
        ({"pruner": {"name": "asha"}}, "pruner.name: Input should be 'median'"),
        ({"search": {"dropout": {"low": 0, "high": 1}}}, "search: unknown parameter(s) ['dropout']"),
        (
            {"search": {"max_beta": [1, 2]}},
            "search.max_beta: give a range {low: .., high: ..}, {choices: [..]} or a fixed value",
        ),
        ({"search": {"max_beta": {"low": 1, "hgh": 2}}}, "search.max_beta.hgh: Extra inputs are not permitted"),
        ({"search": {"latent_dim": {"low": 2.5, "high": 8}}}, "search.latent_dim: needs whole numbers"),
        ({"search": {"learning_rate": {"low": 0, "high": 1, "log": True}}}, "a log range needs low > 0"),
        (
            {"budget": {"n_trials": None}},
            "budget: Value error, set n_trials, timeout or both"[len("budget: Value error, ") :],
        ),
        ({"data": {"dataset": "npz"}}, "data: dataset 'npz' needs data.path"),
    ],
)
def test_bad_study_files_exit_2_with_field_messages(tmp_path, content, expected):
    path = write(tmp_path, {"name": "s", **content})
    db = tmp_path / "t.db"
    result = runner.invoke(app, ["run", str(path), "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not db.exists()  # no study (not even a database) is created


def test_every_problem_in_one_line(tmp_path):
    path = write(
        tmp_path, {"name": "s", "bogus": 1, "training": {"epochs": 0}, "search": {"max_beta": {"low": 3, "high": 1}}}
    )
    with pytest.raises(ConfigError) as info:
        load_study_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    problems = message.removeprefix(f"{path}: ").split("; ")
    assert [p.split(":")[0] for p in problems] == ["training.epochs", "search.max_beta", "bogus"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\ntraining: {epochs: 2}\nname: b\n", "line 3: key 'name' is given twice"),
        ("name: a\ntraining:\n  epochs: 2\n  epochs: 3\n", "line 4: key 'epochs' is given twice"),
        ("name: a\ntraining: {epochs: true}\n", "training: epochs: expected a number, got true"),
        ("name: a\nschedule: {max_beta: yes}\n", "schedule: max_beta: expected a number, got true"),
        ("name: a\nsearch: {max_beta: true}\n", "expected a number, got true"),
        (
            "name: a\ntraining: {learning_rate: 1.0e+3}\n",
            "training.learning_rate: Input should be less than or equal to 1",
        ),
        ("name: a\nsampler: {seed: -1}\n", "sampler.seed: Input should be greater than or equal to 0"),
        ("name: a\nsampler: {seed: 99999999999999999999}\n", "sampler.seed: Input should be less than or equal to"),
        ("name: '   '\n", "'   ' is blank"),
        ('name: "a\\nb"\n', "'a\\nb' holds control characters"),
        ('name: "\\e[31mred"\n', "holds control characters"),
        ("name: ../../etc\n", "cannot be a folder name"),
        ("name: a/b\n", "cannot be a folder name"),
        (f"name: {'x' * 101}\n", "is too long: at most 100 characters"),
    ],
)
def test_slips_in_study_files_are_refused_in_one_line(tmp_path, text, expected):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_study_config(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    from tuner.config import read_mapping

    path = tmp_path / "study.yaml"
    path.write_text("base: &b {epochs: 2, batch_size: 64}\nname: a\ntraining:\n  <<: *b\n  epochs: 3\n")
    assert read_mapping(path)["training"] == {"epochs": 3, "batch_size": 64}


def test_names_users_plausibly_give_are_accepted(tmp_path):
    path = tmp_path / "my study.yaml"  # no name: the file's stem
    path.write_text("training: {epochs: 2}\n")
    assert load_study_config(path).name == "my study"
    for name in ("mnist β sweep", "run-2026.11.27", "ÉTUDE_1"):
        path.write_text(f"name: {name}\n")
        assert load_study_config(path).name == name


def test_unreadable_files(tmp_path):
    assert "file not found" in runner.invoke(app, ["run", str(tmp_path / "nope.yaml")]).output
    bad = write(tmp_path, "name: [unclosed", "bad.yaml")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_default_space_and_overrides():
    study = validate_study(
        {
            "name": "s",
            "training": {"epochs": 7},
            "search": {"latent_dim": 16, "schedule": {"choices": ["linear", "cyclical"]}},
        }
    )
    space = study.space()
    assert space["max_beta"] == Range(low=0.05, high=10.0, log=True)
    assert space["anneal_epochs"] == Range(low=0, high=7)
    assert space["latent_dim"] == 16  # fixed
    assert isinstance(space["schedule"], Choices)


@pytest.mark.parametrize(
    "path",
    ["studies/quickstart.yaml", "studies/mnist.yaml", "studies/fashion_mnist.yaml", "benchmarks/gpu_search.yaml"],
)
def test_shipped_study_files_are_valid_also_as_stored(path):
    from tests.helpers import REPO
    from tuner.search.records import STUDY_CONFIG_ATTR, stored_study_config
    from tuner.search.study import open_study

    study = load_study_config(REPO / path)
    assert study.objective == "elbo" and study.budget.n_trials
    # `tuner worker --study NAME` rebuilds the study from the stored dump, where every field
    # is set: options of other pruners at their defaults must not be refused there.
    for pruner in ("successive_halving", "median", "percentile", "hyperband", "none"):
        variant = study.model_copy(update={"pruner": study.pruner.model_copy(update={"name": pruner})})
        created = open_study(variant, optuna.storages.InMemoryStorage())
        assert STUDY_CONFIG_ATTR in created.user_attrs
        assert stored_study_config(created).pruner.name == pruner


def test_a_relative_data_path_is_the_study_files_neighbour(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "imgs.npz").write_bytes(b"")
    (tmp_path / "here.npz").write_bytes(b"")
    (sub / "s.yaml").write_text("data: {dataset: npz, path: imgs.npz}\n")
    (sub / "t.yaml").write_text("data: {dataset: npz, path: here.npz}\n")
    monkeypatch.chdir(tmp_path)  # run from the parent folder, as `tuner run sub/s.yaml`
    assert load_study_config("sub/s.yaml").data.path == str(sub / "imgs.npz")
    assert load_study_config("sub/t.yaml").data.path == "here.npz"  # found from the working folder: as before


def test_thousands_of_problems_still_make_one_short_line(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("".join(f"k{i}: 0\n" for i in range(5000)))
    with pytest.raises(ConfigError) as info:
        load_study_config(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 2000 and message.endswith("more problem(s)")


def test_a_missing_weights_artifact_is_one_line(tmp_path):
    from tuner.errors import TunerError
    from tuner.search.artifacts import download
    from tuner.storage import artifact_store

    store = artifact_store(f"sqlite:///{tmp_path / 't.db'}", str(tmp_path / "elsewhere"))
    with pytest.raises(TunerError, match="holds no artifact abc; point --artifacts"):
        download(store, "abc", tmp_path / "w.weights.h5")
