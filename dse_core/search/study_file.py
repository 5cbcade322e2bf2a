"""Search study files (``dse run``): TOML validated into a frozen :class:`SearchStudy`.

docs/search.md documents every key. Validation happens before anything is created: unknown
keys, wrong types, an empty search space, contradictory bounds are one-line user errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from dse_core.compression.study import (
    Compression,
    Memory,
    StudyModel,
    StudyName,
    Training,
    apply_overrides,
    format_pydantic_error,
    read_toml,
)
from dse_core.errors import DseError

__all__ = ["SearchStudy", "load_search_study", "OBJECTIVES", "SAMPLERS"]

#: objective name -> Optuna direction
OBJECTIVES: dict[str, str] = {
    "energy_pj": "minimize", "mac_energy_pj": "minimize", "array_energy_pj": "minimize",
    "memory_energy_pj": "minimize", "accuracy": "maximize", "accuracy_drop": "minimize",
    "cycles": "minimize", "pe_count": "minimize", "edp": "minimize", "onchip_kb": "minimize",
    "area_mm2": "minimize",
}
SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random", "grid")


class SearchWorkload(StudyModel):
    model: str | None = None
    dataset: str | None = Field(None, description="dataset plugin, or NAME:FOLDER "
                                "(imagefolder:photos/)")
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None
    weights: str | None = Field(None, description="a torch state_dict file, or \"random\" "
                                "(seeded initialisation): nothing trained")
    input: str | None = Field(None, description="C x H x W the dataset's images are resized to")
    batch: int = Field(1, ge=1, le=4096, description="images the array streams per inference")
    topology: str | None = Field(None, description="a SCALE-Sim topology CSV (energy/latency)")

    @model_validator(mode="after")
    def _one_source(self) -> SearchWorkload:
        if (self.model is None) == (self.topology is None):
            raise ValueError("give either workload.model or workload.topology")
        if self.weights is not None and self.checkpoint is not None:
            raise ValueError("give workload.weights or workload.checkpoint, not both")
        if (self.weights or self.input or self.dataset_options) and self.dataset is None:
            raise ValueError("workload.weights, input and dataset_options need "
                             "workload.dataset")
        return self

    def data_options(self) -> dict[str, Any]:
        """The dataset's options, with ``input`` as its ``shape``."""
        return {**self.dataset_options, **({"shape": self.input} if self.input else {})}


class Dimension(StudyModel):
    """Powers of two within [min, max], or an explicit list of values."""

    min: int | None = Field(None, ge=1)
    max: int | None = Field(None, ge=1)
    values: list[int] | None = None

    @model_validator(mode="after")
    def _check(self) -> Dimension:
        if self.values is not None:
            if not self.values or any(v < 1 for v in self.values):
                raise ValueError("values must be a non-empty list of sizes >= 1")
            if self.min is not None or self.max is not None:
                raise ValueError("give min/max or values, not both")
        elif self.min is None or self.max is None:
            raise ValueError("give min and max (powers of two between them) or values")
        elif self.min > self.max:
            raise ValueError(f"min = {self.min} > max = {self.max}")
        elif not self.choices():
            raise ValueError(f"no power of two between {self.min} and {self.max}")
        return self

    def choices(self) -> list[int]:
        if self.values is not None:
            return sorted(set(self.values))
        assert self.min is not None and self.max is not None
        return [1 << k for k in range(0, 16) if self.min <= 1 << k <= self.max]


