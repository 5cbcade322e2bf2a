"""A processing element as a design axis: the RTL of its combinational MAC and the netlists it
ships, so that characterising it needs no Yosys.

The PE contract (``docs/energy-model.md``): a module with inputs ``w[8]`` (signed int8
weight, stationary while a fold streams), ``a[8]`` (unsigned activation code), ``p[P]``
(two's-complement partial sum) and output ``sum[P]`` = p + w·a (mod 2^P); a ``P_BITS``
parameter, if the module has one, sets P. How it multiplies is the PE's business, and decides
which weights are cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from dse_core.errors import ValidationError

__all__ = ["PeDesign"]


@dataclass(frozen=True)
class PeDesign:
    """``rtl``: the Verilog file; ``top``: the MAC module in it; ``netlists``: psum width ->
    a Yosys JSON netlist of ``top`` at that width (gzip or plain), shipped beside the RTL;
    ``name``: what characterisations and reports call it."""

    name: str
    rtl: Path
    top: str
    netlists: Mapping[int, Path] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        owner = "PeDesign"
        if not isinstance(self.top, str) or not self.top.isidentifier():
            raise ValidationError.field(owner, "top", self.top, "a Verilog module name")
        object.__setattr__(self, "rtl", Path(self.rtl))
        bad = [bits for bits in self.netlists if isinstance(bits, bool)
               or not isinstance(bits, int) or bits < 1]
        if bad:
            raise ValidationError.field(owner, "netlists", bad[0], "psum widths in bits >= 1")
        object.__setattr__(self, "netlists", MappingProxyType(
            {bits: Path(path) for bits, path in sorted(self.netlists.items())}))

    def shipped_netlist(self, psum_bits: int) -> Path | None:
        """The shipped netlist at this psum width, if there is one and it is on disk."""
        path = self.netlists.get(psum_bits)
        return path if path is not None and path.is_file() else None
