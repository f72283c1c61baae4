"""The training configuration: one VAE, one β schedule, one optimizer, validated in one place.

A study samples values into this object; ``tuner train`` reads it from YAML/JSON; ``tuner
export`` writes it. Everything downstream receives the validated :class:`TrainConfig`.

Plain data: this module imports no deep-learning backend, so validating or writing a file
is instant. What the sections *build* (datasets, β schedules, models) lives in
:mod:`tuner.vae`.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuner.errors import ConfigError

# Bounds on what can train on any machine: a value past them is a typo, not a plan.
MAX_EPOCHS = 100_000
MAX_WIDTH = 4096  # latent units, conv filters, image side in pixels
MAX_BATCH = 65_536


class Section(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default. NaN and ±inf
    # are refused everywhere: no number of this project means anything infinite.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        # pydantic reads `epochs: true` as 1 and `max_beta: yes` as 1.0; in a YAML file that
        # is a slip (`yes`, `on` and `true` are all booleans there), never a number.
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value, annotation = data.get(name), field.annotation
                if isinstance(value, list) and typing.get_origin(_without_none(annotation)) is list:
                    value, annotation = next((v for v in value if isinstance(v, bool)), None), _item_type(annotation)
                if isinstance(value, bool) and _wants_number(annotation):
                    raise ValueError(f"{name}: expected a number, got {str(value).lower()}")
        return data


def _without_none(annotation: Any) -> Any:
    members = [m for m in typing.get_args(annotation) if m is not type(None)]
    return members[0] if typing.get_origin(annotation) in (Union, UnionType) and len(members) == 1 else annotation


def _item_type(annotation: Any) -> Any:
    """``int`` for ``list[Annotated[int, ...]] | None``."""
    item = typing.get_args(_without_none(annotation))[0]
    return typing.get_args(item)[0] if typing.get_origin(item) is Annotated else item


def _wants_number(annotation: Any) -> bool:
    """Whether a field of this type takes a number and not a boolean (``int | Literal["auto"]``
    does; ``bool | Literal["auto"]`` and ``Literal[False, "bfloat16"]`` do not)."""
    members = typing.get_args(annotation) if typing.get_origin(annotation) is not None else (annotation,)
    if typing.get_origin(annotation) is Literal:
        return False
    if bool in members or any(
        typing.get_origin(m) is Literal and any(isinstance(a, bool) for a in typing.get_args(m)) for m in members
    ):
        return False
    return any(m in (int, float) for m in members)


class SpritesConfig(Section):
    """``dataset: sprites``: binary dSprites-style images generated on the spot, every
    combination of shape × scale × orientation × x × y (dSprites itself: 3 × 6 × 40 × 32 × 32
    at 64×64). The factor of each image is known, for disentanglement scores."""

    shapes: int = Field(3, ge=1, le=3, description="square, ellipse, heart: the first this many")
    scales: int = Field(4, ge=1, le=64, description="sizes from 0.5 to 1 of the largest")
    orientations: int = Field(8, ge=1, le=360, description="rotations evenly spaced over a full turn")
    positions: int = Field(16, ge=1, le=MAX_WIDTH, description="x and y positions each, evenly spaced")
    image_size: int = Field(64, ge=16, le=512, description="side of the square images, pixels")
    samples: int | None = Field(
        None, ge=1, le=100_000_000, description="draw this many combinations (with seed) instead of all"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="the draw of samples")


class DataConfig(Section):
    """Where the images come from. ``path`` depends on ``dataset`` (see :mod:`tuner.vae.data`):
    mnist / fashion_mnist / cifar10 / cifar100: a copy of Keras's ``<name>.npz`` or its folder
    (default: the ``TUNER_DATA_DIR`` folder, else a download; CIFAR also reads the folder
    extracted from Keras's download, e.g. ``cifar-10-batches-py``); npz: the .npz file (with
    ``factors`` when its factors of variation are known); folder: a folder of images, resized
    to ``size`` = [height, width]; sprites: generated images with known factors (``sprites``)."""

    dataset: Literal["mnist", "fashion_mnist", "cifar10", "cifar100", "npz", "folder", "sprites"] = "mnist"
    path: str | None = Field(
        None,
        description="npz: the .npz file; folder: the image folder; mnist/fashion_mnist/cifar10/cifar100: a copy "
        "of <name>.npz (keras.datasets layout) or its folder",
    )
    n_train: int | None = Field(None, gt=0, le=100_000_000)
    n_val: int | None = Field(None, gt=0, le=100_000_000)
    dynamic_binarization: bool = False
    size: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] | None = Field(
        None, min_length=2, max_length=2, description="[height, width] to resize a folder"
    )
    color: Literal["auto", "grayscale", "rgb"] = Field(
        "auto", description="folders: auto loads RGB images as RGB and grey ones as grey"
    )
    val_fraction: float = Field(1 / 6, gt=0, lt=1)
    split_seed: int = 0
    sprites: SpritesConfig | None = Field(None, description="dataset sprites: the grid to generate")

    @field_validator("path")
    @classmethod
    def _path_text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty; remove it, or give the file or folder of the data")
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL character; give the path of a file or folder")
        return value

    @field_validator("size", mode="before")
    @classmethod
    def _size_pair(cls, value: Any) -> Any:
        # One line with the fix instead of pydantic's "Input should be a valid list".
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            example = f"[{value}, {value}]" if isinstance(value, int) else "[28, 28]"
            raise ValueError(f"must be [height, width], e.g. size: {example} (got {value!r})")
        if isinstance(value, (list, tuple)) and len(value) != 2:
            raise ValueError(f"must be [height, width]: two numbers, got {list(value)!r}")
        return value

    @field_validator("size", "color")
    @classmethod
    def _folder_only(cls, value: Any, info: Any) -> Any:
        # Options that only folders read: on other datasets they would be silently ignored.
        dataset = info.data.get("dataset")
        if dataset not in (None, "folder") and value not in (None, "auto"):
            raise ValueError(f"applies only to dataset 'folder', not {dataset!r}; remove it")
        return value

    @model_validator(mode="after")
    def _path_needed(self) -> DataConfig:
        if self.dataset in ("npz", "folder") and not self.path:
            raise ValueError(f"dataset {self.dataset!r} needs data.path")
        if self.dataset == "sprites" and self.path:
            raise ValueError("dataset 'sprites' is generated and reads no file; remove data.path")
        if self.sprites is not None and self.dataset != "sprites":
            raise ValueError(f"data.sprites applies only to dataset 'sprites', not {self.dataset!r}; remove it")
        return self


class ModelConfig(Section):
    """The VAE's shape. The defaults are plain conv blocks, no dense layer, and ``filters:
    auto``, which is the original conv [32, 64] on 28–32 px images and adds stages for larger
    ones; every other value is a new compiled program."""

    latent_dim: int = Field(16, ge=1, le=MAX_WIDTH)
    filters: Literal["auto"] | list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        "auto",
        description="encoder conv widths, one stride-2 stage each (decoder mirrors them); auto: stages until "
        "the feature map is at most 8 px, widths 32, 64, 128, 256, 256, … (tuner.vae.model.auto_filters)",
    )

    @field_validator("filters")
    @classmethod
    def _filters_length(cls, value: Any) -> Any:
        if isinstance(value, list) and not 1 <= len(value) <= 8:
            raise ValueError(f"must hold 1 to 8 widths, got {len(value)}")
        return value

    builder: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'package.module:function' returning your own (encoder, decoder); see tuner/vae/builders.py",
    )
    block: Literal["plain", "residual", "gated"] = Field(
        "plain", description="conv block: plain ReLU, residual (two convs + skip) or gated (conv × sigmoid(conv))"
    )
    depth: int = Field(1, ge=1, le=8, description="conv blocks per stage (the first one changes the resolution)")
    hidden: int = Field(0, ge=0, le=MAX_WIDTH, description="units of a dense layer before/after the latent; 0: none")
    log_var_clip: list[Annotated[float, Field(ge=-30, le=30)]] | None = Field(
        None, min_length=2, max_length=2, description="[low, high] clip of the posterior log-variance, e.g. [-6, 2]"
    )
    likelihood: Literal[
        "auto",
        "bernoulli",
        "continuous_bernoulli",
        "discretized_logistic",
        "discretized_logistic_rgb",
        "pixelcnn_logistic",
        "pixelcnn_logistic_rgb",
    ] = Field(
        "auto",
        description="p(x|z); auto: bernoulli for binary or dynamically binarized data, discretized_logistic for 8-bit "
        "grey, discretized_logistic_rgb (colour channels coupled) for 8-bit RGB; pixelcnn_logistic(_rgb): each pixel "
        "also read from the pixels before it (tuner/vae/pixel_head.py)",
    )

    @field_validator("log_var_clip")
    @classmethod
    def _clip_order(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and value[0] >= value[1]:
            raise ValueError(f"must be [low, high] with low < high (got {value})")
        return value


CONTROLLERS = {"control": "target_kl", "geco": "target_distortion"}  # β controller family -> its target


class ScheduleConfig(Section):
    """β schedule with lengths in epochs (converted to optimizer steps at training time), or a
    controller that sets β during training from a target (``control``: a KL in nats per image,
    ControlVAE; ``geco``: a reconstruction NLL, GECO); ``max_beta`` is then β's upper bound."""

    name: Literal["constant", "linear", "cyclical", "sigmoid", "control", "geco"] = "linear"
    max_beta: float = Field(1.0, ge=0, le=10_000)
    target_kl: float | None = Field(None, gt=0, le=100_000, description="control: the KL to hold, nats per image")
    target_distortion: float | None = Field(
        None, gt=0, le=10_000_000, description="geco: the reconstruction NLL to reach, nats per distortion_per"
    )
    distortion_per: Literal["image", "pixel"] = Field("image", description="geco: target_distortion per image or pixel")
    min_beta: float = Field(
        0.0, ge=0, le=10_000, description="control, geco: β's lower bound (geco: at least 1e-4, as it scales β)"
    )
    # Shao et al.'s image-generation code: Kp 0.001, Ki 0.001 (their text models: 0.01, 0.0001).
    kp: float = Field(0.001, ge=0, le=1_000, description="control: proportional gain")
    ki: float = Field(0.001, gt=0, le=1_000, description="control: integral gain per step and nat of KL error")
    relative_error: bool = Field(
        False,
        description="control: read the error as a fraction of target_kl, (K − KL)/K, so that one pair of gains "
        "fits targets of any size (kp, ki are then per unit of that fraction)",
    )
    geco_rate: float = Field(0.1, gt=0, le=100, description="geco: step of log β per step and unit of constraint")
    geco_decay: float = Field(0.99, ge=0, lt=1, description="geco: moving-average decay of the constraint")
    # int | float: a whole number sampled by a study stays an integer in exported files.
    anneal_epochs: int | float = Field(0, ge=0, le=MAX_EPOCHS, description="0 = no annealing (constant beta)")
    beta_start: float = Field(
        0.0, ge=0, le=10_000, description="linear, sigmoid: β at step 0; geco: β until the law engages (0: 1)"
    )
    n_cycles: int = Field(4, ge=1, le=10_000)
    ratio: float = Field(0.5, gt=0, le=1)
    steepness: float = Field(10.0, gt=0, le=1_000)
    free_bits: float = Field(0.0, ge=0, le=1_000, description="KL floor in nats per latent dimension")

    # A study file may leave a controller's target to its search section (see study_file.py).
    _target_required: typing.ClassVar[bool] = True

    @model_validator(mode="after")
    def _controller_settings(self) -> ScheduleConfig:
        target = CONTROLLERS.get(self.name)
        if target and self._target_required and getattr(self, target) is None:
            example = "target_kl: 15 (nats per image)" if target == "target_kl" else "target_distortion: 90"
            raise ValueError(f"name {self.name} needs {target}, e.g. {example}")
        if target and self.min_beta > self.max_beta:
            raise ValueError(f"min_beta ({self.min_beta}) must be <= max_beta ({self.max_beta}), β's bounds")
        return self


