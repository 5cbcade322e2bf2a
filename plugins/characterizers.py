"""MAC characterisers: ``gate_level`` (a Yosys netlist of the PE, toggle-simulated) and
``table_file`` (power numbers from the user's own tool). Both return a
:class:`~dse_core.characterization.MacCharacterization` and go through the same cache."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dse_core import CharacterizerPlugin, DseError, hookimpl
from dse_core.cache import content_hash
from dse_core.characterization import (
    CharacterizationCache,
    MacCharacterization,
    activation_hd,
    read_table_file,
)
from dse_core.gates import Netlist, lane_energy, simulate_toggles, synthesize_with_yosys
from dse_core.stats import PRODUCT_BITS, psum_group

FORMAT_VERSION = "gate_level/1"


@dataclass(frozen=True)
class Technology:
    """Switched capacitance per net = wire_ff + fanout x gate_input_ff; energy = C·V²/2.

    ``vdd`` is calibrated so that the default PE (22-bit psum) spends 0.27 pJ per cycle on
    uniformly random operands: Horowitz (ISSCC 2014, 45 nm) gives 0.2 pJ for an 8-bit multiply
    and 0.03 / 0.1 pJ for an 8- / 32-bit add, so ~0.07 pJ for 22 bits. Flip-flops: a data
    toggle switches ``ff_toggle_ff`` and every clock cycle ``ff_clock_ff`` per bit."""

    wire_ff: float = 0.5
    gate_input_ff: float = 1.0
    vdd: float = 0.7635
    ff_toggle_ff: float = 6.0
    ff_clock_ff: float = 2.0

    def pj(self, capacitance_ff: Any) -> Any:
        return np.asarray(capacitance_ff) * self.vdd ** 2 / 2 * 1e-3


def _reference_psums(rng: np.random.Generator, n: int, psum_bits: int) -> np.ndarray:
    """Partial sums with log-uniform magnitudes over the register's range and random signs:
    small and large sums alike, as down a fold's rows."""
    magnitude = np.floor(2.0 ** rng.uniform(0, psum_bits - 1, n)).astype(np.int64)
    magnitude = np.minimum(magnitude, (1 << (psum_bits - 1)) - 1)
    return np.where(rng.random(n) < 0.5, -magnitude, magnitude)


@dataclass(frozen=True)
class _Job:
    netlist: Netlist
    weights: tuple[int, ...]
    psum_bits: int
    msb_bits: int
    glitches: bool
    tech: Technology
    seed: int
    samples: int


def _register_pj(job: _Job, w: np.ndarray, a0: np.ndarray, a1: np.ndarray, p0: np.ndarray,
                 p1: np.ndarray) -> np.ndarray:
    mask = (1 << job.psum_bits) - 1
    s0, s1 = (p0 + w * a0) & mask, (p1 + w * a1) & mask
    toggles = np.bitwise_count(a0 ^ a1) + np.bitwise_count(s0 ^ s1)
    return job.tech.pj(job.tech.ff_toggle_ff) * toggles


