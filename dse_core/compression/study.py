"""Study files: TOML validated by pydantic v2 into a frozen :class:`CompressStudy`.

Every key is documented in docs/compression.md. Unknown keys, wrong types and out-of-range
values are user errors naming the file, the dotted key, the value and what was expected.
``overrides`` (``--set key=value`` on the CLI) are applied before validation; a value is read
as a TOML literal when it parses as one (``3``, ``2.5``, ``true``, ``[64, 8]``), else as text.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from dse_core.errors import DseError, read_user_text

__all__ = ["CompressStudy", "load_study", "apply_overrides", "StudyModel", "StudyName",
           "Memory"]


#: a study's name: it names its results file (``<name>.db``) and its rows, so no path
#: separators or control characters
def _study_name(value: str) -> str:
    if re.search(r"[/\\\x00-\x1f\x7f]", value):
        raise ValueError("expected a name without '/', '\\' or control characters")
    return value


StudyName = Annotated[str, Field(max_length=200), AfterValidator(_study_name)]


class StudyModel(BaseModel):
    # inf and nan are not numbers a study can mean: refused at validation, never at run time
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Workload(StudyModel):
    model: str = Field(description="model reference, e.g. lenet5, resnet20, torchvision:NAME")
    dataset: str = Field(description="dataset plugin name, e.g. mnist5k, or NAME:FOLDER "
                         "(imagefolder:photos/)")
    checkpoint: str | None = Field(None, description="trained float checkpoint; else trained "
                                   "and cached")
    weights: str | None = Field(None, description="or a torch state_dict file (the float "
                                "network; nothing pre-trained), or \"random\"")
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    input: str | None = Field(None, description="C x H x W the dataset's images are resized to")

    @model_validator(mode="after")
    def _one_network(self) -> Workload:
        if self.weights is not None and self.checkpoint is not None:
            raise ValueError("give workload.weights or workload.checkpoint, not both")
        return self

    def data_options(self) -> dict[str, Any]:
        """The dataset's options, with ``input`` as its ``shape``."""
        return {**self.dataset_options, **({"shape": self.input} if self.input else {})}


class Array(StudyModel):
    rows: int = Field(64, ge=1, le=4096)
    cols: int = Field(64, ge=1, le=4096)
    dataflow: Literal["ws", "os", "is"] = "ws"


class Energy(StudyModel):
    model: str = Field("msb_hamming", description="energy model that guides selection and "
                       "the schedule")
    report_model: str = Field("msb_hamming", description="energy model the report uses")
    calibration_images: int = Field(1024, ge=1)
    characterizer: str = "gate_level"
    pe: str | None = Field(None, description="PE plugin (`dse plugins --kind pe`) the "
                           "characteriser models; default: array")


class Memory(StudyModel):
    """The memory system: buffers, their energy model, clock gating, index storage (in a
    search, space.*_kb and space.index_storage override these)."""

    model: str = "horowitz45"
    options: dict[str, Any] = Field(default_factory=dict)
    buffers_kb: list[int] = Field(default=[64, 64, 64], min_length=3, max_length=3,
                                  description="ifmap, filter, ofmap SRAM in kB")
    clock_gating: Literal["none", "idle", "idle_and_skew"] = "idle_and_skew"
    index_storage: bool = False
    psums: Literal["accumulate", "scalesim"] = Field(
        "accumulate", description="partial sums kept in the ofmap buffer when a tile fits, "
        "or all written to DRAM as SCALE-Sim counts them")

    @field_validator("buffers_kb")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 or v > 1 << 20 for v in value):
            raise ValueError(f"buffers_kb = {value}: expected three sizes in 1..1048576 kB")
        return value


class Compression(StudyModel):
    policy: str = "energy_accuracy"
    policy_options: dict[str, Any] = Field(default_factory=dict)
    scheduler: str = "energy_prioritized"
    scheduler_options: dict[str, Any] = Field(default_factory=dict)
    accuracy_budget_pct: float = Field(2.0, gt=0, lt=100)


class Training(StudyModel):
    float_epochs: int = Field(5, ge=1)
    qat_epochs: float = Field(2.0, ge=0)
    final_epochs: float = Field(2.0, ge=0)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    batch_size: int = Field(64, ge=1)
    tune_images: int = Field(500, ge=1, description="held out of the training split for the "
                             "schedule's accept/revert decisions")
    calibration_batches: int = Field(8, ge=1)
    device: str = "auto"
    distill_weight: float = Field(0.0, ge=0, le=1, description="weight of distillation from "
                                  "the int8 baseline in the schedule's fine-tunes (0: none)")
    distill_temperature: float = Field(4.0, gt=0)


class CompressStudy(StudyModel):
    name: StudyName = ""
    seed: int = Field(0, ge=0, lt=2**31, description="random seed (0 .. 2^31 - 1)")
    workload: Workload
    array: Array = Array()
    energy: Energy = Energy()
    memory: Memory = Memory()
    compression: Compression = Compression()
    training: Training = Training()


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value, else JSON, else the string (as ``-o`` reads them)."""
    import json

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(doc: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``key.sub=value`` strings applied to a copy of the raw document."""
    import copy

    doc = copy.deepcopy(doc)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DseError(f"--set {item!r}: expected key=value, e.g. array.rows=32")
        node = doc
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise DseError(f"--set {item!r}: {part} is not a table")
            node = child
        node[parts[-1]] = parse_value(value.strip())
    return doc


def format_pydantic_error(source: str, exc: PydanticValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {loc!r}"
    if err["type"] == "missing":
        return f"{source}: {loc}: required key missing"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    message = err["msg"].removeprefix("Value error, ")  # our validators say what they expect
    return f"{source}: {loc} = {err.get('input')!r}: {message[:1].lower()}{message[1:]}{more}"


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = read_user_text(path, "study file")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DseError(f"{path}: not valid TOML: {exc}") from exc


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> CompressStudy:
    """Read and validate a ``dse compress`` study file."""
    doc = apply_overrides(read_toml(path), overrides)
    try:
        study = CompressStudy.model_validate(doc)
    except PydanticValidationError as exc:
        raise DseError(format_pydantic_error(str(path), exc)) from exc
    if not study.name:
        study = study.model_copy(update={"name": Path(path).stem})
    return study
