"""The plugin host: typed registration records, entry-point loading, and the registry.

Plugins (the shipped ones included) are modules named by entry points of the group ``dse``.
Each implements registration hooks from :mod:`dse_core.host.hookspecs`. Loading is tolerant: a
plugin that fails to import or to register is reported in :attr:`Registry.failures` and
skipped. ``DSE_LOAD_PLUGINS`` (comma-separated entry-point or distribution names) restricts
which third-party plugins load; ``DSE_NO_PLUGINS=1`` (or ``dse --no-plugins``) loads only the
plugins shipped with systolic-dse.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

import pluggy

from dse_core.errors import DseError, PluginConflictError, UnknownPluginError
from dse_core.host import hookspecs

__all__ = [
    "PluginRecord", "MappingPlugin", "EnergyModelPlugin", "MemoryModelPlugin",
    "CharacterizerPlugin",
    "SelectorPlugin", "SchedulerPlugin", "ModelPlugin", "DatasetPlugin", "CommandPlugin",
    "PluginFailure", "Registry", "KINDS", "get_registry", "build_registry", "reset_registry",
    "instantiate",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dse"
SHIPPED_DISTRIBUTION = "systolic-dse"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class PluginRecord:
    """What a plugin registers: a unique ``name`` per kind, the ``factory`` that builds the
    implementation from keyword options, a one-line ``summary``. ``provider`` and ``version``
    are filled in by the host from the distribution that provides the plugin."""

    name: str
    factory: Callable[..., Any]
    summary: str
    version: str | None = None
    provider: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise DseError(
                f"{type(self).__name__}.name = {self.name!r}: expected lower-case letters, "
                "digits, '_', '-' or '.', starting with a letter"
            )
        if not callable(self.factory):
            raise DseError(f"{type(self).__name__}.factory for {self.name!r}: expected a callable")
        if not isinstance(self.summary, str) or "\n" in self.summary.strip():
            raise DseError(f"{type(self).__name__}.summary for {self.name!r}: expected one line")


@dataclass(frozen=True)
class MappingPlugin(PluginRecord):
    """An :class:`~dse_core.host.contracts.ArrayMapping` for arrays of one ``dataflow``."""

    dataflow: str = "ws"


@dataclass(frozen=True)
class EnergyModelPlugin(PluginRecord):
    """An :class:`~dse_core.host.contracts.EnergyModel`."""


@dataclass(frozen=True)
class MemoryModelPlugin(PluginRecord):
    """A :class:`~dse_core.host.contracts.MemoryModel`: energy of one buffer or DRAM access."""


@dataclass(frozen=True)
class PePlugin(PluginRecord):
    """A processing element: ``factory() -> PeDesign``, the RTL of its combinational MAC and
    the netlists it ships per psum width (:mod:`dse_core.switching.pe_design`)."""


@dataclass(frozen=True)
class CharacterizerPlugin(PluginRecord):
    """A MAC characteriser (contract lands with the switching-activity energy issue)."""


@dataclass(frozen=True)
class SelectorPlugin(PluginRecord):
    """A weight-selection policy (contract lands with the weight-selection issue)."""


@dataclass(frozen=True)
class SchedulerPlugin(PluginRecord):
    """A layer scheduler (contract lands with the weight-selection issue)."""


@dataclass(frozen=True)
class ModelPlugin(PluginRecord):
    """A CNN factory: ``factory(variant, in_channels=, num_classes=) -> torch.nn.Module``.

    ``variant`` is the part after ``:`` in a model reference (``torchvision:resnet18``), or
    ``None``; ``input_shape`` (C, H, W) and ``num_classes`` are the defaults."""

    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    takes_variant: bool = False


@dataclass(frozen=True)
class DatasetPlugin(PluginRecord):
    """A dataset factory (used from the switching-activity energy issue on)."""


@dataclass(frozen=True)
class CommandPlugin(PluginRecord):
    """A CLI subcommand: ``factory() -> click.Command``."""


# kind -> (hook name, record type). The order is the order `dse plugins` lists them in.
KINDS: dict[str, tuple[str, type[PluginRecord]]] = {
    "mapping": ("dse_register_mappings", MappingPlugin),
    "energy_model": ("dse_register_energy_models", EnergyModelPlugin),
    "memory_model": ("dse_register_memory_models", MemoryModelPlugin),
    "pe": ("dse_register_pes", PePlugin),
    "characterizer": ("dse_register_characterizers", CharacterizerPlugin),
    "selector": ("dse_register_selectors", SelectorPlugin),
    "scheduler": ("dse_register_schedulers", SchedulerPlugin),
    "model": ("dse_register_models", ModelPlugin),
    "dataset": ("dse_register_datasets", DatasetPlugin),
    "command": ("dse_register_commands", CommandPlugin),
}

@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was skipped, and why."""

    plugin: str
    provider: str
    error: str


@dataclass
class Registry:
    """Every registered record, by kind and name, and the plugins that failed to load."""

    records: dict[str, dict[str, PluginRecord]]
    failures: list[PluginFailure]
    #: (kind, name) -> every record registered under it, when more than one provider did:
    #: using that name is an error naming them all; everything else keeps working
    conflicts: dict[tuple[str, str], list[PluginRecord]] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> PluginRecord:
        """The record of ``kind`` called ``name``; an unknown name lists the known ones, a
        name two plugins registered names both providers."""
        if (kind, name) in self.conflicts:
            raise PluginConflictError(conflict_message(kind, name, self.conflicts[kind, name]))
        table = self.records[kind]
        if name not in table:
            raise UnknownPluginError(kind.replace("_", " "), name, table)
        return table[name]

    def names(self, kind: str) -> list[str]:
        return sorted(self.records[kind])

    def all(self) -> Iterable[tuple[str, PluginRecord]]:
        for kind, table in self.records.items():
            for name in sorted(table):
                yield kind, table[name]


