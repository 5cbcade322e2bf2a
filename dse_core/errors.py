"""Exceptions. A :class:`DseError` is the user's mistake: the CLI prints its message on one
line and exits with status 2. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DseError", "ValidationError", "UnknownPluginError", "PluginConflictError"]


class DseError(Exception):
    """A user error: bad input, unknown name, malformed file. Exit status 2 on the CLI."""

    exit_code = 2


class ValidationError(DseError, ValueError):
    """A value failed validation. The message names the field, the value and what was expected."""

    @classmethod
    def field(cls, owner: str, field: str, value: object, expected: str) -> ValidationError:
        return cls(f"{owner}.{field} = {value!r}: expected {expected}")


class UnknownPluginError(DseError, LookupError):
    """A plugin name that no registered plugin provides."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known_list = sorted(known)
        listing = ", ".join(known_list) if known_list else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; known: {listing}")
        self.kind = kind
        self.name = name
        self.known = tuple(known_list)


class PluginConflictError(DseError):
    """Two plugins registered the same name for the same kind."""