class TrainingConfig(Section):
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] | Literal["auto"] = Field(
        "auto",
        description="images per step; auto: 128, or less on a small training set so that an epoch has at least "
        "25 steps (a power of two, at least 16; tuner.vae.batches.auto_batch_size)",
    )
    optimizer: Literal["adam", "rmsprop"] = "adam"
    # Adam and RMSprop diverge far below 100; a larger value is a typo (1e-3 written as 1e3).
    learning_rate: float = Field(1e-3, gt=0, le=100.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    lr_schedule: Literal["constant", "cosine", "step_decay"] = "constant"
    lr_warmup_epochs: float = Field(0.0, ge=0, le=MAX_EPOCHS, description="cosine: linear warm-up length")
    lr_min_ratio: float = Field(0.0, ge=0, le=1, description="cosine: final learning rate / learning_rate")
    lr_stage_epochs: float = Field(1.0, gt=0, le=MAX_EPOCHS, description="step_decay: length of the first stage")
    lr_stage_growth: float = Field(3.0, ge=1, le=100, description="step_decay: each stage this many times longer")
    lr_decay: float = Field(10 ** (-1 / 7), gt=0, le=1, description="step_decay: factor per stage (Burda et al.)")
    patience: int | None = Field(
        None,
        ge=1,
        le=MAX_EPOCHS,
        description="stop after this many epochs without a better val ELBO; best weights kept",
    )
    objective: Literal["elbo", "iwae"] = Field(
        "elbo", description="training loss: the β-ELBO, or the importance-weighted bound with iwae_k samples"
    )
    iwae_k: int = Field(1, ge=1, le=5000, description="importance samples of the iwae objective")
    jit_compile: bool | Literal["auto"] = "auto"
    steps_per_execution: int = Field(1, ge=1, le=10_000)
    fused_steps: bool | Literal["auto"] = Field(
        "auto",
        description="JAX: run the steps_per_execution steps in one compiled lax.scan instead of Keras's Python loop; "
        "auto: on a GPU or TPU (1.54x the images/s at batch 128 on an H200), off on a CPU (2-3x slower there)",
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

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        if self.training.lr_schedule == "cosine" and self.training.lr_warmup_epochs >= self.training.epochs:
            raise ValueError(
                f"training.lr_warmup_epochs ({self.training.lr_warmup_epochs}) must be shorter than training.epochs "
                f"({self.training.epochs})"
            )
        if self.schedule.name != "constant" and self.schedule.anneal_epochs > self.training.epochs:
            raise ValueError(
                f"schedule.anneal_epochs ({self.schedule.anneal_epochs}) is longer than training.epochs "
                f"({self.training.epochs}); β would never reach max_beta. Shorten it or train longer"
            )
        return self


_UNION_TAGS = {"range_spec", "choices_spec", "fixed_value", "bool", "int", "float", "str"}


# pydantic's messages for "this value is not of that member's type": when a value fails
# every member of a union, only the member that fits the value says something useful.
_TYPE_MISMATCH = ("bool_type", "bool_parsing", "string_type", "int_type", "int_parsing", "int_from_float", "float_type")


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line, ``source: field: message`` for each field with a problem, joined by "; "."""
    by_field: dict[str, list[tuple[str, str]]] = {}
    for err in exc.errors():
        # Drop pydantic's union-member tags so the path is the user's own keys.
        parts = [str(p) for p in err["loc"] if not _is_union_tag(str(p))]
        field = ".".join(parts) or "(file)"
        by_field.setdefault(field, []).append((err["type"], err["msg"].removeprefix("Value error, ")))
    problems = []
    for field, found in by_field.items():
        specific = [msg for kind, msg in found if kind not in _TYPE_MISMATCH and kind != "literal_error"]
        literal = [msg for kind, msg in found if kind == "literal_error"]
        others = [msg for kind, msg in found if kind != "literal_error"]
        if specific:
            text = specific[0]
        elif others and literal:  # e.g. int | Literal["auto"] given "big": name both
            text = f"{others[0]}, or {literal[0].removeprefix('Input should be ')}"
        else:
            text = found[0][1]
        problems.append(f"{field}: {text}")
    return one_line(source, problems)


def _is_union_tag(part: str) -> bool:
    """pydantic's names for the members of a union in an error's path (not the user's keys)."""
    return part in _UNION_TAGS or part.startswith(("function-", "literal[", "constrained-"))


MAX_PROBLEMS = 5  # a file with thousands of unknown keys gets a readable line, not megabytes


def one_line(source: str, problems: list[str]) -> str:
    """``source: problem; problem …``: every error of this project is a single line, and a
    short one (the first few problems, each cut at 300 characters)."""
    shown = [p.replace("\n", " ")[:300] for p in problems[:MAX_PROBLEMS]]
    more = f"; and {len(problems) - MAX_PROBLEMS} more problem(s)" if len(problems) > MAX_PROBLEMS else ""
    return f"{source}: " + "; ".join(shown) + more


class DuplicateKey(ValueError):
    """A key given twice in one mapping: YAML and JSON readers would keep the last silently."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # A merge key (`<<: *defaults`) may be overridden by the mapping's own keys.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise DuplicateKey(f"line {key_node.start_mark.line + 1}: key {key_node.value!r} is given twice")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise DuplicateKey(f"key {key!r} is given twice in one object")
    return dict(pairs)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict, with one-line errors naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give a YAML or JSON file")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path}: not a regular file (a device, pipe or socket); give a YAML or JSON file")
    if not path.is_file():
        where = "" if path.is_absolute() else f" in {Path.cwd()} (a relative path is read from the current folder)"
        raise ConfigError(f"{path}: file not found{where}")
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; give a {kind} file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file; give a {kind} file")
    try:
        content = json.loads(text, object_pairs_hook=_unique_keys) if path.suffix == ".json" else _load_yaml(text)
    except DuplicateKey as exc:
        raise ConfigError(f"{path}: {exc}; keep one of them") from None
    except (yaml.YAMLError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid {kind} ({exc})".replace("\n", " ")) from None
    if content is None:
        # An empty file would otherwise silently mean "every default".
        raise ConfigError(f"{path}: the file is empty; write at least one section (see studies/quickstart.yaml)")
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return content


def validate(model: type[BaseModel], content: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(content)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


# Sections only a study file has: a training config holding one was given to the wrong command.
STUDY_ONLY = {"name", "search", "sampler", "pruner", "budget", "storage", "confirm", "warm_start", "artifacts"}


def resolve_data_path(content: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``content`` with a relative ``data.path`` taken from ``folder`` (the file's own) when it
    exists there, made absolute: a study file and its data travel together, and `tuner worker`
    or `tuner launch` may run from another folder. A path found only from the working folder
    keeps working as before; one found nowhere is left for the data loader to report."""
    data = content.get("data")
    if not isinstance(data, dict):
        return content
    path = data.get("path")
    if not isinstance(path, str) or not path.strip() or Path(path).is_absolute():
        return content
    beside = folder / path
    return {**content, "data": {**data, "path": str(beside.absolute())}} if beside.exists() else content


def load_train_config(path: str | Path) -> TrainConfig:
    content = resolve_data_path(read_mapping(path), Path(path).parent)
    if STUDY_ONLY & set(content) and "provenance" not in content:
        raise ConfigError(
            f"{path}: a study file (it has {', '.join(sorted(STUDY_ONLY & set(content)))}), not a training config; "
            f"run it with `tuner run {path}`, or train its best trial from `tuner export`"
        )
    return validate(TrainConfig, content, str(path))


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write as YAML, or JSON when the name ends in .json."""
    path = Path(path)
    content = config.model_dump(mode="json", exclude_none=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(content, indent=2) + "\n")
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False))
