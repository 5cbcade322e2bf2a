"""MAC characterisation: what one PE cycle costs, per weight code, activation transition and
partial-sum group; and its content-addressed on-disk cache.

The decomposition (see docs/energy-model.md for why and how accurate it is)::

    e(w, a→a', p→p') ≈ act_pj[w, a, a'] + [a' ≠ a] · mag_pj[w, bits(p)]
                       + [p' ≠ p] · psum_pj[w, g, [a' ≠ a]]

``act_pj`` is the energy of a cycle in which the activation input changes a→a' while the
partial sum entering the PE stays put; ``psum_pj[w, g, c]`` the extra energy when the partial
sum also changes, with MSB-Hamming group g, for an activation that holds (c = 0) or changes
(c = 1): a psum change costs more when it is the only thing that switches. ``mag_pj[w, b]``
corrects the activation term for the bit length b of the partial sum held meanwhile (``act_pj``
is measured over a reference mix of magnitudes; small sums flip sign more). ``clock_pj`` is
clocking all of a PE's registers for one cycle (paid by busy and idle PEs alike);
``weight_shift_pj`` the data toggles of moving one weight down a PE during a fold's preload.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dse_core.cache import atomic_write, cache_dir, content_hash
from dse_core.errors import DseError, ValidationError, read_user_text
from dse_core.switching.gates import Netlist

__all__ = ["MacCharacterization", "CharacterizationCache", "Technology", "register_pj",
           "read_table_file", "write_table_file", "activation_hd"]

log = logging.getLogger(__name__)
CHAR_FORMAT = "systolic-dse-characterization/3"
TABLE_COLUMNS = ("weight", "activation_hd", "psum_group", "energy_pj")

_HD = np.bitwise_count(np.arange(256)[:, None] ^ np.arange(256)[None, :]).astype(np.int64)


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

    def net_pj(self, netlist: Netlist) -> np.ndarray:
        """Energy of one toggle of each net of ``netlist``."""
        return np.asarray(self.pj(self.wire_ff + self.gate_input_ff * netlist.fanout))


def register_pj(psum_bits: int, tech: Technology, w: np.ndarray, a0: np.ndarray,
                a1: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Data-toggle energy of the PE's activation and psum output registers per cycle."""
    mask = (1 << psum_bits) - 1
    s0, s1 = (p0 + w * a0) & mask, (p1 + w * a1) & mask
    toggles = np.bitwise_count(a0 ^ a1) + np.bitwise_count(s0 ^ s1)
    return np.asarray(tech.pj(tech.ff_toggle_ff) * toggles)


def activation_hd() -> np.ndarray:
    """(256, 256) Hamming distance between activation codes."""
    return _HD


