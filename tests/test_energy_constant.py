import numpy as np
import pytest

from dse_core import ArrayConfig, evaluate_network, instantiate, load_workload


def test_constant_energy_is_macs_times_pj(registry):
    layers = load_workload(registry, "lenet5")
    model = instantiate(registry.get("energy_model", "constant"), {"mac_pj": 0.25})
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    result = evaluate_network(layers, ArrayConfig(16, 16), mapper, model)
    assert [e.layer for e in result.energy.layers] == [s.name for s in layers]
    for layer, energy, mapping in zip(layers, result.energy.layers, result.mappings,
                                      strict=True):
        assert energy.mac_switching_pj == pytest.approx(0.25 * layer.macs)
        assert energy.total_pj == energy.mac_switching_pj  # no idle / fill / load terms
        assert energy.cycles == mapping.cycles
    assert result.energy.total_pj == pytest.approx(0.25 * sum(s.macs for s in layers))
    assert result.cycles == result.energy.cycles
    curve = model.per_weight_energy(layers[0])
    assert curve.shape == (256,) and np.all(curve == 0.25)


def test_default_is_zigzag_tpu_like(registry):
    assert instantiate(registry.get("energy_model", "constant")).mac_pj == 0.04
