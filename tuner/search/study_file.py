"""The study file (``studies/*.yaml``): one description of a study, validated in one place.

The ``data``, ``model``, ``schedule`` and ``training`` sections are the fixed parts of every
trial's :class:`~tuner.config.TrainConfig`; ``search`` says which of their fields are sampled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from tuner.config import (
    CONTROLLERS,
    DataConfig,
    ModelConfig,
    ScheduleConfig,
    Section,
    TrainConfig,
    TrainingConfig,
    format_validation_error,
    one_line,
    read_mapping,
    resolve_data_path,
)
from tuner.errors import ConfigError

# Every searchable parameter and the TrainConfig field it sets.
TARGETS: dict[str, tuple[str, str]] = {
    "max_beta": ("schedule", "max_beta"),
    "anneal_epochs": ("schedule", "anneal_epochs"),
    "schedule": ("schedule", "name"),
    "beta_start": ("schedule", "beta_start"),
    "n_cycles": ("schedule", "n_cycles"),
    "ratio": ("schedule", "ratio"),
    "steepness": ("schedule", "steepness"),
    "free_bits": ("schedule", "free_bits"),
    "target_kl": ("schedule", "target_kl"),
    "target_distortion": ("schedule", "target_distortion"),
    "min_beta": ("schedule", "min_beta"),
    "kp": ("schedule", "kp"),
    "ki": ("schedule", "ki"),
    "relative_error": ("schedule", "relative_error"),
    "geco_rate": ("schedule", "geco_rate"),
    "geco_decay": ("schedule", "geco_decay"),
    "latent_dim": ("model", "latent_dim"),
    "learning_rate": ("training", "learning_rate"),
    "batch_size": ("training", "batch_size"),
    "optimizer": ("training", "optimizer"),
    "lr_schedule": ("training", "lr_schedule"),
    "objective": ("training", "objective"),
    "iwae_k": ("training", "iwae_k"),  # after objective: only sampled for objective iwae
    "likelihood": ("model", "likelihood"),
    "block": ("model", "block"),
    "depth": ("model", "depth"),
    "hidden": ("model", "hidden"),
}
INTEGER_PARAMS = {"anneal_epochs", "n_cycles", "latent_dim", "batch_size", "iwae_k", "depth", "hidden"}
# Parameters that only matter for one training objective (sampled conditionally, like FAMILY_PARAMS).
OBJECTIVE_PARAMS = {"iwae_k": {"iwae"}}
# Parameters that only matter for some schedule families (sampled conditionally). A controller
# family's max_beta is β's upper bound, not a β to search: it stays the file's value.
SCHEDULE_FAMILIES = {"constant", "linear", "cyclical", "sigmoid"}
FAMILY_PARAMS = {
    "max_beta": SCHEDULE_FAMILIES,
    "target_kl": {"control"},
    "kp": {"control"},
    "ki": {"control"},
    "relative_error": {"control"},
    "target_distortion": {"geco"},
    "geco_rate": {"geco"},
    "geco_decay": {"geco"},
    "min_beta": {"control", "geco"},
    "n_cycles": {"cyclical"},
    "ratio": {"cyclical"},
    "steepness": {"sigmoid"},
    "beta_start": {"linear", "sigmoid"},
    "anneal_epochs": {"linear", "sigmoid", "cyclical"},
}


class Range(Section):
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("a range cannot have both log and step")
        return self


class Choices(Section):
    choices: list[Union[float, int, str, bool]] = Field(min_length=1)


def _spec_kind(value: Any) -> str | None:
    if isinstance(value, (Range, Choices)):  # when serialising
        return "range_spec" if isinstance(value, Range) else "choices_spec"
    if isinstance(value, dict):
        return "choices_spec" if "choices" in value else "range_spec"
    if isinstance(value, (int, float, str, bool)):
        return "fixed_value"
    return None


# A search entry is a range {low, high[, log, step]}, a list of choices, or a fixed value. The
# callable discriminator makes pydantic report errors for the kind the user meant only.
ParamSpec = Annotated[
    Union[
        Annotated[Range, Tag("range_spec")],
        Annotated[Choices, Tag("choices_spec")],
        Annotated[Union[bool, int, float, str], Tag("fixed_value")],
    ],
    Discriminator(
        _spec_kind,
        custom_error_type="search_entry",
        custom_error_message="give a range {low: .., high: ..}, {choices: [..]} or a fixed value",
    ),
]


class SamplerConfig(Section):
    name: Literal["tpe", "random", "gp", "cmaes"] = "tpe"
    # NumPy seeds are 0 … 2**32 − 1; workers add their index (build_sampler), hence the margin.
    seed: int | None = Field(0, ge=0, le=2**31 - 1)
    n_startup_trials: int = Field(5, ge=0)


# The options each pruner reads; setting another one is refused rather than silently ignored.
PRUNER_OPTIONS = {
    "median": {"warmup_bound", "n_startup_trials", "n_warmup_steps"},
    "percentile": {"warmup_bound", "percentile", "n_startup_trials", "n_warmup_steps"},
    "successive_halving": {"min_resource", "reduction_factor"},
    "hyperband": {"min_resource", "reduction_factor"},
    "none": set(),
}
PRUNER_SPECIFIC = set().union(*PRUNER_OPTIONS.values())


class PrunerConfig(Section):
    # Successive halving at epochs 1, 4, 16, ...: over five seeds it trained half the epochs of
    # an unpruned study where the median pruner trained 0.64 (docs/benchmarks.md).
    name: Literal["median", "percentile", "successive_halving", "hyperband", "none"] = "successive_halving"
    schedule_aware: bool = Field(True, description="judge a trial still warming up beta only against its phase peers")
    grace_epochs: int = Field(1, ge=0, description="epochs after the warm-up ends before pruning may start")
    warmup_bound: bool = Field(
        False, description="judge a warm-up without phase peers by its ELBO without KL (-val_recon), an upper bound"
    )
    percentile: float = Field(
        50.0, gt=0, le=100, description="percentile: keep trials in the best this-many percent at each epoch"
    )
    n_startup_trials: int = Field(3, ge=0)
    n_warmup_steps: int = Field(0, ge=0)
    min_resource: int | Literal["auto"] = Field(1, description="epoch of the first rung, or auto")
    reduction_factor: int | None = Field(
        None, ge=2, description="rung ratio; default Optuna's: 4 for successive_halving, 3 for hyperband"
    )

    @field_validator("min_resource")
    @classmethod
    def _positive_rung(cls, value: int | str) -> int | str:
        if value != "auto" and int(value) < 1:
            raise ValueError(f"must be at least 1 (the epoch of the first rung) or auto, got {value}")
        return value

    @model_validator(mode="after")
    def _options_of_this_pruner(self) -> PrunerConfig:
        # Silently ignored otherwise: a user who sets it expects it to act. An option at its
        # default passes: a stored study config holds every field (records.stored_study_config).
        unused = sorted(
            field
            for field in (self.model_fields_set & PRUNER_SPECIFIC) - PRUNER_OPTIONS[self.name]
            if getattr(self, field) != type(self).model_fields[field].default
        )
        if unused:
            users = sorted(name for name, options in PRUNER_OPTIONS.items() if unused[0] in options)
            default = "" if "name" in self.model_fields_set else " (the default)"
            raise ValueError(
                f"{unused[0]} applies to name: {' or '.join(users)}, not {self.name}{default};"
                " remove it or set pruner.name"
            )
        return self


class BudgetConfig(Section):
    n_trials: int | None = Field(20, ge=1, le=1_000_000)
    timeout: float | None = Field(None, gt=0, description="seconds")
    max_consecutive_failures: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _some_budget(self) -> BudgetConfig:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("set n_trials, timeout or both")
        return self


class ArtifactsConfig(Section):
    keep_weights: int | None = Field(None, ge=1, description="keep the weights of the best N trials only")
    path: str | None = Field(None, description="artifact folder; default beside the storage")


class ConfirmConfig(Section):
    """After the search, re-train the ``top`` trials with ``seeds`` more seeds each, so that the
    exported winner is the best mean, not a lucky draw."""

    top: int = Field(3, ge=1, le=20)
    seeds: int = Field(2, ge=1, le=10)


class WarmStartConfig(Section):
    """Start from the ``top`` completed trials of an earlier study in the same storage."""

    study: str = Field(min_length=1)
    top: int = Field(3, ge=1, le=100)


# Study names become folder names (logs, refit runs) and are printed in status lines: no
# control characters, no slashes, no leading dot or space, so that no name can climb out of a
# folder or hide in a terminal. Spaces and other letters are fine.
MAX_NAME = 100


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a study, or None."""
    shown = repr(name) if len(name) <= 40 else repr(name[:37]) + "..."  # repr escapes control characters
    if not name.strip():
        return f"{shown} is blank; give the study a name, e.g. mnist_beta"
    if len(name) > MAX_NAME:
        return f"{shown} is too long: at most {MAX_NAME} characters"
    if not name.isprintable():
        return f"{shown} holds control characters; use letters, digits, spaces, '.', '_' and '-'"
    if "/" in name or "\\" in name or name.startswith((".", " ")) or name.endswith(" "):
        return f"{shown} cannot be a folder name (a slash, or a leading dot or space); e.g. mnist_beta"
    return None