def instantiate(record: PluginRecord, options: dict[str, Any] | None = None) -> Any:
    """Call ``record.factory(**options)``; an option the factory does not take is a user error
    naming it and the options the plugin accepts."""
    options = dict(options or {})
    params = inspect.signature(record.factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in options:
        if not takes_any and key not in params:
            raise DseError(
                f"option {key!r} is not accepted by {record.name!r}; accepted: "
                + (", ".join(accepted) or "(none)")
            )
    try:
        return record.factory(**options)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DseError):
            raise
        raise DseError(f"{record.name}: bad options {options}: {exc}") from exc


def _allowed(ep: metadata.EntryPoint, dist_name: str, no_plugins: bool) -> bool:
    if dist_name == SHIPPED_DISTRIBUTION:
        return True
    if no_plugins or os.environ.get("DSE_NO_PLUGINS", "").strip() not in ("", "0"):
        return False
    allow = os.environ.get("DSE_LOAD_PLUGINS")
    if allow is None:
        return True
    names = {n.strip() for n in allow.split(",") if n.strip()}
    return ep.name in names or dist_name in names


def _entry_points() -> list[tuple[metadata.EntryPoint, str, str]]:
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        found.append((ep, dist_name, version))
    # Shipped plugins first, so listings are stable and third parties follow.
    found.sort(key=lambda item: (item[1] != SHIPPED_DISTRIBUTION, item[1], item[0].name))
    return found


def _identity(obj: object) -> object:
    return obj


def build_registry(
    *,
    load_entrypoints: bool = True,
    no_plugins: bool = False,
    extra_plugins: Iterable[tuple[object, str, str]] = (),
) -> Registry:
    """Load plugins and collect their records.

    ``extra_plugins`` are ``(module_or_object, provider, version)`` registered after the
    entry points (tests use it; so can embedding applications).
    """
    pm = pluggy.PluginManager("dse")
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    sources: dict[str, tuple[str, str]] = {}  # plugin name -> (provider, version)

    candidates: list[tuple[str, Callable[[], object], str, str]] = []
    if load_entrypoints:
        for ep, dist_name, version in _entry_points():
            if _allowed(ep, dist_name, no_plugins):
                candidates.append((ep.name, ep.load, dist_name, version))
    for i, (obj, provider, version) in enumerate(extra_plugins):
        name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{i}"
        candidates.append((name, functools.partial(_identity, obj), provider, version))

    for name, load, provider, version in candidates:
        unique_name = f"{provider}:{name}"
        try:
            plugin = load()
            pm.register(plugin, name=unique_name)
            sources[unique_name] = (provider, version)
        except Exception as exc:  # a broken plugin is reported, never fatal
            failures.append(PluginFailure(name, provider, f"{type(exc).__name__}: {exc}"))
            log.warning("plugin %s from %s failed to load and was skipped: %s", name, provider, exc)
            continue
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(name=unique_name)
            del sources[unique_name]
            failures.append(PluginFailure(name, provider, str(exc)))
            log.warning("plugin %s from %s implements an unknown hook: %s", name, provider, exc)

    records: dict[str, dict[str, PluginRecord]] = {kind: {} for kind in KINDS}
    conflicts: dict[tuple[str, str], list[PluginRecord]] = {}
    for kind, (hook_name, record_type) in KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            provider, version = sources.get(impl.plugin_name, ("?", "?"))
            staged: list[PluginRecord] = []

            def register(record: PluginRecord, _t: type[PluginRecord] = record_type,
                         _staged: list[PluginRecord] = staged) -> None:
                if not isinstance(record, _t):
                    raise DseError(f"expected a {_t.__name__}, got {type(record).__name__}")
                _staged.append(record)

            short = impl.plugin_name.split(":", 1)[-1]
            try:
                impl.function(register=register)
            except Exception as exc:
                failures.append(PluginFailure(short, provider, f"{hook_name}: {exc}"))
                log.warning("plugin %s from %s failed in %s: %s", short, provider, hook_name, exc)
                continue
            table = records[kind]
            for record in staged:
                record = replace(record, provider=provider, version=record.version or version)
                if record.name in table:
                    clash = conflicts.setdefault((kind, record.name), [table[record.name]])
                    clash.append(record)
                    log.warning("%s", conflict_message(kind, record.name, clash))
                    continue
                table[record.name] = record
    return Registry(records, failures, conflicts)


def conflict_message(kind: str, name: str, records: list[PluginRecord]) -> str:
    providers = " and by ".join(r.provider for r in records)
    return (f"{kind.replace('_', ' ')} {name!r} is registered twice: by {providers}; "
            "uninstall one, or restrict plugins with DSE_LOAD_PLUGINS")


_registry: Registry | None = None
_registry_no_plugins = False


def get_registry(*, no_plugins: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _registry, _registry_no_plugins
    if _registry is None or _registry_no_plugins != no_plugins:
        _registry = build_registry(no_plugins=no_plugins)
        _registry_no_plugins = no_plugins
    return _registry


def reset_registry() -> None:
    """Forget the process-wide registry (after installing a plugin at run time, in tests)."""
    global _registry
    _registry = None