def _characterize_weights(job: _Job) -> tuple[np.ndarray, np.ndarray]:
    """act_pj and psum_pj rows of ``job.weights``."""
    nl, tech = job.netlist, job.tech
    net_pj = tech.pj(tech.wire_ff + tech.gate_input_ff * nl.fanout)
    hd = activation_hd()
    a0 = np.repeat(np.arange(256), 256)
    a1 = np.tile(np.arange(256), 256)
    groups = job.msb_bits + 1
    act = np.empty((len(job.weights), 256, 256), dtype=np.float32)
    psum = np.empty((len(job.weights), groups), dtype=np.float32)
    for i, w_code in enumerate(job.weights):
        rng = np.random.default_rng([job.seed, w_code + 128])
        w = np.full(65536, w_code, dtype=np.int64)
        p = _reference_psums(rng, 65536, job.psum_bits)
        comb = lane_energy(nl, {"w": w, "a": a0, "p": p}, {"w": w, "a": a1, "p": p}, net_pj)
        glitch = np.ones(9)
        if job.glitches:  # unit-delay / zero-delay energy per activation Hamming distance
            s = job.samples
            for h in range(1, 9):
                x0 = rng.integers(0, 256, s)
                flips = np.array([rng.choice(8, h, replace=False) for _ in range(s)])
                x1 = x0 ^ (1 << flips).sum(axis=1)
                ws, ps = np.full(s, w_code), _reference_psums(rng, s, job.psum_bits)
                before, after = {"w": ws, "a": x0, "p": ps}, {"w": ws, "a": x1, "p": ps}
                unit = simulate_toggles(nl, before, after, glitches=True).per_net @ net_pj
                zero = simulate_toggles(nl, before, after, glitches=False).per_net @ net_pj
                glitch[h] = unit / zero if zero > 0 else 1.0
        act[i] = (comb * glitch[hd.ravel()] + _register_pj(job, w, a0, a1, p, p)).reshape(
            256, 256)
        # psum groups: extra energy of p -> p' over p -> p, for uniformly random activations
        pool0 = _reference_psums(rng, 1 << 16, job.psum_bits)
        pool1 = _reference_psums(rng, 1 << 16, job.psum_bits)
        pool_g = psum_group(pool0, pool1, job.psum_bits, job.msb_bits)
        s = job.samples
        for g in range(groups):
            members = np.flatnonzero(pool_g == g)
            if len(members) == 0:  # construct pairs: flip g of the top bits of p
                p0 = _reference_psums(rng, s, job.psum_bits)
                shift = job.psum_bits - job.msb_bits
                flips = np.array([rng.choice(job.msb_bits, g, replace=False) for _ in range(s)])
                p1 = p0 ^ ((1 << (flips + shift)).sum(axis=1) if g else 0)
                p1 = ((p1 + (1 << (job.psum_bits - 1))) % (1 << job.psum_bits)) - (
                    1 << (job.psum_bits - 1))
            else:
                pick = rng.choice(members, s)
                p0, p1 = pool0[pick], pool1[pick]
            x0, x1 = rng.integers(0, 256, s), rng.integers(0, 256, s)
            ws = np.full(s, w_code)
            mode = job.glitches
            moved = simulate_toggles(nl, {"w": ws, "a": x0, "p": p0},
                                     {"w": ws, "a": x1, "p": p1}, glitches=mode).per_net
            still = simulate_toggles(nl, {"w": ws, "a": x0, "p": p0},
                                     {"w": ws, "a": x1, "p": p0}, glitches=mode).per_net
            extra = (moved - still) @ net_pj + (_register_pj(job, ws, x0, x1, p0, p1).sum()
                                                - _register_pj(job, ws, x0, x1, p0, p0).sum())
            psum[i, g] = extra / s
    return act, psum


def _default_netlist(psum_bits: int) -> Netlist:
    rtl = resources.files("plugins") / "rtl"
    shipped = Path(str(rtl / f"pe_mac_p{psum_bits}.json"))
    if shipped.is_file():
        return Netlist.from_yosys_json(shipped, "pe_mac")
    return synthesize_with_yosys(Path(str(rtl / "pe.v")), "pe_mac", {"P_BITS": psum_bits})


def check_pe_contract(netlist: Netlist, psum_bits: int, origin: str) -> None:
    want_in = {"w": 8, "a": 8, "p": psum_bits}
    got_in = {p: len(n) for p, n in netlist.inputs.items()}
    got_out = {p: len(n) for p, n in netlist.outputs.items()}
    if got_in != want_in or got_out != {"sum": psum_bits}:
        raise DseError(f"{origin}: ports {got_in} -> {got_out} do not match the PE contract: "
                       f"inputs w[8], a[8], p[{psum_bits}] and output sum[{psum_bits}]")