def check_study_name(name: str, option: str = "name") -> str:
    """``name`` if it can name a study; ConfigError naming ``option`` otherwise."""
    problem = name_problem(name)
    if problem:
        raise ConfigError(f"{option}: {problem}")
    return name


class StudyScheduleConfig(ScheduleConfig):
    """A study file's ``schedule`` section: a controller's target may come from ``search``
    (checked by :func:`validate_study` instead)."""

    _target_required = False


DISENTANGLEMENT_OBJECTIVES = ("disentanglement", "elbo_and_disentanglement")


class DisentanglementObjective(Section):
    """``objective: {name: disentanglement, metric: mig}``: maximise a disentanglement score
    of the encoder's means on the validation split against the data's known factors (see
    :mod:`tuner.vae.disentanglement`); ``elbo_and_disentanglement``: the Pareto front of the
    val ELBO and that score."""

    name: Literal["disentanglement", "elbo_and_disentanglement"]
    metric: Literal["mig", "dci", "sap"] = Field("mig", description="dci: its disentanglement score")


class StudyConfig(Section):
    name: str = Field(min_length=1)
    storage: str | None = None
    objective: Literal["elbo", "rate_distortion"] | DisentanglementObjective = "elbo"

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_by_name(cls, value: Any) -> Any:
        # `objective: disentanglement` is the mapping with the default metric.
        return {"name": value} if value in DISENTANGLEMENT_OBJECTIVES else value

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    schedule: StudyScheduleConfig = StudyScheduleConfig()
    training: TrainingConfig = TrainingConfig()
    search: dict[str, ParamSpec] = Field(default_factory=dict)
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    budget: BudgetConfig = BudgetConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    enqueue_baseline: bool = Field(True, description="run the common default config as trial 0")
    confirm: ConfirmConfig | None = None
    warm_start: WarmStartConfig | None = None

    @field_validator("name")
    @classmethod
    def _usable_name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("search", mode="before")
    @classmethod
    def _known_params(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(TARGETS))
            if unknown:
                raise ValueError(f"unknown parameter(s) {unknown}; searchable: {sorted(TARGETS)}")
        return value

    def n_trials(self, override: int | None = None) -> int | None:
        """The budget of finished trials: ``override`` (a command-line option) when given."""
        return override if override is not None else self.budget.n_trials

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        if isinstance(self.objective, DisentanglementObjective):
            return ["maximize"] * len(self.metric_names)
        return ["maximize"] if self.objective == "elbo" else ["minimize", "minimize"]

    @property
    def metric_names(self) -> list[str]:
        """The names of a trial's values, in order (Optuna's ``set_metric_names``)."""
        if isinstance(self.objective, DisentanglementObjective):
            metric = self.objective.metric
            return [metric] if self.objective.name == "disentanglement" else ["val_elbo", metric]
        return ["val_elbo"] if self.objective == "elbo" else ["distortion", "rate"]

    @property
    def single_objective(self) -> bool:
        """One value per trial (reported each epoch, prunable); False for a Pareto front."""
        return len(self.directions) == 1

    @property
    def disentanglement_metric(self) -> str | None:
        """mig, dci or sap when the study scores disentanglement, else None."""
        return self.objective.metric if isinstance(self.objective, DisentanglementObjective) else None

    def space(self) -> dict[str, ParamSpec]:
        """The default space merged with the file's: a scalar fixes a parameter."""
        space: dict[str, ParamSpec] = {
            "max_beta": Range(low=0.05, high=10.0, log=True),
            "anneal_epochs": Range(low=0, high=self.training.epochs),
            "latent_dim": Range(low=2, high=128, log=True),
            "learning_rate": Range(low=1e-4, high=3e-3, log=True),
        }
        space.update(self.search)
        return space

    def base_config(self) -> TrainConfig:
        return TrainConfig(data=self.data, model=self.model, schedule=self.schedule, training=self.training)


