"""The training configuration: one VAE, one β schedule, one optimizer, validated in one place.

A study samples values into this object; ``tuner train`` reads it from YAML/JSON; ``tuner
export`` writes it. Everything downstream receives the validated :class:`TrainConfig`.

Plain data: this module imports no deep-learning backend, so validating or writing a file
is instant. What the sections *build* (datasets, β schedules, models) lives in
:mod:`tuner.vae`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuner.errors import ConfigError


class Section(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


class DataConfig(Section):
    dataset: Literal["mnist", "fashion_mnist", "npz", "folder"] = "mnist"
    path: str | None = Field(None, description="file or folder; for mnist/fashion_mnist a folder holding <name>.npz")
    n_train: int | None = Field(None, gt=0)
    n_val: int | None = Field(None, gt=0)
    dynamic_binarization: bool = False
    size: list[int] | None = Field(None, min_length=2, max_length=2, description="[height, width] to resize a folder")
    color: Literal["grayscale", "rgb"] = "grayscale"
    val_fraction: float = Field(1 / 6, gt=0, lt=1)
    split_seed: int = 0

    @model_validator(mode="after")
    def _path_needed(self) -> DataConfig:
        if self.dataset in ("npz", "folder") and not self.path:
            raise ValueError(f"dataset {self.dataset!r} needs data.path")
        return self


class ModelConfig(Section):
    latent_dim: int = Field(16, ge=1, le=4096)
    filters: list[int] = Field([32, 64], min_length=1, description="encoder conv widths (decoder mirrors them)")


class ScheduleConfig(Section):
    """β schedule with lengths in epochs (converted to optimizer steps at training time)."""

    name: Literal["constant", "linear", "cyclical", "sigmoid"] = "linear"
    max_beta: float = Field(1.0, ge=0)
    anneal_epochs: float = Field(0.0, ge=0, description="0 = no annealing (constant beta)")
    beta_start: float = Field(0.0, ge=0)
    n_cycles: int = Field(4, ge=1)
    ratio: float = Field(0.5, gt=0, le=1)
    steepness: float = Field(10.0, gt=0)
    free_bits: float = Field(0.0, ge=0, description="KL floor in nats per latent dimension")


class TrainingConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    seed: int = 0
    jit_compile: bool | Literal["auto"] = "auto"
    steps_per_execution: int = Field(1, ge=1)
    fused_steps: bool = Field(
        False,
        description="JAX: run the steps_per_execution steps in one compiled lax.scan instead of Keras's Python loop",
    )
    data_on_device: bool = Field(
        False, description="JAX: keep the training images in accelerator memory and gather each batch there"
    )
    mixed_precision: Literal[False, "bfloat16", "float16"] = Field(
        False,
        description="compute in bfloat16, or in float16 with dynamic loss scaling; variables and loss stay float32",
    )

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _precision(cls, value: Any) -> Any:
        # One line naming the accepted values, instead of pydantic's three literal errors.
        if value not in (False, "bfloat16", "float16"):
            raise ValueError(f"must be false, bfloat16 or float16 (got {value!r})")
        return value


class TrainConfig(Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    training: TrainingConfig = TrainingConfig()
    provenance: dict[str, Any] | None = Field(None, description="where an exported config came from")


_UNION_TAGS = {"range_spec", "choices_spec", "fixed_value", "bool", "int", "float", "str"}


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, ``field: message``."""
    lines = []
    for err in exc.errors():
        # Drop pydantic's union-member tags so the path is the user's own keys.
        parts = [str(p) for p in err["loc"] if str(p) not in _UNION_TAGS and not str(p).startswith("function-")]
        field = ".".join(parts) or "(file)"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {field}: {message}")
    return "\n".join(lines)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict, with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        text = path.read_text()
        content = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})".replace("\n", " ")
        ) from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return content


def validate(model: type[BaseModel], content: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(content)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_train_config(path: str | Path) -> TrainConfig:
    return validate(TrainConfig, read_mapping(path), str(path))


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write as YAML, or JSON when the name ends in .json."""
    path = Path(path)
    content = config.model_dump(mode="json", exclude_none=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(content, indent=2) + "\n")
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False))