class GateLevelCharacterizer:
    """Characterise a PE netlist by toggle simulation (see docs/energy-model.md)."""

    def __init__(self, rtl: str | None = None, top: str = "pe_mac", psum_bits: int = 22,
                 msb_bits: int | None = None, glitches: bool = True, seed: int = 0,
                 samples: int = 256, workers: int | None = None,
                 cache: CharacterizationCache | None = None) -> None:
        if not PRODUCT_BITS < psum_bits <= 40:
            raise DseError(f"psum_bits = {psum_bits}: expected {PRODUCT_BITS + 1}..40")
        self.msb_bits = msb_bits or max(1, psum_bits - PRODUCT_BITS)
        if not 0 < self.msb_bits <= psum_bits:
            raise DseError(f"msb_bits = {msb_bits}: expected 1..{psum_bits}")
        self.rtl, self.top, self.psum_bits = rtl, top, psum_bits
        self.glitches, self.seed, self.samples = glitches, seed, samples
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.tech = Technology()
        self.cache = cache or CharacterizationCache()

    def netlist(self) -> Netlist:
        if self.rtl is None:
            netlist = _default_netlist(self.psum_bits)
            origin = "default PE"
        else:
            params = {"P_BITS": self.psum_bits}
            netlist = synthesize_with_yosys(self.rtl, self.top, params)
            origin = f"{self.rtl} ({self.top})"
        check_pe_contract(netlist, self.psum_bits, origin)
        return netlist

    def key(self, netlist: Netlist) -> str:
        gates = json.dumps([netlist.gate_op, netlist.gate_in.tolist(), netlist.gate_out.tolist(),
                            {k: list(v) for k, v in netlist.inputs.items()},
                            {k: list(v) for k, v in netlist.outputs.items()}])
        return content_hash(FORMAT_VERSION, gates, str(self.psum_bits), str(self.msb_bits),
                            str(self.glitches), str(self.seed), str(self.samples),
                            repr(asdict(self.tech)))

    def characterize(self, progress: bool = False) -> MacCharacterization:
        netlist = self.netlist()
        key = self.key(netlist)
        cached = self.cache.load(key)
        if cached is not None:
            return cached
        chunks = [tuple(range(lo, min(128, lo + 8))) for lo in range(-128, 128, 8)]
        jobs = [_Job(netlist, c, self.psum_bits, self.msb_bits, self.glitches, self.tech,
                     self.seed, self.samples) for c in chunks]
        act = np.empty((256, 256, 256), dtype=np.float32)
        psum = np.empty((256, self.msb_bits + 1), dtype=np.float32)
        from tqdm import tqdm

        bar = tqdm(total=256, desc="characterising PE", unit="weight", disable=not progress)
        with ProcessPoolExecutor(self.workers, initializer=_single_thread) as pool:
            for job, (a, p) in zip(jobs, pool.map(_characterize_weights, jobs), strict=True):
                rows = np.asarray(job.weights) + 128
                act[rows], psum[rows] = a, p
                bar.update(len(job.weights))
        bar.close()
        clock_bits = 8 + 8 + self.psum_bits
        char = MacCharacterization(
            key=key, psum_bits=self.psum_bits, msb_bits=self.msb_bits, act_pj=act,
            psum_pj=psum, clock_pj=float(self.tech.pj(self.tech.ff_clock_ff) * clock_bits),
            # a weight shifting through a PE: clock of 8 bits + on average 4 data toggles
            weight_shift_pj=float(self.tech.pj(8 * self.tech.ff_clock_ff
                                               + 4 * self.tech.ff_toggle_ff)),
            description={"source": "gate_level", "netlist": netlist.name,
                         "rtl": self.rtl or "default PE (plugins/rtl/pe.v)",
                         "gates": netlist.n_gates, "depth": netlist.depth,
                         "glitches": self.glitches, "samples": self.samples,
                         "seed": self.seed, "technology": asdict(self.tech)})
        self.cache.store(char)
        return char


def _single_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


class TableFileCharacterizer:
    """Read a power table (see docs/energy-model.md for the format)."""

    def __init__(self, table: str, psum_bits: int = 22, msb_bits: int | None = None,
                 clock_pj: float | None = None, weight_shift_pj: float | None = None,
                 cache: CharacterizationCache | None = None) -> None:
        tech = Technology()
        self.table, self.psum_bits = table, psum_bits
        self.msb_bits = msb_bits or max(1, psum_bits - PRODUCT_BITS)
        self.clock_pj = clock_pj if clock_pj is not None else float(
            tech.pj(tech.ff_clock_ff) * (16 + psum_bits))
        self.weight_shift_pj = weight_shift_pj if weight_shift_pj is not None else float(
            tech.pj(8 * tech.ff_clock_ff + 4 * tech.ff_toggle_ff))
        self.cache = cache or CharacterizationCache()

    def characterize(self, progress: bool = False) -> MacCharacterization:
        char = read_table_file(self.table, psum_bits=self.psum_bits, msb_bits=self.msb_bits,
                               clock_pj=self.clock_pj, weight_shift_pj=self.weight_shift_pj)
        if self.cache.load(char.key) is None:
            self.cache.store(char)
        return char


@hookimpl
def dse_register_characterizers(register):  # type: ignore[no-untyped-def]
    register(CharacterizerPlugin(
        name="gate_level", factory=GateLevelCharacterizer,
        summary="toggle-simulate a Yosys netlist of the PE (default: shipped 8x8 MAC, 22-bit)"))
    register(CharacterizerPlugin(
        name="table_file", factory=TableFileCharacterizer,
        summary="energies per weight, activation Hamming distance and psum group from a CSV"))