def with_value(base: TrainConfig, name: str, value: Any) -> dict[str, Any]:
    """``base`` as a dict with parameter ``name`` set to ``value``."""
    content = base.model_dump()
    section, field = TARGETS[name]
    content[section][field] = value
    return content


def _check_space(study: StudyConfig) -> list[str]:
    """Each range end and each choice must make a valid TrainConfig (β ≥ 0, latent ≥ 1, ...)."""
    problems = []
    # Every trial samples anneal_epochs (it is always in the space), so the file's own value
    # never trains: check the other parameters against a neutral one.
    base = study.base_config()
    # Likewise a controller's target that only the search gives: any valid one will do.
    neutral: dict[str, Any] = {"anneal_epochs": 0}
    neutral.update({target: 1.0 for target in CONTROLLERS.values() if getattr(base.schedule, target) is None})
    base = base.model_copy(update={"schedule": base.schedule.model_copy(update=neutral)})
    for name, spec in study.space().items():
        if isinstance(spec, Range):
            if name in INTEGER_PARAMS and (spec.low != int(spec.low) or spec.high != int(spec.high)):
                problems.append(f"search.{name}: needs whole numbers, got low={spec.low}, high={spec.high}")
                continue
            candidates: dict[str, float | int | str | bool] = {"low": spec.low, "high": spec.high}
        elif isinstance(spec, Choices):
            candidates = {f"choices[{i}]": v for i, v in enumerate(spec.choices)}
        else:
            candidates = {"": spec}
        for where, value in candidates.items():
            try:
                TrainConfig.model_validate(with_value(base, name, value))
            except ValidationError as exc:
                message = exc.errors()[0]["msg"].removeprefix("Value error, ")
                label = f"search.{name}" + (f".{where}" if where else "")
                problems.append(f"{label}: {message} (got {value!r})")
    return problems


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study file; every problem is reported as ``file: field: message``.
    A relative ``data.path`` is the study file's neighbour (see :func:`resolve_data_path`)."""
    content = read_mapping(path)
    if "name" not in content and isinstance(content, dict):
        content = {"name": Path(path).stem, **content}
    return validate_study(resolve_data_path(content, Path(path).parent), str(path))