class Space(StudyModel):
    rows: Dimension = Dimension(min=8, max=128)
    cols: Dimension = Dimension(min=8, max=128)
    dataflow: list[Literal["ws", "os", "is"]] = Field(default=["ws"], min_length=1)
    mapping: list[str] | None = Field(None, min_length=1, description="mapping plugins by "
                                      "name (yours too); default: the shipped {dataflow}_tile")
    compression: bool = Field(False, description="search the scheduler's knobs (needs a "
                              "model and dataset)")
    ifmap_kb: Dimension | None = Field(None, description="ifmap buffer sizes (kB) to search")
    filter_kb: Dimension | None = Field(None, description="filter buffer sizes (kB) to search")
    ofmap_kb: Dimension | None = Field(None, description="ofmap buffer sizes (kB) to search")
    index_storage: list[bool] | None = Field(None, min_length=1, description="search storing "
                                             "compressed weights as codebook indices")
    pe: list[str] | None = Field(None, min_length=1, description="PEs: plugins by name "
                                 "(`dse plugins --kind pe`) or your RTL as FILE.v[:TOP]; "
                                 "default: the characteriser's")

    @field_validator("rows", "cols", "ifmap_kb", "filter_kb", "ofmap_kb", mode="before")
    @classmethod
    def _list_shorthand(cls, value: Any) -> Any:
        return {"values": value} if isinstance(value, list) else value

    @model_validator(mode="after")
    def _one_way_to_name_mappings(self) -> Space:
        if self.mapping is not None and "dataflow" in self.model_fields_set:
            raise ValueError("give space.mapping (mapping plugins by name) or space.dataflow "
                             "(the shipped {dataflow}_tile mappings), not both")
        if self.mapping is not None and len(set(self.mapping)) != len(self.mapping):
            raise ValueError("space.mapping lists a mapping twice")
        if self.pe is not None and len(set(self.pe)) != len(self.pe):
            raise ValueError("space.pe lists a PE twice")
        return self

    def pe_choices(self) -> list[dict[str, str]]:
        """Characteriser options of each PE searched (one empty set when none is)."""
        return [pe_options(value) for value in self.pe] if self.pe else [{}]

    @property
    def mapping_param(self) -> str:
        """The trial parameter that picks the mapping: ``mapping`` or ``dataflow``."""
        return "dataflow" if self.mapping is None else "mapping"

    def memory_dimensions(self) -> dict[str, list[Any]]:
        """The memory parameters searched: buffer sizes (kB) and index storage."""
        out: dict[str, list[Any]] = {}
        for name in ("ifmap_kb", "filter_kb", "ofmap_kb"):
            dimension = getattr(self, name)
            if dimension is not None:
                out[name] = dimension.choices()
        if self.index_storage is not None and len(set(self.index_storage)) > 1:
            out["index_storage"] = sorted(set(self.index_storage))
        return out

    def mapping_choices(self) -> dict[str, str]:
        """Parameter value -> mapping plugin name, in the study's order."""
        if self.mapping is None:
            return {df: f"{df}_tile" for df in self.dataflow}
        return {name: name for name in self.mapping}


class Constraints(StudyModel):
    accuracy_budget_pct: float | None = Field(None, gt=0, lt=100)
    max_pe_count: int | None = Field(None, ge=1)
    max_onchip_kb: int | None = Field(None, ge=1, description="the three buffers together")
    max_area_mm2: float | None = Field(None, gt=0, description="PE array and buffers")


class Sampler(StudyModel):
    name: Literal["tpe", "nsga2", "nsga3", "gp", "random", "grid"] = "tpe"
    options: dict[str, Any] = Field(default_factory=dict)


class SearchEnergy(StudyModel):
    model: str = Field("auto", description="energy model; auto = msb_hamming with a dataset, "
                       "else constant")
    options: dict[str, Any] = Field(default_factory=dict)
    calibration_images: int = Field(1024, ge=1)
    characterizer: str = "gate_level"
    characterizer_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the characteriser (e.g. rtl, top, "
        "table); psum_bits follows each array's rows")
    selection_rows: int = Field(64, ge=1, description="array rows whose energy curves guide "
                                "weight selection, so a plan's accuracy is array-independent")


class SearchTraining(Training):
    fine_tune_epochs: float = Field(1.0, ge=0, description="QAT epochs per compression plan")


class Scaling(StudyModel):
    """How workers find the trials of killed workers (docs/scaling.md): a running trial beats
    every ``heartbeat_interval_s``; one silent for ``grace_period_s`` is failed and retried."""

    heartbeat_interval_s: int = Field(2, ge=1, le=3600)
    grace_period_s: int = Field(10, ge=2, le=86400)
    max_retry: int = Field(2, ge=0, le=100)

    @model_validator(mode="after")
    def _grace_spans_beats(self) -> Scaling:
        if self.grace_period_s < 2 * self.heartbeat_interval_s:
            raise ValueError(f"grace_period_s = {self.grace_period_s} is shorter than two "
                             f"heartbeats (heartbeat_interval_s = {self.heartbeat_interval_s}):"
                             " one late beat would fail a live worker's trial")
        return self


