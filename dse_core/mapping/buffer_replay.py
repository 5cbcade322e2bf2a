"""DRAM traffic of SCALE-Sim 3.0.0's double-buffered SRAMs, reproduced without its trace.

SCALE-Sim (``InterfaceBandwidth: CALC``, its default) feeds every SRAM request of a layer, in
the order the array issues them, through a read buffer (``read_buffer_estimate_bw.py``) and
writes through a write buffer (``write_buffer.py``). We replay the same request order with
the same bookkeeping, vectorised:

- **Read buffer.** The buffer holds 100 sets of ``floor(bytes / 100)`` words; a request that
  misses is added to the set being filled and counts as one DRAM read. Every 50 filled sets
  (the active half) the whole active half is dropped at once. So a request is a DRAM read iff
  its address was not requested since the last drop, and a drop follows every
  ``E = 50 * floor(bytes / 100)`` DRAM reads. With ``prev[p]`` the previous position of the
  address at ``p``, position ``p`` of an epoch starting at ``b`` is a read iff ``prev[p] < b``.
- **Write buffer.** Writes fill lines of ``cols`` words. Once more than half the buffer is
  occupied and no drain is running, the partial line is closed and half a buffer of lines is
  drained. A drain counts whole lines except the padding of its last line, so a padded line
  that is not last in its drain is counted in full: the few words by which SCALE-Sim's DRAM
  writes exceed its SRAM writes (docs/mapping.md, "Access counts").

The request order per fold (folds: column fold outer, row fold inner) is SCALE-Sim's demand
matrices': a skewed operand streams along anti-diagonals, a stationary one row by row,
flipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["OperandStreams", "dram_reads", "dram_writes", "read_epoch_words"]


def read_epoch_words(buffer_bytes: int) -> int:
    """DRAM words a read buffer takes in before it drops its active half (SCALE-Sim: 50 of
    its 100 sets of ``floor(bytes / 100)`` one-byte words)."""
    return 50 * (buffer_bytes // 100)


def skewed(block: np.ndarray) -> np.ndarray:
    """Valid addresses of a (time x lanes) block in systolic order: lane ``c`` is delayed
    ``c`` cycles, and within a cycle lanes go in order."""
    time, lanes = block.shape
    q = np.arange(time + lanes - 1)[:, None]
    c = np.arange(lanes)[None, :]
    t = q - c
    inside = (t >= 0) & (t < time)
    values = block[np.clip(t, 0, time - 1), c]
    flat = np.where(inside, values, -1).ravel()
    return flat[flat >= 0]


def flipped(block: np.ndarray) -> np.ndarray:
    """Valid addresses of a stationary block pushed in bottom row first (SCALE-Sim flips it)."""
    flat = block[::-1].ravel()
    return flat[flat >= 0]


@dataclass(frozen=True)
class OperandStreams:
    """One operand's requests as passes: ``(stream, repeats)`` pairs in order; a pass whose
    stream repeats back to back (an operand the inner fold loop does not change) is given
    once with its count, so it is sorted once."""

    passes: tuple[tuple[np.ndarray, int], ...]
    address_space: int


def _epoch_scan(prev: np.ndarray, offset: int, start: int, count: int, epoch: int
                ) -> tuple[int, int, int]:
    """Scan one chunk (global positions ``offset`` ..). Returns (reads, epoch start, reads in
    the open epoch)."""
    reads = 0
    pos = 0
    n = len(prev)
    while pos < n:
        need = epoch - count
        window = max(4 * need, 1024)
        while True:
            new = prev[pos:pos + window] < start
            cumulative = np.cumsum(new, dtype=np.int64)
            got = int(cumulative[-1]) if len(cumulative) else 0
            if got >= need or pos + window >= n:
                break
            window *= 2
        if got < need:
            return reads + got, start, count + got
        end = int(np.searchsorted(cumulative, need))  # the read that fills the epoch
        reads += need
        pos += end + 1
        start, count = offset + pos, 0
    return reads, start, count


def dram_reads(streams: OperandStreams, buffer_bytes: int) -> int:
    """DRAM reads of one read buffer over all passes."""
    epoch = read_epoch_words(buffer_bytes)
    if epoch == 0:  # SCALE-Sim cannot run a buffer under 100 bytes either
        raise ValueError("a read buffer needs at least 100 bytes")
    last_seen = np.full(streams.address_space, -1, dtype=np.int64)
    offset, start, count, reads = 0, 0, 0, 0
    for stream, repeats in streams.passes:
        n = len(stream)
        if n == 0:
            continue
        order = np.argsort(stream, kind="stable")
        ordered = stream[order]
        within = np.full(n, -1, dtype=np.int64)
        same = ordered[1:] == ordered[:-1]
        within[order[1:][same]] = order[:-1][same]
        first = within < 0
        last_mask = np.ones(n, dtype=bool)
        last_mask[order[:-1][same]] = False
        last_addresses, last_positions = stream[last_mask], np.flatnonzero(last_mask)
        for _ in range(repeats):
            prev = within + offset
            prev[first] = last_seen[stream[first]]
            got, start, count = _epoch_scan(prev, offset, start, count, epoch)
            reads += got
            last_seen[last_addresses] = last_positions + offset
            offset += n
    return reads


def _force(state: dict[str, int], pads: dict[int, int], upto: int, line: int) -> None:
    """Close the open line: lines for the words since the last close, the last one padded."""
    full, rest = divmod(upto - state["closed_at"], line)
    state["lines"] += full
    if rest:
        pads[state["lines"]] = line - rest
        state["lines"] += 1
    state["closed_at"] = upto


def dram_writes(per_cycle: np.ndarray, buffer_bytes: int, line: int) -> int:
    """DRAM writes of the write buffer given the words written in each cycle."""
    total = buffer_bytes
    drain = total - math.ceil(total * 0.5)
    lines_per_drain = math.ceil(drain / line)
    written = np.cumsum(per_cycle, dtype=np.int64)
    words = int(written[-1]) if len(written) else 0
    state = {"lines": 0, "closed_at": 0}
    pads: dict[int, int] = {}
    free, stored, drained_lines, drain_end, writes = total, 0, 0, 0, 0

    def drain_once(cycle: int) -> int:
        nonlocal free, drained_lines, writes
        n = min(drained_lines + lines_per_drain, state["lines"]) - drained_lines
        size = n * line - pads.get(drained_lines + n - 1, 0)
        writes += size
        free += size
        drained_lines += n
        return cycle + n - 1

    while True:
        need = stored + (free - (total - drain)) + 1
        allowed = int(written[min(drain_end, len(written)) - 1]) + 1 if drain_end > 0 else 1
        s = max(need, allowed, stored + 1)
        if s > words:
            break
        free -= s - stored
        stored = s
        cycle = int(np.searchsorted(written, s - 1, side="right"))
        _force(state, pads, s, line)
        drain_end = drain_once(cycle)
    _force(state, pads, words, line)
    last = len(written)
    while drained_lines < state["lines"]:
        last = drain_once(last) + 1
    return writes


def fold_slices(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))
