"""The hooks a plugin may implement. Every hook is a *registration* hook: it receives a
``register`` callback and calls it once per implementation it provides, with a typed record
from :mod:`dse_core.host.registry`. ``docs/plugins.md`` documents each hook; a test keeps
them in sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("dse")
hookimpl = pluggy.HookimplMarker("dse")

Register = Callable[[Any], None]


@hookspec
def dse_register_mappings(register: Register) -> None:
    """Register array mappings: ``register(MappingPlugin(...))``."""


@hookspec
def dse_register_energy_models(register: Register) -> None:
    """Register energy models: ``register(EnergyModelPlugin(...))``."""


@hookspec
def dse_register_memory_models(register: Register) -> None:
    """Register memory models (per-access SRAM and DRAM energy):
    ``register(MemoryModelPlugin(...))``."""


@hookspec
def dse_register_pes(register: Register) -> None:
    """Register processing elements (a MAC's RTL and its shipped netlists):
    ``register(PePlugin(...))``."""


@hookspec
def dse_register_characterizers(register: Register) -> None:
    """Register MAC characterisers: ``register(CharacterizerPlugin(...))``."""


@hookspec
def dse_register_selectors(register: Register) -> None:
    """Register weight-selection policies: ``register(SelectorPlugin(...))``."""


@hookspec
def dse_register_schedulers(register: Register) -> None:
    """Register layer schedulers: ``register(SchedulerPlugin(...))``."""


@hookspec
def dse_register_models(register: Register) -> None:
    """Register CNN model factories: ``register(ModelPlugin(...))``."""


@hookspec
def dse_register_datasets(register: Register) -> None:
    """Register dataset factories: ``register(DatasetPlugin(...))``."""


@hookspec
def dse_register_commands(register: Register) -> None:
    """Register CLI subcommands: ``register(CommandPlugin(...))``."""
