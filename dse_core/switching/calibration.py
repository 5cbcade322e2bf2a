"""Layer calibration of the switching model: what each weight code costs beyond the
activation table, on the layer's own partial sums.

The characterisation measures the psum and magnitude terms over a reference distribution of
partial sums (log-uniform magnitudes, uniform activations). A layer's real cycles are far from
it: first layers stream a background that holds under partial sums that hold too; stage-1
ResNet layers carry small sums that flip sign. So for each layer, and each cycle class k
(:func:`dse_core.switching.stats.cycle_class`: psum holds or changes with MSB-Hamming group
g, activation holds or moves), the stored real cycles of that class are replayed through the
PE netlist with every weight code substituted::

    delta[w, k] = mean over the layer's class-k cycles of
                  (e_netlist(w, a→a', p→p') − act_pj[w, a, a'])

and the layer-aware curve is ``Σ P(a→a') act_pj[w, a, a'] + Σ_k P_ℓ(k) delta[w, k]``.
Class 0 (nothing changes) costs nothing and is not replayed. About 1 s per layer on the
2-core machine; cached on disk by content (cycles, characterisation), and in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dse_core.cache import atomic_write, cache_dir, content_hash
from dse_core.switching.characterization import MacCharacterization, register_pj
from dse_core.switching.stats import LayerStats, n_cycle_classes

__all__ = ["layer_deltas", "CALIBRATION_FORMAT"]

log = logging.getLogger(__name__)
CALIBRATION_FORMAT = "systolic-dse-calibration/1"
_LANES = 64


def _simulate(char: MacCharacterization, netlist: Any, cycles: np.ndarray, kinds: np.ndarray,
              classes: int) -> np.ndarray:
    """(256, classes) mean extra energy per class, see the module doc."""
    from dse_core.switching.gates import simulate_toggles

    tech = char.technology()
    net_pj = tech.net_pj(netlist)
    present = [k for k in np.unique(kinds) if k != 0]
    # each class padded to whole 64-lane words with transitions that change nothing (they
    # toggle no net), so per-word sums separate the classes exactly
    blocks, counts = [], []
    for kind in present:
        members = cycles[:, kinds == kind]
        pad = -members.shape[1] % _LANES
        blocks.append(np.pad(members, ((0, 0), (0, pad))))
        counts.append(members.shape[1])
    delta = np.zeros((256, classes))
    if not blocks:
        return delta
    block = np.concatenate(blocks, axis=1)
    words = [b.shape[1] // _LANES for b in blocks]
    m = block.shape[1]
    w = np.repeat(np.arange(-128, 128), m)
    a0, a1, p0, p1 = (np.tile(v, 256) for v in block)
    toggles = simulate_toggles(netlist, {"w": w, "a": a0, "p": p0}, {"w": w, "a": a1, "p": p1},
                               glitches=bool(char.description.get("glitches", True)))
    word_pj = (net_pj @ toggles.per_word).reshape(256, -1)              # (256, words)
    lane_pj = (register_pj(char.psum_bits, tech, w, a0, a1, p0, p1)
               - char.act_pj[w + 128, a0, a1]).reshape(256, -1, _LANES).sum(axis=2)
    total = word_pj + lane_pj
    edges = np.cumsum([0, *words])
    for i, kind in enumerate(present):
        delta[:, kind] = total[:, edges[i]:edges[i + 1]].sum(axis=1) / counts[i]
    return delta


def layer_deltas(char: MacCharacterization, stats: LayerStats,
                 root: Path | None = None) -> np.ndarray:
    """(256, classes) pJ; cached on disk under ``calibrations/`` (a corrupt or mismatched
    entry is recomputed, never trusted)."""
    assert stats.calibration_cycles is not None and stats.calibration_class is not None
    classes = n_cycle_classes(stats.msb_bits)
    cycles = np.ascontiguousarray(stats.calibration_cycles, dtype=np.int64)
    kinds = np.ascontiguousarray(stats.calibration_class, dtype=np.int64)
    key = content_hash(CALIBRATION_FORMAT, char.key, cycles.tobytes(), kinds.tobytes(),
                       str(classes))
    path = (root or cache_dir("calibrations")) / f"{key}.npy"
    if path.exists():
        try:
            delta = np.load(path, allow_pickle=False)
            if delta.shape == (256, classes) and np.all(np.isfinite(delta)):
                return delta
            raise ValueError(f"shape {delta.shape} or non-finite values")
        except (OSError, ValueError) as exc:
            log.warning("calibration cache entry %s is corrupt (%s); recomputing", path, exc)
            path.unlink(missing_ok=True)
    delta = _simulate(char, char.netlist(), cycles, kinds, classes)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, delta)

    atomic_write(path, write)
    return delta
