"""Tables for the terminal, and the same rows as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["FORMATS", "render"]

FORMATS = ("table", "csv", "json")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5:
            return f"{value:,.0f}"
        if abs(value) < 1e-3:
            return f"{value:.4g}"
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


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
    body = [[_cell(r.get(c)) for c in columns] for r in rows]
    if total is not None:
        body.append([_cell(total.get(c)) for c in columns])
    widths = [max([len(c)] + [len(line[i]) for line in body]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
                   for r in rows) and bool(rows) for c in columns]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if num else cell.ljust(w)
                         for cell, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    out_lines = []
    if meta:
        out_lines.append("  ".join(f"{k}: {v}" for k, v in meta.items()))
    out_lines += [line(columns), line(["-" * w for w in widths])]
    out_lines += [line(b) for b in body[: len(rows)]]
    if total is not None:
        out_lines += [line(["-" * w for w in widths]), line(body[-1])]
    return "\n".join(out_lines)