@dataclass(frozen=True, eq=False)
class MacCharacterization:
    """See the module docstring. Arrays are indexed by weight code + 128."""

    key: str
    description: Mapping[str, Any]
    psum_bits: int
    msb_bits: int
    act_pj: np.ndarray     # float32 (256, 256, 256): [w + 128, a, a']
    psum_pj: np.ndarray    # float32 (256, msb_bits + 1, 2)
    clock_pj: float
    weight_shift_pj: float
    mag_pj: np.ndarray | None = None   # float32 (256, psum_bits); None = no correction
    _act_flat: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        owner = "MacCharacterization"
        if self.act_pj.shape != (256, 256, 256):
            raise ValidationError.field(owner, "act_pj", self.act_pj.shape, "(256, 256, 256)")
        if self.psum_pj.shape != (256, self.msb_bits + 1, 2):
            raise ValidationError.field(owner, "psum_pj", self.psum_pj.shape,
                                        f"(256, msb_bits + 1 = {self.msb_bits + 1}, 2)")
        mag = (self.mag_pj if self.mag_pj is not None
               else np.zeros((256, self.psum_bits), np.float32))
        object.__setattr__(self, "mag_pj", mag)
        if mag.shape != (256, self.psum_bits):
            raise ValidationError.field(owner, "mag_pj", mag.shape,
                                        f"(256, psum_bits = {self.psum_bits})")
        for name in ("act_pj", "psum_pj", "mag_pj"):
            value = getattr(self, name)
            if not np.all(np.isfinite(value)):
                raise ValidationError(f"{owner}.{name}: expected finite energies, found NaN/inf")
        if self.act_pj.min() < 0:
            raise ValidationError(f"{owner}.act_pj: expected energies >= 0")
        for name in ("clock_pj", "weight_shift_pj"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValidationError.field(owner, name, value, "a finite energy >= 0 in pJ")
        object.__setattr__(self, "_act_flat", self.act_pj.reshape(256, 65536))

    @property
    def has_netlist(self) -> bool:
        """Gate-level characterisations have one; table-file ones do not."""
        return bool(self.description.get("netlist_json"))

    def netlist(self) -> Netlist:
        """The PE netlist this characterisation was measured on (gate-level ones only)."""
        if not self.has_netlist:
            raise DseError(f"characterisation {self.key} ({self.description.get('source')}) "
                           "has no netlist: it came from a table file")
        return Netlist.from_yosys_json(str(self.description["netlist_json"]),
                                       self.description.get("netlist"))

    def technology(self) -> Technology:
        return Technology(**self.description.get("technology", {}))

    def activation_curve(self, act_transitions: np.ndarray) -> np.ndarray:
        """Σ_{a,a'} P(a→a') · act_pj[w, a, a'] for every w: (256,) pJ."""
        return self._act_flat @ np.asarray(act_transitions, dtype=np.float32).ravel()

    def psum_curve(self, act_transitions: np.ndarray, psum_groups: np.ndarray,
                   psum_unchanged: float) -> np.ndarray:
        """Σ_c P(c) Σ_g π'(g) psum_pj[w, g, c] for every w, with π' = π less the unchanged
        psums and the activation-change probability P(c) taken independent of g."""
        changed = np.asarray(psum_groups, dtype=np.float64).copy()
        changed[0] = max(0.0, changed[0] - psum_unchanged)
        hold = float(np.trace(act_transitions))
        table = self.psum_pj.astype(np.float64)
        return table[:, :, 0] @ changed * hold + table[:, :, 1] @ changed * (1 - hold)

    def per_weight_energy(self, act_transitions: np.ndarray, psum_groups: np.ndarray,
                          psum_unchanged: float = 0.0,
                          psum_magnitude: np.ndarray | None = None) -> np.ndarray:
        """Mean energy of one PE cycle for each weight code under these distributions."""
        curve = self.activation_curve(act_transitions).astype(np.float64)
        return curve + self.psum_curve(act_transitions, psum_groups, psum_unchanged) + \
            self.magnitude_curve(act_transitions, psum_magnitude)

    def magnitude_curve(self, act_transitions: np.ndarray,
                        psum_magnitude: np.ndarray | None) -> np.ndarray:
        """P(a' ≠ a) · Σ_b P(bits(p) = b) · mag_pj[w, b] for every w: the correction applies
        to cycles whose activation changes (when nothing changes, nothing switches)."""
        assert self.mag_pj is not None
        if psum_magnitude is None:
            return np.zeros(256)
        changes = 1.0 - float(np.trace(act_transitions))
        return changes * (self.mag_pj.astype(np.float64) @ np.asarray(psum_magnitude))

    def energy(self, w: np.ndarray, a: np.ndarray, a_next: np.ndarray, g: np.ndarray,
               psum_changed: np.ndarray, p_held: np.ndarray | None = None) -> np.ndarray:
        """Model energy of individual PE cycles."""
        w = np.asarray(w) + 128
        extra = self.psum_pj[w, g, (np.asarray(a) != np.asarray(a_next)).astype(int)]
        base = self.act_pj[w, a, a_next]
        if p_held is not None:
            held = np.abs(np.asarray(p_held, dtype=np.int64))
            bits = np.minimum(np.where(held > 0, np.floor(np.log2(np.maximum(held, 1))) + 1,
                                       0), self.psum_bits - 1).astype(np.int64)
            moved = np.asarray(a) != np.asarray(a_next)
            base = base + np.where(moved, self.mag_pj[w, bits], 0.0)  # type: ignore[index]
        return base + np.where(psum_changed, extra, 0.0)


class CharacterizationCache:
    """Entries under ``<cache>/characterizations/<key>/``: ``header.json`` (with the SHA-256 of
    each array file) and the arrays as ``.npy``. An entry that fails any check is deleted and
    rebuilt, never trusted."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir("characterizations")

    def path(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> MacCharacterization | None:
        entry = self.path(key)
        if not entry.exists():
            return None
        try:
            header = json.loads((entry / "header.json").read_text())
            if header.get("format") != CHAR_FORMAT or header.get("key") != key:
                raise ValueError("header does not match the entry")
            arrays = {}
            for name in ("act_pj", "psum_pj", "mag_pj"):
                file = entry / f"{name}.npy"
                if _sha256(file) != header["sha256"][name]:
                    raise ValueError(f"{name}.npy checksum mismatch")
                arrays[name] = np.load(file, allow_pickle=False)
            return MacCharacterization(
                key=key, description=header["description"], psum_bits=header["psum_bits"],
                msb_bits=header["msb_bits"], act_pj=arrays["act_pj"],
                psum_pj=arrays["psum_pj"], clock_pj=header["clock_pj"],
                weight_shift_pj=header["weight_shift_pj"], mag_pj=arrays["mag_pj"])
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError,
                ValidationError) as exc:
            log.warning("characterisation cache entry %s is corrupt (%s); rebuilding", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def store(self, char: MacCharacterization) -> Path:
        entry = self.path(char.key)
        staging = self.root / f".{char.key}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        sums = {}
        for name in ("act_pj", "psum_pj", "mag_pj"):
            file = staging / f"{name}.npy"
            np.save(file, getattr(char, name))
            sums[name] = _sha256(file)
        header = {"format": CHAR_FORMAT, "key": char.key, "description": dict(char.description),
                  "psum_bits": char.psum_bits, "msb_bits": char.msb_bits,
                  "clock_pj": char.clock_pj, "weight_shift_pj": char.weight_shift_pj,
                  "sha256": sums}
        (staging / "header.json").write_text(json.dumps(header, indent=1))
        shutil.rmtree(entry, ignore_errors=True)
        staging.rename(entry)  # the entry appears whole or not at all
        return entry


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table_file(path: str | Path, *, psum_bits: int, msb_bits: int, clock_pj: float,
                    weight_shift_pj: float) -> MacCharacterization:
    """A user's power table: CSV with columns ``weight, activation_hd, psum_group, energy_pj``,
    one row for every weight code (-128..127) x activation Hamming distance (0..8) x psum group
    (0..msb_bits). e(w, a→a', g) = energy_pj[w, HD(a, a'), g]."""
    path = Path(path)
    text = read_user_text(path, "power table (CSV)")
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in (reader.fieldnames or [])]
    unknown = [c for c in columns if c not in TABLE_COLUMNS]
    if unknown or sorted(columns) != sorted(TABLE_COLUMNS):
        raise DseError(f"{path}:1: columns {', '.join(columns) or '(none)'}: expected exactly "
                       f"{', '.join(TABLE_COLUMNS)}" + (f" (unknown: {', '.join(unknown)})"
                                                        if unknown else ""))
    groups = msb_bits + 1
    table = np.full((256, 9, groups), np.nan)
    for line, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        try:
            w, h, g = int(row["weight"]), int(row["activation_hd"]), int(row["psum_group"])
            energy = float(row["energy_pj"])
        except ValueError as exc:
            raise DseError(f"{path}:{line}: {exc}: expected integers and an energy in pJ") \
                from exc
        for column, value, hi, lo in (("weight", w, 127, -128), ("activation_hd", h, 8, 0),
                                      ("psum_group", g, msb_bits, 0)):
            if not lo <= value <= hi:
                raise DseError(f"{path}:{line}: {column} = {value}: expected {lo}..{hi}")
        if not math.isfinite(energy) or energy < 0:
            raise DseError(f"{path}:{line}: energy_pj = {row['energy_pj']!r}: expected a "
                           "finite energy >= 0")
        table[w + 128, h, g] = energy
    missing = np.argwhere(np.isnan(table))
    if len(missing):
        w, h, g = missing[0]
        raise DseError(f"{path}: {len(missing)} of {table.size} rows missing, e.g. weight="
                       f"{w - 128}, activation_hd={h}, psum_group={g}: expected the full grid "
                       f"256 x 9 x {groups}")
    act = table[:, :, 0][:, _HD].astype(np.float32)           # (256, 256, 256)
    delta = table - table[:, :, :1]                            # (256, 9, groups)
    psum = np.stack([delta[:, 0], delta[:, 1:].mean(axis=1)], axis=2).astype(np.float32)
    key = content_hash(CHAR_FORMAT, "table", table.tobytes(), str(psum_bits), str(msb_bits),
                       repr(clock_pj), repr(weight_shift_pj))
    return MacCharacterization(
        key=key, description={"source": "table_file", "path": str(path)},
        psum_bits=psum_bits, msb_bits=msb_bits, act_pj=act, psum_pj=psum,
        clock_pj=clock_pj, weight_shift_pj=weight_shift_pj)


def write_table_file(char: MacCharacterization, path: str | Path) -> Path:
    """The characterisation reduced to the table-file grid: energies averaged over the
    activation transitions of each Hamming distance (uniform codes); psum groups as changes."""
    rows = ["weight,activation_hd,psum_group,energy_pj"]
    by_hd = np.stack([char.act_pj[:, _HD == h].mean(axis=1) for h in range(9)], axis=1)
    for w in range(256):
        for h in range(9):
            for g in range(char.msb_bits + 1):
                extra = char.psum_pj[w, g, int(h > 0)] if g else 0.0
                rows.append(f"{w - 128},{h},{g},{by_hd[w, h] + extra:.6g}")
    text = "\n".join(rows) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    return atomic_write(Path(path), write)