class SearchStudy(StudyModel):
    name: StudyName = ""
    seed: int = Field(0, ge=0, lt=2**31, description="random seed (0 .. 2^31 - 1)")
    n_trials: int = Field(50, ge=1)
    storage: str = Field("", description="SQLAlchemy URL; default: SQLite file beside the "
                         "study file")
    workload: SearchWorkload
    space: Space = Space()
    objectives: list[str] = Field(default_factory=lambda: ["energy_pj", "cycles"],
                                  min_length=1)
    constraints: Constraints = Constraints()
    sampler: Sampler = Sampler()
    energy: SearchEnergy = SearchEnergy()
    memory: Memory = Memory()
    compression: Compression = Compression()
    training: SearchTraining = SearchTraining()
    scaling: Scaling = Scaling()

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in OBJECTIVES:
                raise ValueError(f"unknown objective {name!r}; known: "
                                 + ", ".join(OBJECTIVES))
        if len(set(value)) != len(value):
            raise ValueError("an objective is listed twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SearchStudy:
        needs_accuracy = {"accuracy", "accuracy_drop"} & set(self.objectives) or \
            self.constraints.accuracy_budget_pct is not None
        if needs_accuracy and not self.space.compression:
            raise ValueError("accuracy objectives and constraints need space.compression = "
                             "true (accuracy comes from QAT of each compression plan)")
        if self.space.compression and (self.workload.model is None
                                       or self.workload.dataset is None):
            raise ValueError("space.compression = true needs workload.model and "
                             "workload.dataset")
        return self

    @property
    def directions(self) -> list[Any]:
        return [OBJECTIVES[o] for o in self.objectives]


def is_rtl_pe(value: str) -> bool:
    """A ``space.pe`` entry that names a Verilog file (``FILE.v`` or ``FILE.v:TOP``)."""
    return value.partition(":")[0].endswith((".v", ".sv"))


def pe_options(value: str | None) -> dict[str, str]:
    """Characteriser options of one ``space.pe`` entry: ``{"pe": NAME}`` for a PE plugin,
    ``{"rtl": FILE, "top": TOP}`` for your RTL (top ``pe_mac`` unless given)."""
    if value is None:
        return {}
    if is_rtl_pe(value):
        rtl, _, top = value.partition(":")
        return {"rtl": rtl, "top": top or "pe_mac"}
    return {"pe": value}


def load_search_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()
                      ) -> SearchStudy:
    """Read and validate a ``dse run`` study file; the default storage is a SQLite file
    ``<name>.db`` beside it."""
    path = Path(path)
    doc = apply_overrides(read_toml(path), overrides)
    try:
        study = SearchStudy.model_validate(doc)
    except PydanticValidationError as exc:
        raise DseError(format_pydantic_error(str(path), exc)) from exc
    updates: dict[str, Any] = {}
    name = study.name or path.stem
    updates["name"] = name
    if study.energy.model == "auto":
        updates["energy"] = study.energy.model_copy(update={
            "model": "msb_hamming" if study.workload.dataset else "constant"})
    if not study.storage:
        updates["storage"] = f"sqlite:///{(path.parent / f'{name}.db').resolve()}"
    # stored studies are self-contained: a worker that joins by name from another folder
    # (or machine, with the same paths) finds the same files
    w = study.workload
    updates["workload"] = w.model_copy(update={
        "topology": _absolute(w.topology, path.parent),
        "checkpoint": _absolute(w.checkpoint, path.parent),
        "weights": w.weights if w.weights == "random" else _absolute(w.weights, path.parent),
        "dataset": _absolute_dataset(w.dataset, path.parent),
        "dataset_options": _absolute_options(w.dataset_options, path.parent)})
    updates["energy"] = updates.get("energy", study.energy).model_copy(update={
        "options": _absolute_options(study.energy.options, path.parent),
        "characterizer_options": _absolute_options(study.energy.characterizer_options,
                                                   path.parent)})
    updates["memory"] = study.memory.model_copy(update={
        "options": _absolute_options(study.memory.options, path.parent)})
    if study.space.pe:  # your RTL's file, as for the workload's files
        updates["space"] = study.space.model_copy(update={"pe": [
            _absolute_rtl(v, path.parent) if is_rtl_pe(v) else v for v in study.space.pe]})
    c = study.compression
    updates["compression"] = c.model_copy(update={
        "policy_options": _absolute_options(c.policy_options, path.parent),
        "scheduler_options": _absolute_options(c.scheduler_options, path.parent)})
    return study.model_copy(update=updates)


def _absolute(value: str | None, folder: Path, *, only_existing: bool = False) -> str | None:
    """A relative file name made absolute: as given (from the working folder) when it exists
    there, else from the study file's folder (where the validation then says it is
    missing)."""
    if value is None or "\x00" in value or Path(value).is_absolute():
        return value
    if (Path.cwd() / value).exists():
        return str((Path.cwd() / value).resolve())
    if only_existing and not (folder / value).exists():
        return value
    return str((folder / value).resolve())


def _absolute_rtl(value: str, folder: Path) -> str:
    """``FILE.v[:TOP]`` with the file made absolute, the top kept."""
    rtl, colon, top = value.partition(":")
    return f"{_absolute(rtl, folder)}{colon}{top}"


def _absolute_options(options: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Plugin options that name existing files (``table = "power.toml"``), made absolute."""
    return {k: _absolute(v, folder, only_existing=True)
            if isinstance(v, str) and ("/" in v or "." in v) else v for k, v in options.items()}


def _absolute_dataset(value: str | None, folder: Path) -> str | None:
    """``NAME:FOLDER`` with the folder made absolute."""
    if value is None or ":" not in value:
        return value
    name, _, root = value.partition(":")
    return f"{name}:{_absolute(root, folder)}"