def validate_study(content: dict[str, Any], source: str = "study") -> StudyConfig:
    try:
        study = StudyConfig.model_validate(content)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    problems = _check_space(study) + _check_targets(study)
    if study.sampler.name == "cmaes":
        problems += _need_module("cmaes", "sampler.name: cmaes needs the cmaes package; pip install cmaes")
    if study.sampler.name == "gp":
        problems += _need_module("torch", "sampler.name: gp needs PyTorch and SciPy; pip install torch scipy")
    if study.disentanglement_metric:
        problems += _need_module(
            "sklearn",
            "objective: the disentanglement scores need scikit-learn; pip install 'vae-beta-tuner[disentanglement]'",
        )
    if problems:
        raise ConfigError(one_line(source, problems))
    return study


def _check_targets(study: StudyConfig) -> list[str]:
    """A controller family that trials can take needs its target, fixed or searched."""
    space = study.space()
    spec = space.get("schedule", study.schedule.name)
    families = spec.choices if isinstance(spec, Choices) else [spec]
    problems = []
    examples = {"target_kl": "{low: 5, high: 30}", "target_distortion": "{low: 80, high: 120}"}
    for family, target in CONTROLLERS.items():
        if family in families and getattr(study.schedule, target) is None and target not in space:
            problems.append(
                f"schedule.{target}: name {family} needs {target}; set it in schedule or search it, "
                f"e.g. search: {{{target}: {examples[target]}}}"
            )
    return problems


def _need_module(module: str, message: str) -> list[str]:
    import importlib.util

    return [] if importlib.util.find_spec(module) else [message]
