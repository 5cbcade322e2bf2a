"""The processing elements shipped with systolic-dse, each with netlists for every psum width
an array of 1 to 4,096 rows needs (16..28 bits), so none needs Yosys (rtl/README.md):

- ``array``: the default, ``p + w * a`` with Yosys's array multiplier of a two's-complement
  weight (``rtl/pe.v``, the paper's PE);
- ``booth``: a radix-4 Booth multiplier, the weight recoded into four digits in {-2..2}
  (``rtl/pe_booth.v``);
- ``sign_magnitude``: the weight held as sign and magnitude, an unsigned multiplier and an
  adder/subtractor into the two's-complement psum (``rtl/pe_sm.v``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dse_core import hookimpl
from dse_core.host.registry import PePlugin
from dse_core.switching.pe_design import PeDesign

SHIPPED_PSUM_BITS = range(16, 29)


def _design(name: str, rtl: str, top: str, description: str) -> PeDesign:
    folder = Path(str(resources.files("systolic_dse_plugins") / "rtl"))
    return PeDesign(name=name, rtl=folder / rtl, top=top, description=description,
                    netlists={bits: folder / f"{top}_p{bits}.json.gz"
                              for bits in SHIPPED_PSUM_BITS})


def array_pe() -> PeDesign:
    return _design("array", "pe.v", "pe_mac", "two's-complement array multiplier (default)")


def booth_pe() -> PeDesign:
    return _design("booth", "pe_booth.v", "pe_mac_booth", "radix-4 Booth multiplier")


def sign_magnitude_pe() -> PeDesign:
    return _design("sign_magnitude", "pe_sm.v", "pe_mac_sm",
                   "sign-magnitude weight, unsigned multiplier, add/subtract")


@hookimpl
def dse_register_pes(register):  # type: ignore[no-untyped-def]
    register(PePlugin(name="array", factory=array_pe,
                      summary="int8 x uint8 MAC, two's-complement array multiplier (the "
                              "paper's PE; default)"))
    register(PePlugin(name="booth", factory=booth_pe,
                      summary="int8 x uint8 MAC, radix-4 Booth multiplier (weight recoded)"))
    register(PePlugin(name="sign_magnitude", factory=sign_magnitude_pe,
                      summary="int8 x uint8 MAC, sign-magnitude weight and unsigned "
                              "multiplier"))
