"""Grouped and depthwise layers: one group per fold (SCALE-Sim's DP parity) or packed."""

import pytest
import torch
from torch import nn

from dse_core import ArrayConfig, LayerSpec, ValidationError, instantiate
from dse_core.types import LayerMapping

DW = LayerSpec(name="dw", kind="depthwise", in_channels=32, out_channels=32, kernel=(3, 3),
               groups=32, input_hw=(112, 112), output_hw=(110, 110))


def mapper(registry, name):
    return instantiate(registry.get("mapping", name))


def test_depthwise_packs_min_of_rows_and_cols_over_the_block(registry):
    tile = mapper(registry, "ws_tile").map(DW, ArrayConfig(64, 64))
    packed = mapper(registry, "ws_packed").map(DW, ArrayConfig(64, 64))
    assert (tile.groups_per_fold, tile.folds) == (1, 32)       # SCALE-Sim: one per channel
    assert packed.groups_per_fold == 64 // 9 == 7
    assert packed.folds == 5 and packed.cycles == 5 * tile.cycles_per_fold
    assert packed.cycles_per_fold == tile.cycles_per_fold
    assert packed.active_pe_folds == tile.active_pe_folds == 32 * 9
    # four folds of 7 blocks, one of 4: off-block PEs of each (7*9) x 7 and (4*9) x 4 square
    assert packed.passthrough_pe_folds == 9 * (4 * 7 * 6 + 4 * 3)
    assert packed.idle_pe_folds == 5 * 4096 - 32 * 9 - packed.passthrough_pe_folds
    assert packed.utilisation == pytest.approx(tile.utilisation * 32 / 5)
    tiles = list(packed.tiles())
    assert [t.group for t in tiles] == list(range(32))
    assert all((t.active_rows, t.active_cols) == (9, 1) for t in tiles)


def test_packing_is_limited_by_the_columns_and_by_the_groups(registry):
    grouped = LayerSpec(name="g", kind="conv", in_channels=8, out_channels=32, kernel=(1, 1),
                        groups=2, input_hw=(4, 4), output_hw=(4, 4))   # K = 4, N = 16
    m = mapper(registry, "ws_packed").map(grouped, ArrayConfig(64, 40))
    assert m.groups_per_fold == 2 and m.folds == 1                # 40 // 16 = 2 = groups
    narrow = mapper(registry, "ws_packed").map(grouped, ArrayConfig(64, 24))
    assert narrow.groups_per_fold == 1 and narrow.folds == 2       # 24 // 16 = 1


def test_ungrouped_layers_map_as_ws_tile(registry):
    conv = LayerSpec(name="c", kind="conv", in_channels=64, out_channels=64, kernel=(3, 3),
                     input_hw=(56, 56), output_hw=(54, 54))
    for array in (ArrayConfig(32, 32), ArrayConfig(64, 16)):
        a = mapper(registry, "ws_tile").map(conv, array)
        b = mapper(registry, "ws_packed").map(conv, array)
        assert (a.folds, a.cycles, a.idle_pe_folds, b.passthrough_pe_folds) == (
            b.folds, b.cycles, b.idle_pe_folds, 0)


def test_a_packing_that_does_not_fit_is_refused():
    fields = dict(layer="dw", mapping="m", array=ArrayConfig(16, 16), groups=32,
                  spatial_rows=9, spatial_cols=1, streamed=10, row_folds=1, col_folds=1,
                  cycles_per_fold=56, macs=32 * 90)
    assert LayerMapping(**fields, groups_per_fold=1).folds == 32
    with pytest.raises(ValidationError, match="groups_per_fold = 2: expected at most"):
        LayerMapping(**fields, groups_per_fold=2)   # 2 x 9 rows > 16


@pytest.fixture(scope="module")
def depthwise_stats(characterization):
    from dse_core.switching.stats import collect_stats
    from dse_core.workloads.layers import layers_from_module

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU())
    layers = layers_from_module(model, (3, 8, 8))
    stats = collect_stats(model, layers, [torch.rand(8, 3, 8, 8) for _ in range(2)], rows=64)
    return layers[1], stats.layers[layers[1].name]


@pytest.mark.parametrize("gating", ["none", "idle", "idle_and_skew"])
def test_packed_energy_prices_pass_through_pes_at_weight_zero(registry, characterization,
                                                              depthwise_stats, gating):
    layer, stats = depthwise_stats
    array = ArrayConfig(64, 64, clock_gating=gating)
    tile = mapper(registry, "ws_tile").map(layer, array)
    packed = mapper(registry, "ws_packed").map(layer, array)
    assert (tile.folds, packed.folds, packed.groups_per_fold) == (16, 3, 7)
    model = instantiate(registry.get("energy_model", "msb_hamming"))
    one = model.layer_energy(layer, tile, stats=stats, characterization=characterization)
    many = model.layer_energy(layer, packed, stats=stats, characterization=characterization)
    curve = model.per_weight_energy(layer, stats, characterization)
    passthrough = packed.passthrough_pe_folds * packed.streamed
    assert passthrough > 0
    assert many.mac_switching_pj == pytest.approx(one.mac_switching_pj
                                                  + passthrough * curve[128])
    clock = characterization.clock_pj
    assert many.clock_pj == pytest.approx(one.clock_pj + passthrough * clock)
    if gating == "none":   # every PE clocks every cycle: the clock follows the folds
        assert many.pe_clock_pj == pytest.approx(one.pe_clock_pj * 3 / 16)
    else:                  # tiles and pass-through PEs clock, the rest is gated
        assert many.idle_pj == one.idle_pj == 0
    assert many.cycles == 3 * tile.cycles_per_fold < one.cycles


def test_exact_and_constant_models_count_the_pass_through_pes(registry, characterization,
                                                              depthwise_stats):
    layer, stats = depthwise_stats
    array = ArrayConfig(64, 64, clock_gating="idle")
    tile = mapper(registry, "ws_tile").map(layer, array)
    packed = mapper(registry, "ws_packed").map(layer, array)
    exact = instantiate(registry.get("energy_model", "exact"), {"sample_folds": 2})
    curve = instantiate(registry.get("energy_model", "msb_hamming")).per_weight_energy(
        layer, stats, characterization)
    one = exact.layer_energy(layer, tile, stats=stats, characterization=characterization)
    many = exact.layer_energy(layer, packed, stats=stats, characterization=characterization)
    assert many.mac_switching_pj == pytest.approx(
        one.mac_switching_pj + packed.passthrough_pe_folds * packed.streamed * curve[128])
    constant = instantiate(registry.get("energy_model", "constant"), {"pe_cycle_pj": 1.0})
    skew_and_load = 2 * 64 + 64 - 2
    assert constant.layer_energy(layer, packed).clock_pj == pytest.approx(
        packed.clocked_pe_folds * (packed.streamed + skew_and_load))
    assert constant.layer_energy(layer, tile).clock_pj == pytest.approx(
        tile.active_pe_folds * (tile.streamed + skew_and_load))
