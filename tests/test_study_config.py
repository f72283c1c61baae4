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
        ({"data": {"dataset": "cifar"}}, "data.dataset: Input should be 'mnist', 'fashion_mnist', 'npz' or 'folder'"),
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


def test_one_line_per_problem(tmp_path):
    path = write(
        tmp_path, {"name": "s", "bogus": 1, "training": {"epochs": 0}, "search": {"max_beta": {"low": 3, "high": 1}}}
    )
    with pytest.raises(ConfigError) as info:
        load_study_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{path}: ") for line in lines)


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
