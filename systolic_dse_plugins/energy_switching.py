"""Switching-activity energy models of a weight-stationary array.

- ``msb_hamming``: the paper's layer-aware model. Each layer's own activation-transition
  distribution weights the characterised activation energies, and each layer's joint
  distribution of psum MSB-Hamming group and activation change weights what those classes of
  cycle cost on the layer's own partial sums (:mod:`dse_core.switching.calibration`).
  ``layer_calibration=False`` uses the characterisation's reference psum tables instead (also
  the fallback for table-file characterisations, which have no netlist).
- ``global_activation``: one network-wide distribution and the reference psum tables
  (PowerPruning-style: one characterisation for the whole network).
- ``exact``: replays the real streams of sampled folds through the PE netlist (slow; the
  reference the other two are validated against).

Array terms shared by all three (pJ; R x C array, T streamed vectors per fold): busy PEs
clock ``clock_pj`` per streamed cycle; without clock gating PEs idle in partial folds clock too
(``idle_pj``), every fold spends R + C - 2 skew cycles clocking all PEs (``fill_drain_pj``)
and R preload cycles clocking all PEs while weights shift down (``weight_load_pj``); clock
gating (``ArrayConfig.clock_gating``) removes what it gates (:func:`array_terms`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from dse_core import DseError, EnergyModelPlugin, LayerEnergy, LayerMapping, LayerSpec, hookimpl
from dse_core.switching.characterization import MacCharacterization
from dse_core.switching.stats import LayerStats


def _check(name: str, layer: LayerSpec, mapping: LayerMapping | None, stats: Any,
           char: Any) -> None:
    if not isinstance(stats, LayerStats):
        raise DseError(f"energy model {name!r} needs switching statistics for layer "
                       f"{layer.name!r}: give a --dataset")
    if not isinstance(char, MacCharacterization):
        raise DseError(f"energy model {name!r} needs a PE characterisation")
    if mapping is None:
        return
    array = mapping.array
    if array.dataflow != "ws":
        raise DseError(f"energy model {name!r} models a weight-stationary PE; the mapping "
                       f"{mapping.mapping!r} is {array.dataflow}")
    if stats.rows != array.rows:
        raise DseError(f"statistics of layer {layer.name!r} were collected for {stats.rows} "
                       f"rows, the array has {array.rows}")
    if char.psum_bits != array.psum_bits:
        raise DseError(f"the characterisation is of a {char.psum_bits}-bit psum PE; a "
                       f"{array.rows}-row array needs {array.psum_bits} bits")


def array_terms(mapping: LayerMapping, char: MacCharacterization) -> dict[str, float]:
    """The array's clock as its clock gating leaves it (``ArrayConfig.clock_gating``):
    ``none`` clocks every PE every cycle; ``idle`` gates the PEs a fold leaves without data
    (outside its tiles and their pass-through PEs: streamed, skew and preload cycles);
    ``idle_and_skew`` also gates a clocked PE's skew cycles, so a PE clocks only while it
    streams or shifts weights. A gated cycle costs nothing here: the gating cell's own energy
    is shared by a whole row or column."""
    array = mapping.array
    rows, cols, pes = array.rows, array.cols, array.pe_count
    gating = array.clock_gating
    clocked = mapping.clocked_pe_folds if gating != "none" else mapping.folds * pes
    return {
        "clock_pj": mapping.clocked_pe_folds * mapping.streamed * char.clock_pj,
        "idle_pj": (0.0 if gating != "none"
                    else mapping.idle_pe_folds * mapping.streamed * char.clock_pj),
        "fill_drain_pj": (0.0 if gating == "idle_and_skew"
                          else clocked * (rows + cols - 2) * char.clock_pj),
        "weight_load_pj": clocked * rows * (char.clock_pj + char.weight_shift_pj),
    }


class SwitchingEnergy:
    """Layer-aware (``network_wide=False``) or global (``True``) switching energy."""

    def __init__(self, name: str, network_wide: bool, layer_calibration: bool = True) -> None:
        self.name, self.network_wide = name, network_wide
        self.layer_calibration = layer_calibration and not network_wide
        self._activation_curves: dict[tuple[str, int, int], tuple[Any, Any, np.ndarray]] = {}
        # keyed by the objects themselves (both compare by identity), so no id is ever reused
        self._psum_curves: dict[tuple[MacCharacterization, LayerStats], np.ndarray] = {}

    def _calibrated(self, stats: LayerStats, char: MacCharacterization) -> np.ndarray | None:
        """Σ_k P_ℓ(k) delta_ℓ[w, k], or None when this layer cannot be calibrated."""
        if (not self.layer_calibration or stats.calibration_cycles is None
                or stats.cycle_classes is None or not char.has_netlist):
            return None
        if (char, stats) not in self._psum_curves:
            from dse_core.switching.calibration import layer_deltas

            self._psum_curves[char, stats] = layer_deltas(char, stats) @ stats.cycle_classes
        return self._psum_curves[char, stats]

    def _distributions(self, stats: LayerStats
                       ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray | None]:
        if self.network_wide:
            assert stats.global_act_transitions is not None
            assert stats.global_psum_groups is not None
            assert stats.global_psum_unchanged is not None
            return (stats.global_act_transitions, stats.global_psum_groups,
                    stats.global_psum_unchanged, stats.global_psum_magnitude)
        return (stats.act_transitions, stats.psum_groups, stats.psum_unchanged,
                stats.psum_magnitude)

    def per_weight_energy(self, layer: LayerSpec, stats: Any = None,
                          characterization: Any = None) -> np.ndarray:
        """pJ of one streamed cycle of a busy PE holding each code (index code + 128)."""
        _check(self.name, layer, None, stats, characterization)
        acts, psums, unchanged, magnitude = self._distributions(stats)
        # The activation part depends on the data only, not on the array: cache it per
        # distribution so a search over array shapes pays it once per layer.
        # keyed by identity, and the arrays are kept so an id is never reused by another one
        key = (characterization.key, id(acts), id(characterization))
        cached = self._activation_curves.get(key)
        if cached is not None and cached[0] is acts and cached[1] is characterization:
            curve = cached[2]
        else:
            curve = characterization.activation_curve(acts).astype(np.float64)
            self._activation_curves[key] = (acts, characterization, curve)
        calibrated = self._calibrated(stats, characterization)
        if calibrated is not None:
            return curve + calibrated
        return (curve + characterization.psum_curve(acts, psums, unchanged)
                + characterization.magnitude_curve(acts, magnitude))

    def layer_energy(self, layer: LayerSpec, mapping: LayerMapping,
                     codes: np.ndarray | None = None, stats: Any = None,
                     characterization: Any = None,
                     weight_histogram: np.ndarray | None = None) -> LayerEnergy:
        _check(self.name, layer, mapping, stats, characterization)
        curve = self.per_weight_energy(layer, stats, characterization)
        if weight_histogram is not None:  # what a search holds: no expansion to codes
            histogram = np.asarray(weight_histogram, dtype=np.float64)
            if histogram.shape != (256,):
                raise DseError(f"weight_histogram has shape {histogram.shape}: expected "
                               "(256,), counts indexed by code + 128")
        elif codes is None:
            histogram = stats.weight_histogram
        else:
            histogram = np.bincount(np.asarray(codes).ravel().astype(np.int64) + 128,
                                    minlength=256).astype(np.float64)
        # a packed fold's pass-through PEs hold weight 0 and see the layer's activations
        mac = mapping.streamed * (float(histogram @ curve)
                                  + mapping.passthrough_pe_folds * float(curve[128]))
        return LayerEnergy(layer=layer.name, mac_switching_pj=mac, cycles=mapping.cycles,
                           macs=layer.macs, **array_terms(mapping, characterization))


class ExactEnergy:
    """Replays the recorded streams (runs of consecutive im2col rows at random places of the
    calibration set, up to ``max_windows`` of them and ``max_pe_cycles`` busy PE-cycles per
    fold) of ``sample_folds`` evenly spread folds through the PE netlist with the
    characterisation's delay model and technology, and scales the measured energy per busy
    PE-cycle to the layer."""

    def __init__(self, sample_folds: int = 8, max_windows: int = 1024,
                 max_pe_cycles: int = 1 << 19) -> None:
        if sample_folds < 1 or max_windows < 1 or max_pe_cycles < 1:
            raise DseError(f"sample_folds = {sample_folds}, max_windows = {max_windows}, "
                           f"max_pe_cycles = {max_pe_cycles}: expected >= 1")
        self.sample_folds, self.max_windows = sample_folds, max_windows
        self.max_pe_cycles = max_pe_cycles
        self._netlists: dict[str, Any] = {}
        self._passthrough = SwitchingEnergy("msb_hamming", False)

    def _netlist(self, char: MacCharacterization) -> Any:
        if char.key not in self._netlists:
            self._netlists[char.key] = char.netlist()
        return self._netlists[char.key]

    def per_weight_energy(self, layer: LayerSpec, stats: Any = None,
                          characterization: Any = None) -> np.ndarray:
        raise DseError("energy model 'exact' replays whole folds; it has no per-weight curve "
                       "(use msb_hamming)")

    def sampled_folds(self, layer: LayerSpec, mapping: LayerMapping, stats: LayerStats,
                      char: MacCharacterization, seed: int = 0) -> list[dict[str, Any]]:
        """For each sampled fold: its tile, the exact MAC-switching energy of the replayed
        busy PE-cycles, and the weight code of the PE of each replayed cycle. All recorded
        windows are replayed; when they hold more than ``max_pe_cycles`` busy PE-cycles, a
        uniform random subset of them is (spread over windows, not concentrated in a few), and
        ``scale`` (recorded busy PE-cycles / replayed ones) weighs the fold back to its size:
        a partial fold of 16 rows must count a quarter of a full one of 64, not as much."""
        from dse_core.switching.characterization import register_pj
        from dse_core.switching.gates import simulate_toggles

        _check("exact", layer, mapping, stats, char)
        netlist = self._netlist(char)
        tech = char.technology()
        net_pj = tech.net_pj(netlist)
        tiles = list(mapping.tiles())
        picks = np.unique(np.linspace(0, len(tiles) - 1, min(self.sample_folds, len(tiles)))
                          .round().astype(int))
        rows, cols = mapping.array.rows, mapping.array.cols
        windows = min(self.max_windows, stats.activation_sample.shape[1])
        steps = stats.activation_sample.shape[2] - 1
        out = []
        for index in picks:
            tile = tiles[index]
            rng = np.random.default_rng([seed, int(index)])
            k0, n0 = tile.row_fold * rows, tile.col_fold * cols
            w = stats.weight_codes[tile.group, k0:k0 + tile.active_rows,
                                   n0:n0 + tile.active_cols].astype(np.int64)     # (r, c)
            per_window = steps * w.size
            keep = min(1.0, self.max_pe_cycles / (windows * per_window))
            parts: dict[str, list[np.ndarray]] = {k: [] for k in ("w", "a0", "a1", "p0", "p1")}
            for lo in range(0, windows, 32):
                a = stats.activation_sample[tile.group, lo:min(lo + 32, windows), :,
                                            k0:k0 + tile.active_rows].astype(np.int64)
                prod = a[..., None] * w                                   # (W, S, r, c)
                p = np.cumsum(prod, axis=2) - prod                         # rows above
                shape = (a.shape[0], steps, tile.active_rows, tile.active_cols)
                size = int(np.prod(shape))
                chosen = (np.sort(rng.choice(size, max(1, round(size * keep)), replace=False))
                          if keep < 1 else np.arange(size))
                parts["w"].append(np.broadcast_to(w, shape).ravel()[chosen])
                parts["a0"].append(np.broadcast_to(a[:, :-1, :, None], shape).ravel()[chosen])
                parts["a1"].append(np.broadcast_to(a[:, 1:, :, None], shape).ravel()[chosen])
                parts["p0"].append(p[:, :-1].ravel()[chosen])
                parts["p1"].append(p[:, 1:].ravel()[chosen])
            ws, a0, a1, p0, p1 = (np.concatenate(parts[k]) for k in parts)
            toggles = simulate_toggles(netlist, {"w": ws, "a": a0, "p": p0},
                                       {"w": ws, "a": a1, "p": p1},
                                       glitches=bool(char.description["glitches"]))
            energy = float(toggles.per_net @ net_pj) + float(
                register_pj(char.psum_bits, tech, ws, a0, a1, p0, p1).sum())
            out.append({"tile": tile, "exact_pj": energy, "pe_cycles": len(ws),
                        "cycle_weights": ws, "scale": windows * per_window / len(ws)})
        return out

    def layer_energy(self, layer: LayerSpec, mapping: LayerMapping,
                     codes: np.ndarray | None = None, stats: Any = None,
                     characterization: Any = None,
                     weight_histogram: np.ndarray | None = None) -> LayerEnergy:
        if codes is not None or weight_histogram is not None:
            raise DseError("energy model 'exact' replays the recorded weight codes; it cannot "
                           "evaluate other codes")
        folds = self.sampled_folds(layer, mapping, stats, characterization)
        per_pe_cycle = (sum(f["exact_pj"] * f["scale"] for f in folds)
                        / sum(f["pe_cycles"] * f["scale"] for f in folds))
        mac = per_pe_cycle * mapping.active_pe_folds * mapping.streamed
        if mapping.passthrough_pe_folds:  # no MAC of the layer to replay: weight 0's curve
            zero_pj = self._passthrough.per_weight_energy(layer, stats, characterization)[128]
            mac += float(zero_pj) * mapping.passthrough_pe_folds * mapping.streamed
        return LayerEnergy(layer=layer.name, mac_switching_pj=mac, cycles=mapping.cycles,
                           macs=layer.macs, **array_terms(mapping, characterization))


@hookimpl
def dse_register_energy_models(register):  # type: ignore[no-untyped-def]
    register(EnergyModelPlugin(
        name="msb_hamming", factory=partial(SwitchingEnergy, "msb_hamming", False),
        summary="layer-aware switching energy: per-layer activation + psum MSB-Hamming stats"))
    register(EnergyModelPlugin(
        name="global_activation", factory=lambda: SwitchingEnergy("global_activation", True),
        summary="switching energy with one network-wide distribution (PowerPruning-style)"))
    register(EnergyModelPlugin(
        name="exact", factory=ExactEnergy,
        summary="replays sampled folds' real streams through the PE netlist (slow reference)"))
