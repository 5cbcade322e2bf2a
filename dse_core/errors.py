"""Exceptions. A :class:`DseError` is the user's mistake: the CLI prints its message on one
line and exits with status 2. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DseError", "ValidationError", "UnknownPluginError", "PluginConflictError",
           "read_user_text", "one_line"]


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


def one_line(text: str) -> str:
    """A message as one line: control characters (a newline in a file name, a NUL in a
    value) shown escaped, as ``repr`` would."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


def read_user_text(path: str | Path, what: str = "file") -> str:
    """A file the user named, as UTF-8 text (a byte-order mark is dropped). Every way it can
    fail is one :class:`DseError` naming the file: missing, unreadable, a folder, not text."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DseError(f"{path}: no such {what}") from exc
    except IsADirectoryError as exc:
        raise DseError(f"{path}: is a folder: expected a {what}") from exc
    except OSError as exc:
        raise DseError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise DseError(f"{path}: not a text file ({exc.reason} at byte {exc.start}): "
                       f"expected a UTF-8 {what}") from exc
    except ValueError as exc:  # a NUL byte in the name
        raise DseError(one_line(f"{path}: not a file name ({exc})")) from exc
