"""systolic-dse: design-space exploration of energy-efficient CNN accelerators on systolic
arrays. This module is the public API that plugins and scripts import from."""

from dse_core.compression.selection import (
    CompressionSession,
    Knob,
    LayerScheduler,
    SelectionRequest,
    WeightSelector,
)
from dse_core.errors import (
    DseError,
    PluginConflictError,
    UnknownPluginError,
    ValidationError,
    read_user_text,
)
from dse_core.host.contracts import ArrayMapping, EnergyModel, MemoryModel
from dse_core.host.hookspecs import hookimpl
from dse_core.host.registry import (
    CharacterizerPlugin,
    CommandPlugin,
    DatasetPlugin,
    EnergyModelPlugin,
    MappingPlugin,
    MemoryModelPlugin,
    ModelPlugin,
    PluginRecord,
    Registry,
    SchedulerPlugin,
    SelectorPlugin,
    build_registry,
    get_registry,
    instantiate,
)
from dse_core.mapping.evaluate import NetworkEvaluation, evaluate_network, map_network
from dse_core.types import (
    AllowedSet,
    ArrayConfig,
    BufferConfig,
    CompressionPlan,
    FoldTile,
    LayerEnergy,
    LayerMapping,
    LayerSpec,
    LayerTraffic,
    NetworkEnergy,
)
from dse_core.workloads.layers import layers_from_module, load_workload

__version__ = "0.1.0"

__all__ = [
    "AllowedSet",
    "ArrayConfig",
    "ArrayMapping",
    "BufferConfig",
    "CharacterizerPlugin",
    "CommandPlugin",
    "CompressionPlan",
    "CompressionSession",
    "DatasetPlugin",
    "DseError",
    "EnergyModel",
    "EnergyModelPlugin",
    "FoldTile",
    "Knob",
    "LayerEnergy",
    "LayerMapping",
    "LayerScheduler",
    "LayerSpec",
    "LayerTraffic",
    "MappingPlugin",
    "MemoryModel",
    "MemoryModelPlugin",
    "ModelPlugin",
    "NetworkEnergy",
    "NetworkEvaluation",
    "PluginConflictError",
    "PluginRecord",
    "Registry",
    "SchedulerPlugin",
    "SelectionRequest",
    "SelectorPlugin",
    "UnknownPluginError",
    "ValidationError",
    "WeightSelector",
    "__version__",
    "build_registry",
    "evaluate_network",
    "get_registry",
    "hookimpl",
    "instantiate",
    "layers_from_module",
    "load_workload",
    "map_network",
    "read_user_text",
]
