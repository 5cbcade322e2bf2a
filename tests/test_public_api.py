import dse_core


def test_public_api_is_pinned():
    assert sorted(dse_core.__all__) == sorted([
        "AllowedSet", "ArrayConfig", "ArrayMapping", "BufferConfig", "CharacterizerPlugin",
        "CommandPlugin", "CompressionPlan", "CompressionSession", "DatasetPlugin", "DseError",
        "EnergyModel",
        "EnergyModelPlugin", "FoldTile", "Knob", "LayerEnergy", "LayerMapping", "LayerScheduler",
        "LayerSpec", "LayerTraffic", "MappingPlugin", "MemoryModel", "MemoryModelPlugin",
        "ModelPlugin", "NetworkEnergy", "NetworkEvaluation",
        "PluginConflictError", "PluginRecord", "Registry", "SchedulerPlugin", "SelectionRequest",
        "SelectorPlugin", "UnknownPluginError", "ValidationError", "WeightSelector",
        "__version__", "build_registry", "evaluate_network", "get_registry", "hookimpl",
        "instantiate", "layers_from_module", "load_workload", "map_network", "read_user_text",
    ])
    for name in dse_core.__all__:
        assert hasattr(dse_core, name), name


def test_core_never_imports_the_shipped_plugins():
    from .conftest import ROOT

    for path in (ROOT / "dse_core").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import systolic_dse_plugins",
                                            "from systolic_dse_plugins")), path


def test_shipped_plugins_implement_their_contracts(registry):
    from dse_core import ArrayMapping, EnergyModel, instantiate

    for name in registry.names("mapping"):
        assert isinstance(instantiate(registry.get("mapping", name)), ArrayMapping)
    for name in registry.names("energy_model"):
        assert isinstance(instantiate(registry.get("energy_model", name)), EnergyModel)
