"""Tables for the terminal, and the same rows as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["FORMATS", "render"]

FORMATS = ("table", "csv", "json")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimals(values: Sequence[Any]) -> int | None:
    """One format per column: None for a column of integers, else the decimals that give
    the column's largest value 4 significant digits (at most 6, none past 1,000)."""
    floats = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v)]
    if not floats:
        return None
    largest = max([abs(v) for v in values if _is_number(v) and math.isfinite(v)] or [0.0])
    if largest == 0:
        return 0
    return max(0, min(6, 3 - math.floor(math.log10(largest))))


def _cell(value: Any, decimals: int | None = None) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if _is_number(value):
        if decimals is None:  # a lone value (a header): 4 significant digits, no padding
            if isinstance(value, int):
                return f"{value:,}"
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
        return f"{value:,.{decimals}f}"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return "" if value is None else str(value)


def _wrap(items: Sequence[str], width: int = 100) -> list[str]:
    """``key: value`` items joined by two spaces, in lines of at most ``width`` characters."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += "  " + item
        else:
            lines.append(item)
    return lines


def render(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    total: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """``rows`` as an aligned table (with an optional total row), CSV, or JSON
    (``{"meta": …, "rows": […], "total": …}``). CSV carries the rows only."""
    columns = list(columns or (rows[0].keys() if rows else []))
    if fmt == "json":
        doc: dict[str, Any] = {}
        if meta:
            doc["meta"] = dict(meta)
        doc["rows"] = [{c: r.get(c) for c in columns} for r in rows]
        if total is not None:
            doc["total"] = dict(total)
        return json.dumps(doc, indent=2, default=str)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    if fmt != "table":
        raise ValueError(f"format {fmt!r}")
    decimals = {c: _decimals([r.get(c) for r in rows]) for c in columns}
    body = [[_cell(r.get(c), decimals[c]) for c in columns] for r in rows]
    if total is not None:
        body.append([_cell(total.get(c), decimals[c]) for c in columns])
    widths = [max([len(c)] + [len(line[i]) for line in body]) for i, c in enumerate(columns)]
    numeric = [all(_is_number(r.get(c)) or r.get(c) is None for r in rows) and any(
        _is_number(r.get(c)) for r in rows) for c in columns]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if num else cell.ljust(w)
                         for cell, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    out_lines = []
    if meta:
        out_lines += _wrap([f"{k}: {_cell(v)}" for k, v in meta.items()])
    out_lines += [line(columns), line(["-" * w for w in widths])]
    out_lines += [line(b) for b in body[: len(rows)]]
    if total is not None:
        out_lines += [line(["-" * w for w in widths]), line(body[-1])]
    return "\n".join(out_lines)
