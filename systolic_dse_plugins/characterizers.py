"""MAC characterisers: ``gate_level`` (a Yosys netlist of the PE, toggle-simulated) and
``table_file`` (power numbers from the user's own tool). Both return a
:class:`~dse_core.switching.characterization.MacCharacterization` and go through the same cache."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dse_core import CharacterizerPlugin, DseError, hookimpl
from dse_core.cache import atomic_write, cache_dir, content_hash
from dse_core.switching.characterization import (
    CharacterizationCache,
    MacCharacterization,
    Technology,
    activation_hd,
    read_table_file,
    register_pj,
)
from dse_core.switching.gates import Netlist, lane_energy, simulate_toggles, synthesize_with_yosys
from dse_core.switching.pe_design import PeDesign
from dse_core.switching.stats import PRODUCT_BITS, psum_group
from systolic_dse_plugins.pes import SHIPPED_PSUM_BITS, array_pe

__all__ = ["GateLevelCharacterizer", "TableFileCharacterizer", "SHIPPED_PSUM_BITS",
           "shipped_netlist_file", "check_pe_contract"]

FORMAT_VERSION = "gate_level/7"


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


def _word_energy(netlist: Netlist, net_pj: np.ndarray, before: dict[str, np.ndarray],
                 after: dict[str, np.ndarray], glitches: bool, classes: int) -> np.ndarray:
    """Total switching energy of each of ``classes`` equal, word-aligned runs of vectors."""
    counts = simulate_toggles(netlist, before, after, glitches=glitches)
    return (net_pj @ counts.per_word).reshape(classes, -1).sum(axis=1)


def _characterize_weights(job: _Job) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """act_pj and psum_pj rows of ``job.weights``."""
    nl, tech = job.netlist, job.tech
    net_pj = tech.pj(tech.wire_ff + tech.gate_input_ff * nl.fanout)
    hd = activation_hd()
    a0 = np.repeat(np.arange(256), 256)
    a1 = np.tile(np.arange(256), 256)
    groups, s, bits = job.msb_bits + 1, job.samples, job.psum_bits
    limit = (1 << (bits - 1)) - 1
    act = np.empty((len(job.weights), 256, 256), dtype=np.float32)
    psum = np.empty((len(job.weights), groups, 2), dtype=np.float32)
    mag = np.empty((len(job.weights), bits), dtype=np.float32)
    for i, w_code in enumerate(job.weights):
        rng = np.random.default_rng([job.seed, w_code + 128])
        w = np.full(65536, w_code, dtype=np.int64)
        p = _reference_psums(rng, 65536, bits)
        comb = lane_energy(nl, {"w": w, "a": a0, "p": p}, {"w": w, "a": a1, "p": p}, net_pj)
        glitch = np.ones(9)
        if job.glitches:  # unit-delay / zero-delay energy per activation Hamming distance
            x0 = rng.integers(0, 256, 8 * s)
            h = np.repeat(np.arange(1, 9), s)
            masks = np.array([(1 << rng.choice(8, k, replace=False)).sum() for k in h])
            ws, ps = np.full(8 * s, w_code), _reference_psums(rng, 8 * s, bits)
            before, after = {"w": ws, "a": x0, "p": ps}, {"w": ws, "a": x0 ^ masks, "p": ps}
            unit = _word_energy(nl, net_pj, before, after, True, 8)
            zero = _word_energy(nl, net_pj, before, after, False, 8)
            glitch[1:] = np.where(zero > 0, unit / np.maximum(zero, 1e-30), 1.0)
        act[i] = (comb * glitch[hd.ravel()]
                  + register_pj(bits, tech, w, a0, a1, p, p)).reshape(256, 256)
        # psum groups: extra energy of p -> p' over p -> p, for an activation that holds
        # (c = 0) or changes (c = 1). Reference pairs: half independent, half correlated
        # (p' = p + delta), as consecutive partial sums are somewhere between the two.
        pool0 = _reference_psums(rng, 1 << 16, bits)
        step = np.clip(pool0 + _reference_psums(rng, 1 << 16, bits), -limit, limit)
        pool1 = np.where(rng.random(1 << 16) < 0.5, _reference_psums(rng, 1 << 16, bits), step)
        pool_g = psum_group(pool0, pool1, bits, job.msb_bits)
        p0s, p1s = [], []
        for g in range(groups):
            members = np.flatnonzero((pool_g == g) & (pool0 != pool1))
            if len(members) == 0:  # construct pairs: flip g of the top bits of p
                p0 = _reference_psums(rng, s, bits)
                shift = bits - job.msb_bits
                flips = [(1 << (rng.choice(job.msb_bits, g, replace=False) + shift)).sum()
                         if g else 1 for _ in range(s)]
                p1 = ((p0 ^ np.array(flips)) + limit + 1) % (1 << bits) - limit - 1
            else:
                pick = rng.choice(members, s)
                p0, p1 = pool0[pick], pool1[pick]
            p0s.append(p0)
            p1s.append(p1)
        # classes in order (g, c, moved): one simulation for all of them
        n = groups * 2
        x0 = rng.integers(0, 256, n * s)
        change = np.repeat(np.tile([0, 1], groups), s).astype(bool)
        x1 = np.where(change, x0 ^ rng.integers(1, 256, n * s), x0)
        p0 = np.repeat(np.asarray(p0s)[:, None, :], 2, axis=1).ravel()
        p1 = np.repeat(np.asarray(p1s)[:, None, :], 2, axis=1).ravel()
        ws = np.full(n * s, w_code)
        both = {"w": np.concatenate([ws, ws]), "a": np.concatenate([x0, x0]),
                "p": np.concatenate([p0, p0])}
        after = {"w": both["w"], "a": np.concatenate([x1, x1]), "p": np.concatenate([p1, p0])}
        energy = _word_energy(nl, net_pj, both, after, job.glitches, 2 * n)
        regs = register_pj(bits, tech, both["w"], both["a"], after["a"], both["p"],
                           after["p"]).reshape(2 * n, s).sum(axis=1)
        total = (energy + regs).reshape(2, groups, 2)  # (moved/still, g, c)
        psum[i] = (total[0] - total[1]) / s
        # magnitude correction: held psums of each bit length vs the reference mix, for
        # activations that change (a psum that holds while a changes is what act_pj measures)
        x0 = rng.integers(0, 256, bits * s)
        x1 = x0 ^ rng.integers(1, 256, bits * s)
        length = np.repeat(np.arange(bits), s)
        held = np.where(length > 0, np.floor(2.0 ** (length - 1 + rng.random(bits * s))), 0)
        held = np.minimum(held, limit).astype(np.int64) * np.where(
            rng.random(bits * s) < 0.5, -1, 1)
        ref = _reference_psums(rng, bits * s, bits)
        ws = np.full(2 * bits * s, w_code)
        xs0, xs1 = np.concatenate([x0, x0]), np.concatenate([x1, x1])
        ps = np.concatenate([held, ref])
        energy = _word_energy(nl, net_pj, {"w": ws, "a": xs0, "p": ps},
                              {"w": ws, "a": xs1, "p": ps}, job.glitches, 2 * bits)
        regs = register_pj(bits, tech, ws, xs0, xs1, ps, ps).reshape(2 * bits, s).sum(axis=1)
        total = (energy + regs).reshape(2, bits)
        mag[i] = (total[0] - total[1].mean()) / s
    return act, psum, mag


def _netlist_file(rtl: Path, top: str, params: dict[str, int], psum_bits: int,
                  origin: str) -> Path:
    """Synthesise once into the cache, content-addressed: the characterisation and the
    ``exact`` model then read the same netlist file. Only a netlist that meets the PE
    contract is kept; a failed synthesis or wrong ports leave nothing behind."""
    key = content_hash(rtl.read_bytes(), top, json.dumps(params, sort_keys=True))
    path = cache_dir("netlists") / f"{key}.json"
    if not path.exists():
        def synthesize(tmp: Path) -> None:
            netlist = synthesize_with_yosys(rtl, top, params, json_out=tmp)
            check_pe_contract(netlist, psum_bits, origin)

        atomic_write(path, synthesize)
    return path


def shipped_netlist_file(psum_bits: int, pe: PeDesign | None = None) -> Path | None:
    """The shipped netlist of a PE (default: the array-multiplier PE) at this psum width."""
    return (pe or array_pe()).shipped_netlist(psum_bits)


def _design_netlist_file(pe: PeDesign, psum_bits: int) -> Path:
    shipped = pe.shipped_netlist(psum_bits)
    if shipped is not None:
        return shipped
    if shutil.which("yosys") is None:
        widths = sorted(pe.netlists)
        ships = (f"ships synthesised for {widths[0]}..{widths[-1]} bits (arrays of 1 to "
                 f"{1 << (widths[-1] - PRODUCT_BITS)} rows)" if widths else "ships no netlist")
        raise DseError(f"psum_bits = {psum_bits}: PE {pe.name!r} {ships}; other widths need "
                       "Yosys (apt-get install yosys)")
    return _netlist_file(pe.rtl, pe.top, {"P_BITS": psum_bits}, psum_bits, f"PE {pe.name!r}")


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
                 cache: CharacterizationCache | None = None, pe: PeDesign | None = None
                 ) -> None:
        if pe is not None and not isinstance(pe, PeDesign):
            raise DseError(f"pe = {pe!r}: expected a PE plugin's name (`dse plugins --kind pe`)")
        if pe is not None and rtl is not None:
            raise DseError(f"pe = {pe.name!r} and rtl = {rtl!r}: give a shipped PE or your "
                           "own RTL, not both")
        self.pe = pe or array_pe()
        if samples < 64 or samples % 64:
            raise DseError(f"samples = {samples}: expected a positive multiple of 64")
        if not PRODUCT_BITS <= psum_bits <= 40:  # one row: the product alone, 16 bits
            raise DseError(f"psum_bits = {psum_bits}: expected {PRODUCT_BITS}..40")
        self.msb_bits = msb_bits or max(1, psum_bits - PRODUCT_BITS)
        if not 0 < self.msb_bits <= psum_bits:
            raise DseError(f"msb_bits = {msb_bits}: expected 1..{psum_bits}")
        self.rtl, self.top, self.psum_bits = rtl, top, psum_bits
        self.glitches, self.seed, self.samples = glitches, seed, samples
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.tech = Technology()
        self.cache = cache or CharacterizationCache()

    def netlist_file(self) -> Path:
        if self.rtl is None:
            return _design_netlist_file(self.pe, self.psum_bits)
        # A P_BITS parameter, if the module has one, sets the psum width; otherwise the
        # ports must already have it (checked in netlist()).
        try:
            text = Path(self.rtl).read_text(errors="replace")
        except OSError as exc:
            raise DseError(f"{self.rtl}: cannot read ({exc.strerror or exc})") from exc
        params = {"P_BITS": self.psum_bits} if "P_BITS" in text else {}
        return _netlist_file(Path(self.rtl), self.top, params, self.psum_bits,
                             f"{self.rtl} ({self.top})")

    def netlist(self) -> Netlist:
        netlist = Netlist.from_yosys_json(self.netlist_file(),
                                          self.top if self.rtl else self.pe.top)
        origin = f"PE {self.pe.name!r}" if self.rtl is None else f"{self.rtl} ({self.top})"
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
        psum = np.empty((256, self.msb_bits + 1, 2), dtype=np.float32)
        mag = np.empty((256, self.psum_bits), dtype=np.float32)
        from tqdm import tqdm

        bar = tqdm(total=256, desc="characterising PE", unit="weight", disable=not progress)
        with ProcessPoolExecutor(self.workers, initializer=_single_thread) as pool:
            for job, (a, p, g) in zip(jobs, pool.map(_characterize_weights, jobs), strict=True):
                rows = np.asarray(job.weights) + 128
                act[rows], psum[rows], mag[rows] = a, p, g
                bar.update(len(job.weights))
        bar.close()
        clock_bits = 8 + 8 + self.psum_bits
        char = MacCharacterization(
            key=key, psum_bits=self.psum_bits, msb_bits=self.msb_bits, act_pj=act,
            psum_pj=psum, mag_pj=mag,
            clock_pj=float(self.tech.pj(self.tech.ff_clock_ff) * clock_bits),
            # a weight shifting one PE down: on average 4 of its 8 bits toggle (clock apart)
            weight_shift_pj=float(self.tech.pj(4 * self.tech.ff_toggle_ff)),
            description={"source": "gate_level", "netlist": netlist.name,
                         "netlist_json": str(self.netlist_file()),
                         "pe": "own RTL" if self.rtl else self.pe.name,
                         "rtl": self.rtl or f"PE {self.pe.name!r} "
                                            f"(systolic_dse_plugins/rtl/{self.pe.rtl.name})",
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
            tech.pj(4 * tech.ff_toggle_ff))
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
        summary="toggle-simulate a gate netlist of the PE (default: the shipped 8x8 MAC, "
                "16..28-bit psums, no Yosys needed)"))
    register(CharacterizerPlugin(
        name="table_file", factory=TableFileCharacterizer,
        summary="energies per weight, activation Hamming distance and psum group from a CSV"))
