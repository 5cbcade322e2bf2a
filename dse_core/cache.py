"""Where cached artefacts live: ``$DSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/systolic-dse``,
else ``~/.cache/systolic-dse``. Writes are atomic (temporary file, then rename), so a crash
never leaves half a file that a later run would trust."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["cache_dir", "atomic_write", "content_hash"]


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("DSE_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "systolic-dse"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the result to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def content_hash(*chunks: bytes | str) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.encode() if isinstance(chunk, str) else chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]
